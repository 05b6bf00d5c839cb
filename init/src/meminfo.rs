//! How much memory there is to fill: `/proc/meminfo`, and the room in /run, the tmpfs that
//! copies to RAM (`iso.toram`, downloads) are written to.

use anyhow::{Context, Result};

/// A `/proc/meminfo` value (`MemAvailable`, `MemTotal`…) in bytes.
pub fn read(key: &str) -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// What a copy in RAM (`toram::COPY`) may take: the room in /run, and no more than the free
/// RAM.
pub fn free_ram() -> Result<u64> {
    let run = nix::sys::statvfs::statvfs("/run").context("statvfs /run")?;
    let room = run.blocks_available() as u64 * run.fragment_size() as u64;
    Ok(room.min(read("MemAvailable").unwrap_or(room)))
}
