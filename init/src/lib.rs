//! isoroot-init: PID 1 of an initramfs that boots a live ISO kept as a file on a disk.
//! docs/architecture.md has the boot flow, which module owns each step, and the layers
//! (`tests/layers.rs` keeps them).

pub mod console;

pub mod attach;
pub mod blockdev;
pub mod boot;
pub mod cmdline;
pub mod devices;
pub mod dm;
pub mod handoff;
pub mod kexec;
pub mod liveroot;
pub mod locate;
pub mod loopdev;
pub mod meminfo;
pub mod modindex;
pub mod modules;
pub mod mount;
pub mod net;
pub mod paths;
pub mod persist;
pub mod picker;
pub mod pid1;
pub mod profile;
pub mod progress;
pub mod rescue;
pub mod switchroot;
pub mod timings;
pub mod toram;
pub mod verify;
pub mod wait;

pub use pid1::pid1;
