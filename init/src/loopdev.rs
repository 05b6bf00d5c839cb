//! Read-only loop devices, with the kernel's ioctls directly: the loop crates need bindgen
//! at build time and would drag libclang into a static init.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
/// The kernel reads the backing file or device with direct I/O when it can (a block
/// device, or ext4), and quietly does not when it cannot (tmpfs, isofs): without it each
/// block is cached twice and copied once more, which the benchmark's read row showed.
const LO_FLAGS_DIRECT_IO: u32 = 16;
const LO_NAME_SIZE: usize = 64;

/// `struct loop_info64` from <linux/loop.h>.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

mod ioctl {
    use super::{LoopConfig, LoopInfo64};
    nix::ioctl_none_bad!(ctl_get_free, 0x4C82);
    nix::ioctl_write_ptr_bad!(configure, 0x4C0A, LoopConfig);
    nix::ioctl_write_int_bad!(set_fd, 0x4C00);
    nix::ioctl_write_ptr_bad!(set_status64, 0x4C04, LoopInfo64);
    nix::ioctl_none_bad!(clr_fd, 0x4C01);
}

/// What part of the backing file the device shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub offset: u64,
    /// 0: to the end of the file.
    pub size: u64,
}

/// An attached loop device, held open: with autoclear the kernel detaches the device as
/// soon as its last opener goes, so this must live until the device is mounted.
pub struct LoopDevice {
    pub path: PathBuf,
    _open: File,
}

/// Attaches `file` read-only to a free loop device. The device detaches itself when its
/// last user (the mount on it, or the returned handle) goes away.
pub fn attach(file: &Path, window: Window) -> io::Result<LoopDevice> {
    let backing = File::open(file)?;
    let control = OpenOptions::new().read(true).write(true).open("/dev/loop-control")?;
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: window.offset,
        lo_sizelimit: window.size,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO,
        lo_file_name: [0; LO_NAME_SIZE],
        lo_crypt_name: [0; LO_NAME_SIZE],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    };
    // Shown by losetup in the booted system; truncated like util-linux does.
    let name = file.as_os_str().as_encoded_bytes();
    let n = name.len().min(LO_NAME_SIZE - 1);
    info.lo_file_name[..n].copy_from_slice(&name[..n]);
    // Another process may grab the free device between the two calls: try a few times.
    for _ in 0..8 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument.
        let n = unsafe { ioctl::ctl_get_free(control.as_raw_fd()) }.map_err(io::Error::from)?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let dev = OpenOptions::new().read(true).open(&path)?;
        // 512-byte sectors whatever the backing device has: newer kernels otherwise take a
        // 4Kn device's 4096 under direct I/O, and isofs refuses sectors above 2048 bytes.
        let config = LoopConfig { fd: backing.as_raw_fd() as u32, block_size: 512, info, reserved: [0; 8] };
        // SAFETY: `config` is a valid `struct loop_config` that outlives the call.
        match unsafe { ioctl::configure(dev.as_raw_fd(), &config) } {
            Ok(_) => return Ok(LoopDevice { path, _open: dev }),
            Err(nix::errno::Errno::EBUSY) => continue,
            // Kernels before 5.8 have no LOOP_CONFIGURE.
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOTTY) => {
                info = config.info;
                attach_legacy(&dev, &backing, &info)?;
                return Ok(LoopDevice { path, _open: dev });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other("every free loop device was taken by someone else"))
}

fn attach_legacy(dev: &File, backing: &File, info: &LoopInfo64) -> io::Result<()> {
    // SAFETY: plain ioctls on open descriptors; `info` outlives the call.
    unsafe {
        ioctl::set_fd(dev.as_raw_fd(), backing.as_raw_fd())?;
        if let Err(e) = ioctl::set_status64(dev.as_raw_fd(), info) {
            let _ = ioctl::clr_fd(dev.as_raw_fd());
            return Err(e.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn structs_match_the_kernel_abi() {
        assert_eq!(std::mem::size_of::<super::LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<super::LoopConfig>(), 304);
    }
}
