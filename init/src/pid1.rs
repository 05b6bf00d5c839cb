//! What PID 1 owes the kernel: the API filesystems, a console, Ctrl-Alt-Del, and never
//! exiting. A failed boot ends in a rescue shell (and `exit` retries the boot) or in a
//! reboot after a pause long enough to read the message.

use crate::mount::Linux;
use nix::mount::MsFlags;
use nix::sys::reboot::{reboot, set_cad_enabled, RebootMode};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const REBOOT_AFTER: Duration = Duration::from_secs(120);
const SHELLS: &[&str] = &["/bin/sh", "/usr/bin/sh"];

static CTRL_ALT_DEL: OnceLock<Arc<AtomicBool>> = OnceLock::new();

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

/// Reboots now if Ctrl-Alt-Del was pressed; called from every wait.
pub fn poll_ctrl_alt_del() {
    if CTRL_ALT_DEL.get().is_some_and(|f| f.load(Ordering::Relaxed)) {
        crate::info!("Ctrl-Alt-Del: rebooting");
        reboot_now();
    }
}

fn reboot_now() -> ! {
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_AUTOBOOT);
    // reboot(2) does not return on success; if it failed there is nothing left to try.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The terminal behind /dev/console, so that the shell gets job control and Ctrl-C.
fn console_tty() -> Option<std::fs::File> {
    let active = std::fs::read_to_string("/sys/class/tty/console/active").ok()?;
    let name = active.split_whitespace().last()?;
    std::fs::OpenOptions::new().read(true).write(true).open(Path::new("/dev").join(name)).ok()
}

/// Runs a shell on the console until it exits; false when the image has none.
pub fn rescue_shell(why: &str) -> bool {
    let Some(sh) = SHELLS.iter().find(|s| Path::new(s).exists()) else {
        return false;
    };
    crate::info!("{why}");
    crate::info!("starting a rescue shell ({sh}); type `exit` to retry the boot");
    let mut cmd = Command::new(sh);
    cmd.env("PS1", "(isoroot) # ").env("PATH", "/bin:/sbin:/usr/bin:/usr/sbin");
    if let Some(tty) = console_tty() {
        if let (Ok(a), Ok(b)) = (tty.try_clone(), tty.try_clone()) {
            cmd.stdin(tty).stdout(a).stderr(b);
        }
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 1);
                Ok(())
            });
        }
    }
    match cmd.status() {
        Ok(_) => {}
        Err(e) => crate::error!("starting {sh}: {e}"),
    }
    // Orphans of the shell were handed to us: reap them.
    while let Ok(status) = nix::sys::wait::waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
        if status == nix::sys::wait::WaitStatus::StillAlive {
            break;
        }
    }
    true
}

fn wait_then_reboot() -> ! {
    crate::info!(
        "no rescue shell in this image (add one with `isoroot mkinitramfs --rescue-shell /bin/busybox`); \
         rebooting in {} s, or now with Ctrl-Alt-Del",
        REBOOT_AFTER.as_secs()
    );
    let until = Instant::now() + REBOOT_AFTER;
    while Instant::now() < until {
        poll_ctrl_alt_del();
        std::thread::sleep(Duration::from_millis(100));
    }
    reboot_now()
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
    // With Ctrl-Alt-Del disabled in the kernel, it sends SIGINT to PID 1 instead.
    let flag = CTRL_ALT_DEL.get_or_init(|| Arc::new(AtomicBool::new(false)));
    let _ = set_cad_enabled(false);
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(flag));
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
        if !rescue_shell("the boot stopped here; the console above says why") {
            wait_then_reboot();
        }
        crate::info!("retrying the boot");
    }
}
