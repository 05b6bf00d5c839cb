//! Reading a whole image with a progress line: the sha256 check and the copy to RAM.

use anyhow::{Context, Result};
use isoroot_fs::human_size;
use std::io::Read;
use std::time::{Duration, Instant};

/// Reads `len` bytes of `from` from its current position in 1 MiB pieces, hands each to
/// `each`, and says how far it got every second (bytes, MiB/s, time left).
pub fn stream(
    mut from: impl Read,
    len: u64,
    what: &str,
    mut each: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let start = Instant::now();
    let mut last = start;
    let mut buf = vec![0u8; 1 << 20];
    let mut done = 0u64;
    while done < len {
        let want = buf.len().min((len - done) as usize);
        let n = from.read(&mut buf[..want]).with_context(|| format!("{what}: reading"))?;
        if n == 0 {
            anyhow::bail!("{what}: the image ended after {done} of {len} bytes");
        }
        each(&buf[..n])?;
        done += n as u64;
        if last.elapsed() >= Duration::from_secs(1) {
            last = Instant::now();
            let rate = done as f64 / start.elapsed().as_secs_f64();
            let left = (len - done) as f64 / rate.max(1.0);
            crate::info!(
                "{what}: {}% ({} of {}, {}/s, {left:.0} s left)",
                done * 100 / len.max(1),
                human_size(done),
                human_size(len),
                human_size(rate as u64)
            );
        }
    }
    crate::info!("{what}: done, {} in {:.1} s", human_size(len), start.elapsed().as_secs_f64());
    Ok(())
}
