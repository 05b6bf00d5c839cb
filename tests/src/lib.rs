//! isoroot's QEMU boot tests. Fixtures are made with the real tools (mksquashfs, xorriso,
//! mkfs.*, mtools) from a tiny busybox root; each case boots Debian's kernel with isoroot's
//! initramfs and asserts what the serial console says.

pub mod bench;
pub mod bootloaders;
pub mod cases;
pub mod distros;
pub mod fixtures;
pub mod initramfs_checks;
pub mod inspect_checks;
pub mod install_checks;
pub mod menu_checks;
pub mod net_cases;
pub mod profile_cases;
pub mod qemu;
pub mod servers;
pub mod sh;
pub mod sticks;
pub mod verify_checks;

use std::path::PathBuf;

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where the built binaries and the fixtures live.
pub fn target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}
