//! Where a boot's time goes: the end of each phase on the kernel's monotonic clock (time
//! since boot, the clock of the kernel's log and of /proc/uptime), printed under `iso.debug`
//! and always written to /run/isoroot/timings.json with the init's peak memory. The start is
//! also handed to systemd, so that `systemd-analyze` counts isoroot as the initrd.

use anyhow::{Context, Result};
use nix::time::{clock_gettime, ClockId};
use std::fmt::Write;
use std::sync::{Mutex, OnceLock};

pub const FILE: &str = "/run/isoroot/timings.json";

/// (realtime, monotonic) in µs when PID 1 started.
static START: OnceLock<(u64, u64)> = OnceLock::new();
/// Phases so far: (name, monotonic µs at its end).
static MARKS: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());

fn now_us(clock: ClockId) -> u64 {
    clock_gettime(clock).map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000).unwrap_or(0)
}

/// Called once by PID 1 first thing; a retried boot keeps the first start.
pub fn start() {
    START.get_or_init(|| (now_us(ClockId::CLOCK_REALTIME), now_us(ClockId::CLOCK_MONOTONIC)));
}

/// A new attempt at the boot: the phases start again from here.
pub fn restart() {
    MARKS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// The phase named `phase` ends now.
pub fn mark(phase: &'static str) {
    MARKS.lock().unwrap_or_else(|e| e.into_inner()).push((phase, now_us(ClockId::CLOCK_MONOTONIC)));
}

/// The init's peak resident memory in KiB (VmHWM).
fn peak_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// The phases as JSON, with their start and end in µs since boot.
/// `used`: the machine's RAM in use (MemTotal − MemAvailable) when the init hands over, an
/// ISO copied into RAM included.
fn json(start: u64, marks: &[(&str, u64)], peak: Option<u64>, used: Option<u64>) -> String {
    let kib = |v: Option<u64>| v.map_or("null".into(), |p| p.to_string());
    let mut s = format!("{{\"start_us\": {start}, \"end_us\": {}, ", marks.last().map_or(start, |m| m.1));
    let _ = write!(s, "\"vmhwm_kib\": {}, \"mem_used_kib\": {}, \"phases\": [", kib(peak), kib(used));
    let mut from = start;
    for (i, (name, end)) in marks.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(s, "{sep}{{\"name\": \"{name}\", \"start_us\": {from}, \"end_us\": {end}}}");
        from = *end;
    }
    s.push_str("]}\n");
    s
}

/// Writes the timings file (and, under iso.debug, the phases to the console).
pub fn write() -> Result<()> {
    let start = START.get().map_or(0, |s| s.1);
    let marks = MARKS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let peak = peak_kib();
    let mut from = start;
    let phases: Vec<String> = marks
        .iter()
        .map(|(name, end)| {
            let line = format!("{name} {:.3} s", (end - from) as f64 / 1e6);
            from = *end;
            line
        })
        .collect();
    crate::debug!("timings: {}; peak memory {} KiB", phases.join(", "), peak.unwrap_or(0));
    let used = crate::meminfo::read("MemTotal")
        .zip(crate::meminfo::read("MemAvailable"))
        .map(|(total, free)| total.saturating_sub(free) / 1024);
    std::fs::write(FILE, json(start, &marks, peak, used)).with_context(|| format!("writing {FILE}"))
}

/// The arguments that hand the initrd's start to systemd as booster does: systemd reads
/// `initrd-timestamp=REALTIME MONOTONIC` from the state it is told to deserialize, which
/// `systemd-analyze` then shows as the "(initrd)" part of the boot.
pub fn systemd_args() -> Result<Vec<String>> {
    use std::io::{Seek, SeekFrom};
    let (realtime, monotonic) = START.get().copied().unwrap_or_default();
    // Not close-on-exec: systemd reads it after the exec.
    let fd = nix::sys::memfd::memfd_create(c"isoroot-state", nix::sys::memfd::MFdFlags::empty())
        .context("memfd_create for systemd's state")?;
    let mut file = std::fs::File::from(fd);
    std::io::Write::write_all(&mut file, format!("initrd-timestamp={realtime} {monotonic}\n").as_bytes())?;
    file.seek(SeekFrom::Start(0))?;
    let fd = std::os::fd::IntoRawFd::into_raw_fd(file);
    Ok(["--switched-root", "--system", "--deserialize"]
        .iter()
        .map(|s| s.to_string())
        .chain([fd.to_string()])
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_run_end_to_end() {
        let j = json(100, &[("modules", 350), ("attach", 900)], Some(2048), Some(65536));
        assert_eq!(
            j,
            "{\"start_us\": 100, \"end_us\": 900, \"vmhwm_kib\": 2048, \"mem_used_kib\": 65536, \"phases\": [\
             {\"name\": \"modules\", \"start_us\": 100, \"end_us\": 350}, \
             {\"name\": \"attach\", \"start_us\": 350, \"end_us\": 900}]}\n"
        );
        assert!(
            json(5, &[], None, None).contains("\"end_us\": 5, \"vmhwm_kib\": null, \"mem_used_kib\": null")
        );
    }
}
