//! Read-only device-mapper `linear` devices with the kernel's ioctls on
//! /dev/mapper/control (as rsinit does): no libdevmapper, and no udev cookie to wait for.

use anyhow::{anyhow, bail, Result};
use isoroot_fs::extents::Extent;
use isoroot_fs::filemap::Run;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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

/// Records a device isoroot made in udev's database as libdevmapper would at activation. A
/// udev (the distro's initrd's, or the live system's) coldplugs it with an "add" event, and device-mapper's rules (55-dm.rules)
/// disable every rule for a dm device on "add" unless the database says it was activated
/// properly (DM_UDEV_PRIMARY_SOURCE_FLAG): without this, no /dev/mapper link, no blkid, and
/// systemd never marks the device ready for dracut.
pub fn udev_record(node: &Path) -> std::io::Result<()> {
    let rdev = std::fs::metadata(node)?.rdev();
    let dir = Path::new("/run/udev/data");
    std::fs::create_dir_all(dir)?;
    let db = dir.join(format!("b{}:{}", nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)));
    std::fs::write(db, "E:DM_UDEV_PRIMARY_SOURCE_FLAG=1\nE:DM_UDEV_RULES_VSN=2\n")
}

/// The device the handoff strategy gives the distro's initrd: `/dev/mapper/isoroot`.
pub const HANDOFF_DEVICE: &str = "isoroot";

/// The whole device that holds the ISO, read-only, for the live system: the ISO's map
/// claims that device, so its own node cannot be mounted beside it.
pub const DATA_DEVICE: &str = "isoroot-data";

/// The persistence image, writable.
pub const PERSIST_DEVICE: &str = "isoroot-persist";

/// The dm device's name: the ISO's file name, without what a device name cannot hold.
pub fn name_for(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.strip_suffix(".iso").unwrap_or(file);
    let name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .take(100)
        .collect();
    match name.as_str() {
        "" => "iso".into(),
        // Taken by the devices isoroot makes besides the ISO's.
        HANDOFF_DEVICE | DATA_DEVICE | PERSIST_DEVICE => format!("{name}-iso"),
        _ => name,
    }
}

/// The device a table maps onto.
#[derive(Debug, Clone, Copy)]
pub struct Under {
    pub major: u32,
    pub minor: u32,
    /// Its size in 512-byte sectors.
    pub sectors: u64,
    /// Its logical block in bytes: 512, or 4096 on a 4Kn disk.
    pub block: u64,
}

/// The linear table for `extents` on `under`, fitted to its blocks.
pub fn table(extents: &[Extent], under: &Under) -> Result<Vec<Target>> {
    let Under { major, minor, sectors: dev_sectors, block } = *under;
    let targets = extents
        .iter()
        .map(|e| {
            if e.start + e.sectors > dev_sectors {
                bail!(
                    "the extent {}+{} ends past the device's {} sectors: the hints are for another device",
                    e.start,
                    e.sectors,
                    dev_sectors
                );
            }
            Ok(Target::Linear { major, minor, start: e.start, sectors: e.sectors })
        })
        .collect::<Result<_>>()?;
    fit_blocks(targets, block)
}

/// The table for a scanned file on `under`: runs in sectors (the last one rounded up, which
/// stays inside its allocated block), holes as zero targets, fitted to its blocks.
pub fn scan_table(runs: &[Run], under: &Under) -> Result<Vec<Target>> {
    let Under { major, minor, block, .. } = *under;
    let targets = runs
        .iter()
        .map(|r| match *r {
            Run::Data { offset, len } => run_sectors(offset, len)
                .map(|e| Target::Linear { major, minor, start: e.start, sectors: e.sectors })
                .ok_or_else(|| anyhow!("a run at byte {offset} is not sector-aligned")),
            Run::Zero { len } => Ok(Target::Zero { sectors: len.div_ceil(512) }),
        })
        .collect::<Result<_>>()?;
    fit_blocks(targets, block)
}

/// `targets` fitted to the source device's logical block of `block` bytes (4096 on a 4Kn
/// disk): the kernel refuses a table whose targets start or end inside one. The last target
/// is rounded up, which reads only the slack of the file's own last block (a filesystem
/// block is never smaller than the device's); anything else off a block boundary is refused.
fn fit_blocks(mut targets: Vec<Target>, block: u64) -> Result<Vec<Target>> {
    let per = (block / 512).max(1);
    let last = targets.len().saturating_sub(1);
    for (i, t) in targets.iter_mut().enumerate() {
        let (start, sectors) = match t {
            Target::Linear { start, sectors, .. } => (Some(*start), sectors),
            Target::Zero { sectors } => (None, sectors),
        };
        if i == last {
            *sectors = sectors.next_multiple_of(per);
        }
        if start.is_some_and(|s| s % per != 0) || *sectors % per != 0 {
            let what = start
                .map_or(format!("a hole of {} sectors", *sectors), |s| format!("sectors {s}+{}", *sectors));
            bail!("the file's {what} are not whole {block}-byte logical blocks of the device");
        }
    }
    Ok(targets)
}

/// The sectors of `len` bytes at `offset` (the last one rounded up, which stays inside its
/// allocated block); None off a sector boundary.
fn run_sectors(offset: u64, len: u64) -> Option<Extent> {
    (offset % 512 == 0).then(|| Extent { start: offset / 512, sectors: len.div_ceil(512) })
}

/// The file's sectors as the filesystem has them, when every byte has some (a hole or a
/// run off a sector boundary has none to name).
pub fn sectors(runs: &[Run]) -> Option<Vec<Extent>> {
    runs.iter()
        .map(|r| match *r {
            Run::Data { offset, len } => run_sectors(offset, len),
            Run::Zero { .. } => None,
        })
        .collect()
}

/// Adjacent extents as one, so that two spellings of the same sectors compare equal.
fn merged(extents: &[Extent]) -> Vec<Extent> {
    let mut out: Vec<Extent> = Vec::with_capacity(extents.len());
    for &e in extents {
        match out.last_mut() {
            Some(last) if last.start + last.sectors == e.start => last.sectors += e.sectors,
            _ => out.push(e),
        }
    }
    out
}

/// Whether `hints` name exactly the sectors the filesystem gives the file `now`; on a
/// difference, the first one, for the message.
pub fn same_sectors(hints: &[Extent], now: &[Extent]) -> Result<()> {
    let (hints, now) = (merged(hints), merged(now));
    if hints == now {
        return Ok(());
    }
    let i = hints.iter().zip(&now).take_while(|(a, b)| a == b).count();
    let at = |list: &[Extent]| list.get(i).map_or("nothing".into(), |e| format!("{}+{}", e.start, e.sectors));
    bail!(
        "the hints name {} extents, the filesystem has {}; extent {} is {} in the hints, {} on the disk",
        hints.len(),
        now.len(),
        i + 1,
        at(&hints),
        at(&now)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn under(major: u32, minor: u32, sectors: u64) -> Under {
        Under { major, minor, sectors, block: 512 }
    }

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

    #[test]
    fn dm_names_come_from_the_file_name() {
        assert_eq!(name_for("/isos/debian-live-12.iso"), "debian-live-12");
        assert_eq!(name_for("/my isos/a b:c.iso"), "a_b_c");
        assert_eq!(name_for("/.iso"), "iso");
        assert_eq!(name_for("/isos/isoroot.iso"), "isoroot-iso");
    }

    #[test]
    fn extents_past_the_device_are_refused() {
        let e = [Extent { start: 100, sectors: 50 }];
        assert_eq!(
            table(&e, &under(254, 1, 150)).unwrap(),
            [Target::Linear { major: 254, minor: 1, start: 100, sectors: 50 }]
        );
        let err = table(&e, &under(254, 1, 149)).unwrap_err().to_string();
        assert!(err.contains("ends past the device's 149 sectors"), "{err}");
    }

    #[test]
    fn hints_must_be_the_allocation_now() {
        let e = |start, sectors| Extent { start, sectors };
        let runs = [Run::Data { offset: 8192, len: 8192 }, Run::Data { offset: 1 << 20, len: 1000 }];
        let now = sectors(&runs).unwrap();
        assert_eq!(now, [e(16, 16), e(2048, 2)]);
        // The same sectors written as more extents agree.
        same_sectors(&[e(16, 8), e(24, 8), e(2048, 2)], &now).unwrap();
        // A copy elsewhere: same lengths, other sectors.
        let err = same_sectors(&[e(16, 16), e(4096, 2)], &now).unwrap_err().to_string();
        assert!(err.contains("extent 2 is 4096+2 in the hints, 2048+2 on the disk"), "{err}");
        let err = same_sectors(&[e(16, 16)], &now).unwrap_err().to_string();
        assert!(err.contains("extent 2 is nothing in the hints"), "{err}");
        // Holes have no sectors.
        assert_eq!(sectors(&[Run::Zero { len: 4096 }]), None);
    }

    #[test]
    fn tables_fit_4kn_blocks() {
        let lin = |start, sectors| Target::Linear { major: 8, minor: 0, start, sectors };
        // An ISO of an odd number of 2048-byte blocks: its last target ends mid-block.
        let t = vec![lin(2048, 64), Target::Zero { sectors: 8 }, lin(4096, 12)];
        assert_eq!(fit_blocks(t.clone(), 512).unwrap(), t);
        assert_eq!(fit_blocks(t, 4096).unwrap(), [lin(2048, 64), Target::Zero { sectors: 8 }, lin(4096, 16)]);
        // Only the last may be rounded: a middle one off a block boundary cannot be mapped.
        assert!(fit_blocks(vec![lin(2048, 12), lin(4096, 8)], 4096).is_err());
        assert!(fit_blocks(vec![lin(2049, 8)], 4096).is_err());
    }

    #[test]
    fn scanned_runs_become_sectors_and_holes_zeros() {
        let runs = [
            Run::Zero { len: 32768 },
            Run::Data { offset: 1 << 20, len: 4096 },
            Run::Data { offset: 8192, len: 100 },
        ];
        assert_eq!(
            scan_table(&runs, &under(8, 1, 1 << 20)).unwrap(),
            [
                Target::Zero { sectors: 64 },
                Target::Linear { major: 8, minor: 1, start: 2048, sectors: 8 },
                Target::Linear { major: 8, minor: 1, start: 16, sectors: 1 },
            ]
        );
        assert!(scan_table(&[Run::Data { offset: 100, len: 512 }], &under(8, 1, 1 << 20)).is_err());
    }
}
