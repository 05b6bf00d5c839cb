//! Read-only device-mapper `linear` devices with the kernel's ioctls on
//! /dev/mapper/control (as rsinit does): no libdevmapper, and no udev cookie to wait for.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

const NAME_LEN: usize = 128;
const UUID_LEN: usize = 129;
const READONLY_FLAG: u32 = 1;

/// `struct dm_ioctl` from <linux/dm-ioctl.h>.
#[repr(C)]
#[derive(Clone, Copy)]
struct DmIoctl {
    version: [u32; 3],
    data_size: u32,
    data_start: u32,
    target_count: u32,
    open_count: i32,
    flags: u32,
    event_nr: u32,
    padding: u32,
    dev: u64,
    name: [u8; NAME_LEN],
    uuid: [u8; UUID_LEN],
    data: [u8; 7],
}

/// `struct dm_target_spec`; its parameter string follows it.
#[repr(C)]
struct DmTargetSpec {
    sector_start: u64,
    length: u64,
    status: i32,
    next: u32,
    target_type: [u8; 16],
}

mod ioctl {
    use super::DmIoctl;
    nix::ioctl_readwrite!(dev_create, 0xfd, 3, DmIoctl);
    nix::ioctl_readwrite!(dev_remove, 0xfd, 4, DmIoctl);
    nix::ioctl_readwrite!(dev_suspend, 0xfd, 6, DmIoctl);
    nix::ioctl_readwrite!(table_load, 0xfd, 9, DmIoctl);
}

/// One segment of the table, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `sectors` sectors of device `major:minor` from `start`.
    Linear { major: u32, minor: u32, start: u64, sectors: u64 },
    /// `sectors` sectors that read as zeros (a hole in a sparse file).
    Zero { sectors: u64 },
}

impl Target {
    fn sectors(&self) -> u64 {
        match *self {
            Target::Linear { sectors, .. } | Target::Zero { sectors } => sectors,
        }
    }
}

/// The ioctl buffer: the header, then (for a table) the targets, 8-byte aligned.
fn buffer(name: &str, flags: u32, targets: &[Target]) -> io::Result<Vec<u64>> {
    if name.is_empty() || name.len() >= NAME_LEN || name.contains('/') {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad device-mapper name {name:?}")));
    }
    let header = std::mem::size_of::<DmIoctl>();
    let spec = std::mem::size_of::<DmTargetSpec>();
    let mut body: Vec<u8> = Vec::new();
    let mut sector = 0u64;
    for t in targets {
        let (kind, params) = match t {
            Target::Linear { major, minor, start, .. } => ("linear", format!("{major}:{minor} {start}\0")),
            Target::Zero { .. } => ("zero", "\0".to_string()),
        };
        let len = (spec + params.len()).next_multiple_of(8);
        let mut target_type = [0u8; 16];
        target_type[..kind.len()].copy_from_slice(kind.as_bytes());
        let s = DmTargetSpec {
            sector_start: sector,
            length: t.sectors(),
            status: 0,
            next: len as u32,
            target_type,
        };
        // SAFETY: DmTargetSpec is plain old data with no padding between its fields.
        let bytes = unsafe { std::slice::from_raw_parts((&s as *const DmTargetSpec).cast::<u8>(), spec) };
        body.extend_from_slice(bytes);
        body.extend_from_slice(params.as_bytes());
        body.resize(body.len().next_multiple_of(8), 0);
        sector += t.sectors();
    }
    let total = header + body.len();
    let mut h = DmIoctl {
        version: [4, 0, 0],
        data_size: total as u32,
        data_start: header as u32,
        target_count: targets.len() as u32,
        open_count: 0,
        flags,
        event_nr: 0,
        padding: 0,
        dev: 0,
        name: [0; NAME_LEN],
        uuid: [0; UUID_LEN],
        data: [0; 7],
    };
    h.name[..name.len()].copy_from_slice(name.as_bytes());
    let mut buf = vec![0u64; total.div_ceil(8)];
    // SAFETY: `buf` holds at least `total` bytes and is 8-byte aligned, as DmIoctl needs.
    unsafe {
        std::ptr::write(buf.as_mut_ptr().cast::<DmIoctl>(), h);
        std::ptr::copy_nonoverlapping(body.as_ptr(), buf.as_mut_ptr().cast::<u8>().add(header), body.len());
    }
    Ok(buf)
}

type Call = unsafe fn(i32, *mut DmIoctl) -> nix::Result<i32>;

fn call(what: Call, name: &str, flags: u32, targets: &[Target]) -> io::Result<DmIoctl> {
    let control = OpenOptions::new().read(true).write(true).open("/dev/mapper/control")?;
    let mut buf = buffer(name, flags, targets)?;
    let ptr = buf.as_mut_ptr().cast::<DmIoctl>();
    // SAFETY: `ptr` points at a valid header followed by `data_size - data_start` bytes.
    unsafe { what(control.as_raw_fd(), ptr) }?;
    // SAFETY: the kernel filled in the header in place.
    Ok(unsafe { std::ptr::read(ptr) })
}

/// Creates a device over `targets` (read-only unless `writable`) and returns its node, made
/// here because there is no udev to make it.
pub fn create(name: &str, targets: &[Target], writable: bool) -> io::Result<PathBuf> {
    let created = call(ioctl::dev_create, name, 0, &[])?;
    let flags = if writable { 0 } else { READONLY_FLAG };
    let activate =
        call(ioctl::table_load, name, flags, targets).and_then(|_| call(ioctl::dev_suspend, name, 0, &[]));
    if let Err(e) = activate {
        let _ = remove(name);
        return Err(e);
    }
    let dev = created.dev;
    let node = PathBuf::from("/dev/mapper").join(name);
    let _ = std::fs::remove_file(&node);
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        dev as nix::libc::dev_t,
    )?;
    Ok(node)
}

pub fn remove(name: &str) -> io::Result<()> {
    call(ioctl::dev_remove, name, 0, &[])?;
    let _ = std::fs::remove_file(PathBuf::from("/dev/mapper").join(name));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<DmIoctl>(), 312);
        assert_eq!(std::mem::size_of::<DmTargetSpec>(), 40);
    }

    #[test]
    fn table_buffer_chains_targets() {
        let t = [
            Target::Linear { major: 254, minor: 0, start: 2048, sectors: 100 },
            Target::Linear { major: 254, minor: 0, start: 9000, sectors: 8 },
            Target::Zero { sectors: 4 },
        ];
        let buf = buffer("debian-live", READONLY_FLAG, &t).unwrap();
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let h = unsafe { std::ptr::read(buf.as_ptr().cast::<DmIoctl>()) };
        assert_eq!((h.target_count, h.data_start, h.flags), (3, 312, READONLY_FLAG));
        assert_eq!(&h.name[..12], b"debian-live\0");
        // First spec: sector 0, 100 sectors, "linear", params, next = 40 + 14 rounded to 56.
        let s = &bytes[312..];
        assert_eq!(u64::from_ne_bytes(s[0..8].try_into().unwrap()), 0);
        assert_eq!(u64::from_ne_bytes(s[8..16].try_into().unwrap()), 100);
        assert_eq!(u32::from_ne_bytes(s[20..24].try_into().unwrap()), 56);
        assert_eq!(&s[24..30], b"linear");
        assert_eq!(&s[40..54], b"254:0 2048\0\0\0\0");
        // Second spec starts where `next` says, at logical sector 100.
        assert_eq!(u64::from_ne_bytes(s[56..64].try_into().unwrap()), 100);
        // The zero target: at sector 108, no parameters.
        assert_eq!(u64::from_ne_bytes(s[112..120].try_into().unwrap()), 108);
        assert_eq!(&s[136..140], b"zero");
        assert_eq!(h.data_size as usize, 312 + 56 + 56 + 48);
        assert!(buffer("a/b", 0, &[]).is_err());
    }
}
