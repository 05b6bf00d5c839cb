//! Every wait of a boot (devices, a link, the pause before a reboot) turns through [`tick`],
//! so that Ctrl-Alt-Del reboots at any point: with the kernel's own Ctrl-Alt-Del turned off,
//! the kernel sends PID 1 a SIGINT instead, which sets a flag each turn looks at.

use nix::sys::reboot::{reboot, set_cad_enabled, RebootMode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

static CTRL_ALT_DEL: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Turns the kernel's Ctrl-Alt-Del into a SIGINT to PID 1, which [`tick`] acts on.
pub fn watch_ctrl_alt_del() {
    let flag = CTRL_ALT_DEL.get_or_init(|| Arc::new(AtomicBool::new(false)));
    let _ = set_cad_enabled(false);
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(flag));
}

/// One turn of a wait: reboots now if Ctrl-Alt-Del was pressed, else sleeps `interval`.
pub fn tick(interval: Duration) {
    if CTRL_ALT_DEL.get().is_some_and(|f| f.load(Ordering::Relaxed)) {
        crate::info!("Ctrl-Alt-Del: rebooting");
        reboot_now();
    }
    std::thread::sleep(interval);
}

pub fn reboot_now() -> ! {
    nix::unistd::sync();
    let _ = reboot(RebootMode::RB_AUTOBOOT);
    // reboot(2) does not return on success; if it failed there is nothing left to try.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
