//! Messages for the person at the console, copied to the kernel log.
//!
//! The console gets every line directly: `/dev/kmsg` is rate-limited for user space and
//! would drop lines exactly when something goes wrong. Warnings and errors are copied to
//! `/dev/kmsg` too, so that `dmesg` in the booted system tells the story.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 3,
    Warn = 4,
    Info = 6,
    Debug = 7,
}

// Info until the cmdline says `quiet` (warnings and errors only) or `iso.debug`.
static SHOWN: AtomicU8 = AtomicU8::new(Level::Info as u8);

pub fn configure(debug: bool, quiet: bool) {
    let level = if debug {
        Level::Debug
    } else if quiet {
        Level::Warn
    } else {
        Level::Info
    };
    SHOWN.store(level as u8, Ordering::Relaxed);
}

pub fn log(level: Level, args: fmt::Arguments) {
    let tag = match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info | Level::Debug => "",
    };
    let text = format!("{args}");
    if level as u8 <= SHOWN.load(Ordering::Relaxed) {
        let mut out = std::io::stderr().lock();
        for line in text.lines() {
            let _ = writeln!(out, "isoroot: {tag}{line}");
        }
    }
    if level <= Level::Warn {
        if let Ok(mut kmsg) = OpenOptions::new().write(true).open("/dev/kmsg") {
            for line in text.lines() {
                let _ = kmsg.write_all(format!("<{}>isoroot: {tag}{line}\n", level as u8).as_bytes());
            }
        }
    }
}

#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::console::log($crate::console::Level::Error, format_args!($($t)*)) };
}
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::console::log($crate::console::Level::Warn, format_args!($($t)*)) };
}
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::console::log($crate::console::Level::Info, format_args!($($t)*)) };
}
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => { $crate::console::log($crate::console::Level::Debug, format_args!($($t)*)) };
}
