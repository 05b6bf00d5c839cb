//! The rescue shell: where a failed boot (or `iso.rescue`) stops, on the console's own
//! terminal so that it has job control and Ctrl-C.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

const SHELLS: &[&str] = &["/bin/sh", "/usr/bin/sh"];

/// The terminal behind /dev/console, so that the shell gets job control and Ctrl-C.
fn console_tty() -> Option<std::fs::File> {
    let active = std::fs::read_to_string("/sys/class/tty/console/active").ok()?;
    let name = active.split_whitespace().last()?;
    std::fs::OpenOptions::new().read(true).write(true).open(Path::new("/dev").join(name)).ok()
}

/// Runs a shell on the console until it exits; false when the image has none.
pub fn shell(why: &str) -> bool {
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
