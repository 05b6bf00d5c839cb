//! Where a file's bytes are on its device, as the kernel command line carries them
//! (`iso.extents=START+SECTORS,…`), and the fingerprint (`iso.fingerprint=`) that ties
//! those sectors to the file they were read from.

use crate::ReadAt;
use sha2::{Digest, Sha256};

/// A run of 512-byte sectors on the source device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub sectors: u64,
}

/// What [`parse`] takes, for messages.
pub const EXPECTED: &str = "START+SECTORS[,START+SECTORS…] in 512-byte sectors, lengths above zero";

/// The `iso.extents=` value for a list of extents; [`parse`] reads it back.
pub fn format(extents: &[Extent]) -> String {
    extents.iter().map(|e| format!("{}+{}", e.start, e.sectors)).collect::<Vec<_>>().join(",")
}

pub fn parse(v: &str) -> Option<Vec<Extent>> {
    v.split(',')
        .map(|e| {
            let (s, n) = e.split_once('+')?;
            let (start, sectors) = (s.parse::<u64>().ok()?, n.parse::<u64>().ok()?);
            (sectors != 0 && start.checked_add(sectors).is_some()).then_some(Extent { start, sectors })
        })
        .collect()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How much of each end of the file `iso.fingerprint=` covers.
pub const FINGERPRINT_SPAN: u64 = 64 * 1024;
/// How much of each end of every extent the `sha256-extents:` form adds.
pub const EXTENT_SAMPLE: u64 = 4096;

/// What `iso.fingerprint=` hashed. `Ends` (`sha256:`, the first form isoroot wrote): the file's first
/// and last 64 KiB. A copied-then-deleted file keeps both ends on its freed sectors until
/// they are reused, so on a filesystem whose allocation isoroot cannot read `Ends` cannot
/// tell stale hints from good ones. `Extents` (`sha256-extents:`) adds the first and last
/// 4 KiB of every extent: allocators hand out freed space from the start of a free run,
/// so a file that reuses an extent's sectors most often begins (or ends) there. A sample,
/// not a proof: a file placed wholly inside a freed extent, away from both ends, is not
/// seen; only reading the allocation (see `attach::trust_hints`) proves hints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Covers {
    Ends,
    Extents,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub covers: Covers,
    pub sha256: [u8; 32],
}

impl Fingerprint {
    pub const ENDS: &'static str = "sha256:";
    pub const EXTENTS: &'static str = "sha256-extents:";

    /// `sha256:HEX` or `sha256-extents:HEX`, HEX split off for the caller to decode.
    pub fn split(v: &str) -> Option<(Covers, &str)> {
        v.strip_prefix(Self::EXTENTS)
            .map(|h| (Covers::Extents, h))
            .or_else(|| v.strip_prefix(Self::ENDS).map(|h| (Covers::Ends, h)))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let prefix = match self.covers {
            Covers::Ends => Self::ENDS,
            Covers::Extents => Self::EXTENTS,
        };
        write!(f, "{prefix}{}", hex(&self.sha256))
    }
}

/// The fingerprint of a file of `len` bytes whose extents are `extents` bytes long, in
/// file order: sha256 of its first and last 64 KiB (all of a smaller file, twice), then
/// with `Covers::Extents` of the first and last 4 KiB of each extent. Cheap to read at boot
/// (a few KiB per extent), and it changes when the file is rewritten or a map points at
/// sectors that now hold something else where a file would start or end.
pub fn fingerprint(
    file: &(impl ReadAt + ?Sized),
    len: u64,
    covers: Covers,
    extents: &[u64],
) -> std::io::Result<Fingerprint> {
    let mut samples = vec![(0, FINGERPRINT_SPAN.min(len))];
    samples.push((len - samples[0].1, samples[0].1));
    if covers == Covers::Extents {
        let mut at = 0u64;
        for &n in extents {
            let span = EXTENT_SAMPLE.min(n);
            samples.extend([(at, span), (at + n - span, span)]);
            at += n;
        }
    }
    let mut buf = vec![0u8; FINGERPRINT_SPAN as usize];
    let mut hasher = Sha256::new();
    for (at, n) in samples {
        let piece = &mut buf[..n as usize];
        file.read_at(at, piece)?;
        hasher.update(piece);
    }
    Ok(Fingerprint { covers, sha256: hasher.finalize().into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_covers_both_ends() {
        let mut data = vec![0u8; 300 * 1024];
        let print = |d: &[u8]| fingerprint(d, d.len() as u64, Covers::Ends, &[]).unwrap();
        let base = print(&data);
        data[150 * 1024] = 1; // the middle is not covered
        assert_eq!(print(&data), base);
        let last = data.len() - 1;
        data[last] = 1;
        assert_ne!(print(&data), base);
        let small = b"tiny";
        assert!(fingerprint(&small[..], 4, Covers::Ends, &[]).is_ok());
    }

    #[test]
    fn extents_form_samples_each_extent_at_both_ends() {
        // Three extents: 100 KiB, 100 KiB, 100 KiB; the middle one's ends are what a
        // file that reused its freed sectors would overwrite.
        let extents = [100 * 1024u64; 3];
        let mut data = vec![0u8; 300 * 1024];
        let print = |d: &[u8]| fingerprint(d, d.len() as u64, Covers::Extents, &extents).unwrap();
        let base = print(&data);
        assert_eq!(base.covers, Covers::Extents);
        data[150 * 1024] = 1; // not sampled
        assert_eq!(print(&data), base);
        for at in [100 * 1024, 200 * 1024 - 1] {
            let mut changed = data.clone();
            changed[at] = 1;
            assert_ne!(print(&changed), base, "byte {at}");
        }
        // Without extents the new form is the old one: same samples.
        let ends = fingerprint(&data[..], data.len() as u64, Covers::Ends, &[]).unwrap();
        let no_extents = fingerprint(&data[..], data.len() as u64, Covers::Extents, &[]).unwrap();
        assert_eq!(ends.sha256, no_extents.sha256);
        // Extents shorter than a sample are read whole.
        let tiny = [512u64, 1024];
        assert!(fingerprint(&data[..1536], 1536, Covers::Extents, &tiny).is_ok());
    }

    #[test]
    fn fingerprint_forms_round_trip() {
        let f = Fingerprint { covers: Covers::Extents, sha256: [0xab; 32] };
        let text = f.to_string();
        assert!(text.starts_with("sha256-extents:abab"), "{text}");
        let (covers, hex) = Fingerprint::split(&text).unwrap();
        assert_eq!((covers, hex.len()), (Covers::Extents, 64));
        assert_eq!(Fingerprint::split("sha256:00").unwrap().0, Covers::Ends);
        assert!(Fingerprint::split("md5:00").is_none());
    }

    #[test]
    fn extent_lists_round_trip() {
        let list = [Extent { start: 2048, sectors: 100 }, Extent { start: 9000, sectors: 8 }];
        assert_eq!(parse(&format(&list)).unwrap(), list);
        for bad in ["", "1", "1+0", "a+1", "18446744073709551615+1", "1+1,"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
