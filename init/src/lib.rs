//! isoroot-init: PID 1 of an initramfs that boots a live ISO kept as a file on a disk.
//! `design.md` in the project's shared notes has the boot flow these modules follow.

pub mod console;

pub mod attach;
pub mod blockdev;
pub mod boot;
pub mod cmdline;
pub mod devices;
pub mod dm;
pub mod handoff;
pub mod liveroot;
pub mod locate;
pub mod loopdev;
pub mod meminfo;
pub mod modules;
pub mod mount;
pub mod net;
pub mod paths;
pub mod persist;
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
