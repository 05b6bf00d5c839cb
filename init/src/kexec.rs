//! Starting another kernel from this one, as webboot does: `kexec_file_load(2)` with the
//! kernel and the initrd in memory files, then `reboot(LINUX_REBOOT_CMD_KEXEC)`.
//!
//! Only the file-based call: the kernel itself parses the image, checks its signature where
//! its policy (lockdown, `KEXEC_SIG_FORCE`) asks for one, and builds the purgatory.
//! `kexec_load(2)` would need all of that from user space (kexec-tools' bzImage loader and
//! purgatory), and lockdown refuses it anyway; isoroot does not carry it.

use anyhow::{anyhow, bail, Context, Result};
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};

/// An anonymous file in memory that the kernel can read back by descriptor.
pub fn memory_file(name: &str) -> Result<File> {
    let cname = CString::new(name).context("a memory file name with a NUL")?;
    // SAFETY: a valid NUL-terminated name; the descriptor returned is owned by the File.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("memfd_create {name}"));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// What the kernel's answer to `kexec_file_load` means, for the person at the console.
fn refused(errno: i32) -> String {
    match errno {
        libc::ENOSYS => "this kernel cannot load another kernel (built without CONFIG_KEXEC_FILE)".into(),
        libc::EPERM => "the kernel refused: it is locked down (Secure Boot) and the ISO's kernel is not \
                        signed by a key it trusts, or kexec is switched off (kernel.kexec_load_disabled)"
            .into(),
        libc::EKEYREJECTED | libc::EBADMSG | libc::ENODATA | libc::ENOKEY => {
            "the kernel requires a signed kernel (KEXEC_SIG_FORCE) and the ISO's kernel's signature does not \
             verify"
                .into()
        }
        libc::ENOEXEC => {
            "the ISO's kernel is not a kernel image this kernel can load (not a bzImage?)".into()
        }
        libc::ENOMEM | libc::E2BIG => "not enough memory for the ISO's kernel and initrd".into(),
        e => format!("kexec_file_load failed: {}", std::io::Error::from_raw_os_error(e)),
    }
}

/// Loads `kernel` with `initrd` and `cmdline` for the next [`reboot_into`].
pub fn load(kernel: &File, initrd: &File, cmdline: &str) -> Result<()> {
    let line = CString::new(cmdline).map_err(|_| anyhow!("a kernel command line with a NUL"))?;
    let len = line.as_bytes_with_nul().len();
    // SAFETY: two open descriptors, a NUL-terminated string of `len` bytes with its NUL, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            kernel.as_raw_fd(),
            initrd.as_raw_fd(),
            len as libc::c_ulong,
            line.as_ptr(),
            0 as libc::c_ulong,
        )
    };
    if rc != 0 {
        bail!(refused(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)));
    }
    Ok(())
}

/// Starts the kernel [`load`] loaded; returns only when the kernel refuses.
pub fn reboot_into() -> anyhow::Error {
    let _ = std::io::stderr().flush();
    // SAFETY: reboot(2) with a command and no argument.
    let rc = unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_KEXEC) };
    anyhow!("reboot into the loaded kernel failed (rc {rc}): {}", std::io::Error::last_os_error())
}
