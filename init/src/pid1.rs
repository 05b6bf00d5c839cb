//! What PID 1 owes the kernel: the API filesystems, a console, Ctrl-Alt-Del, and never
//! exiting. A failed boot ends in a rescue shell (and `exit` retries the boot) or in a
//! reboot after a pause long enough to read the message.

use crate::mount::{Linux, Sys};
use crate::{rescue, wait};
use nix::mount::MsFlags;
use std::time::{Duration, Instant};

const REBOOT_AFTER: Duration = Duration::from_secs(120);

fn mount_api_filesystems() {
    let nosuid = MsFlags::MS_NOSUID;
    let all = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    // (what, where, type, flags, options): as systemd's INITRD_INTERFACE asks for /run.
    let table: [(&str, &str, &str, MsFlags, &str); 4] = [
        ("proc", "/proc", "proc", all, ""),
        ("sysfs", "/sys", "sysfs", all, ""),
        ("devtmpfs", "/dev", "devtmpfs", nosuid, "mode=0755"),
        (
            "tmpfs",
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
            "mode=0755",
        ),
    ];
    for (src, dir, fstype, flags, data) in table {
        let _ = std::fs::create_dir_all(dir);
        match nix::mount::mount(Some(src), dir, Some(fstype), flags, (!data.is_empty()).then_some(data)) {
            // The kernel may have mounted devtmpfs itself (CONFIG_DEVTMPFS_MOUNT).
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(e) => eprintln!("isoroot: error: mounting {fstype} on {dir}: {e}"),
        }
    }
}

/// The kernel opens /dev/console for init when the archive has it; when it does not,
/// stdio is closed and every message would vanish.
fn ensure_console() {
    if nix::fcntl::fcntl(std::io::stderr(), nix::fcntl::FcntlArg::F_GETFD).is_ok() {
        return;
    }
    if let Ok(c) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/console") {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which are closed.
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&c), fd) };
        }
    }
}

fn wait_then_reboot() -> ! {
    crate::info!(
        "no rescue shell in this image (add one with `isoroot mkinitramfs --rescue-shell /bin/busybox`); \
         rebooting in {} s, or now with Ctrl-Alt-Del",
        REBOOT_AFTER.as_secs()
    );
    let until = Instant::now() + REBOOT_AFTER;
    while Instant::now() < until {
        wait::tick(Duration::from_millis(100));
    }
    wait::reboot_now()
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

pub fn pid1() -> ! {
    if std::process::id() != 1 {
        eprintln!("isoroot-init is the init of an initramfs and runs as PID 1 only");
        std::process::exit(2);
    }
    crate::timings::start();
    mount_api_filesystems();
    ensure_console();
    wait::watch_ctrl_alt_del();
    let mut sys = Linux::default();
    loop {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::boot::boot(&mut sys)));
        let err = match outcome {
            Ok(Ok(never)) => match never {},
            Ok(Err(e)) => e,
            Err(p) => anyhow::anyhow!("isoroot hit a bug ({}); please report it", panic_message(&*p)),
        };
        crate::error!("the boot failed:\n{err:#}");
        sys.undo();
        if !rescue::shell("the boot stopped here; the console above says why") {
            wait_then_reboot();
        }
        crate::info!("retrying the boot");
    }
}
