//! Where a file lies on its device, read from the filesystem's own allocation structures
//! in user space, without mounting it: ext4 extent trees, FAT cluster chains
//! and exFAT's (including contiguous "NoFatChain" files), NTFS runlists. The result becomes a dm-linear
//! table, so the host filesystem is never mounted and never written.

mod ext4;
mod fat;
mod ntfs;

use crate::pathwalk::{BadLink, Walk};
use crate::superblock::FsKind;
use crate::ReadAt;
use std::fmt;

/// A run of the file: `len` bytes at `offset` on the device, or a hole that reads as zeros.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    Data { offset: u64, len: u64 },
    Zero { len: u64 },
}

impl Run {
    pub fn bytes(&self) -> u64 {
        match *self {
            Run::Data { len, .. } | Run::Zero { len } => len,
        }
    }
}

/// A file's place on the device, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMap {
    pub size: u64,
    pub runs: Vec<Run>,
    /// The bytes `runs` cover, kept so that adding a run costs the same at any length
    /// (a crafted chain gives millions).
    have: u64,
}

impl FileMap {
    fn new(size: u64) -> FileMap {
        FileMap { size, runs: Vec::new(), have: 0 }
    }

    /// Adds `len` bytes, merging with the previous run where they continue it; the last
    /// run is cut at the file's size.
    fn push(&mut self, run: Run) {
        let room = self.size - self.have;
        let run = match run {
            Run::Data { offset, len } => Run::Data { offset, len: len.min(room) },
            Run::Zero { len } => Run::Zero { len: len.min(room) },
        };
        if run.bytes() == 0 {
            return;
        }
        self.have += run.bytes();
        match (self.runs.last_mut(), run) {
            (Some(Run::Data { offset, len }), Run::Data { offset: o, len: l })
                if offset.checked_add(*len) == Some(o) =>
            {
                *len += l
            }
            (Some(Run::Zero { len }), Run::Zero { len: l }) => *len += l,
            _ => self.runs.push(run),
        }
    }

    fn complete(&self) -> bool {
        self.have == self.size
    }

    /// The first device byte two runs both claim: a chain that loops back on itself or
    /// crosses into itself. Writes through such a map (persistence) would land twice.
    fn shared_byte(&self) -> Option<u64> {
        let mut data: Vec<(u64, u64)> = self
            .runs
            .iter()
            .filter_map(|r| match *r {
                Run::Data { offset, len } => Some((offset, len)),
                Run::Zero { .. } => None,
            })
            .collect();
        data.sort_unstable();
        data.windows(2).find(|w| w[0].0.saturating_add(w[0].1) > w[1].0).map(|w| w[1].0)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ScanError {
    /// The filesystem is not in a state whose on-disk structures can be trusted.
    Unclean(String),
    NotFound {
        path: String,
        dir: String,
        names: Vec<String>,
    },
    NotAFile(String),
    /// Something this reader does not handle (the loop path may).
    Unsupported(String),
    Corrupt(String),
    Io(String),
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ScanError::Unclean(why) => write!(f, "the filesystem is not clean: {why}"),
            ScanError::NotFound { path, dir, names } => {
                write!(f, "no file {path}\n{dir} on it holds: {}", crate::pathwalk::sample(names))
            }
            ScanError::NotAFile(p) => write!(f, "{p} is a directory, not an ISO file"),
            ScanError::Unsupported(why) => write!(f, "{why}"),
            ScanError::Corrupt(why) => write!(f, "inconsistent filesystem structures: {why}"),
            ScanError::Io(e) => write!(f, "reading the device: {e}"),
        }
    }
}

impl From<BadLink> for ScanError {
    fn from(e: BadLink) -> Self {
        ScanError::Unsupported(e.to_string())
    }
}

impl From<std::io::Error> for ScanError {
    fn from(e: std::io::Error) -> Self {
        ScanError::Io(e.to_string())
    }
}

/// Finds `path` on a filesystem of `kind` and maps it. Paths are absolute, `/`-separated;
/// ext4 compares names exactly, FAT and exFAT without regard to case, as their drivers do.
pub fn map(dev: &(impl ReadAt + ?Sized), kind: FsKind, path: &str) -> Result<FileMap, ScanError> {
    let map = match kind {
        FsKind::Ext4 => ext4::map(dev, path)?,
        FsKind::Vfat | FsKind::Exfat => fat::map(dev, kind, path)?,
        FsKind::Ntfs => ntfs::map(dev, path)?,
        other => {
            return Err(ScanError::Unsupported(format!(
                "isoroot cannot read {} allocation itself",
                other.name()
            )))
        }
    };
    if !map.complete() {
        return Err(ScanError::Corrupt(format!(
            "the allocation of {path} covers less than its {} bytes",
            map.size
        )));
    }
    if let Some(at) = map.shared_byte() {
        return Err(ScanError::Corrupt(format!(
            "the allocation of {path} names device byte {at} twice (a looping or cross-linked chain)"
        )));
    }
    Ok(map)
}

fn corrupt(what: impl Into<String>) -> ScanError {
    ScanError::Corrupt(what.into())
}

/// Names as FAT, exFAT and NTFS compare them: without regard to case.
fn same_name(a: &str, b: &str) -> bool {
    a.chars().flat_map(char::to_uppercase).eq(b.chars().flat_map(char::to_uppercase))
}

/// A name looked up in a directory by one of the readers.
enum Lookup<N> {
    Dir(N),
    File(N),
    Link(String),
    /// Neither file, directory nor link (a device node, a socket).
    Other,
    /// Not there: what the directory holds instead.
    Missing(Vec<String>),
}

/// The regular file at `path`, walked from `root` with `lookup`; missing names say what the
/// directory held instead.
fn find<N>(
    path: &str,
    root: N,
    mut lookup: impl FnMut(&N, &str) -> Result<Lookup<N>, ScanError>,
) -> Result<N, ScanError> {
    let mut walk = Walk::new(path, root);
    while let Some(name) = walk.next_name() {
        let not_found = |walk: &Walk<N>, mut names: Vec<String>| {
            names.sort();
            names.dedup();
            ScanError::NotFound { path: path.into(), dir: walk.dir_path(), names }
        };
        match lookup(walk.dir(), &name)? {
            Lookup::Missing(names) => return Err(not_found(&walk, names)),
            Lookup::Link(target) => walk.follow(&target)?,
            Lookup::File(n) if walk.at_last() => return Ok(n),
            Lookup::Dir(_) | Lookup::Other if walk.at_last() => break,
            Lookup::Dir(n) => walk.enter(name, n),
            Lookup::File(_) | Lookup::Other => return Err(not_found(&walk, Vec::new())),
        }
    }
    Err(ScanError::NotAFile(path.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_and_stop_at_the_size() {
        let mut m = FileMap::new(10_000);
        m.push(Run::Data { offset: 4096, len: 4096 });
        m.push(Run::Data { offset: 8192, len: 4096 }); // continues the first
        m.push(Run::Zero { len: 512 });
        m.push(Run::Zero { len: 512 });
        m.push(Run::Data { offset: 0, len: 4096 }); // cut at the size
        m.push(Run::Zero { len: 1 << 20 }); // nothing left
        assert_eq!(
            m.runs,
            [
                Run::Data { offset: 4096, len: 8192 },
                Run::Zero { len: 1024 },
                Run::Data { offset: 0, len: 784 }
            ]
        );
        assert!(m.complete());
    }

    #[test]
    fn runs_that_claim_a_byte_twice_are_found() {
        let map = |runs: Vec<Run>| {
            let mut m = FileMap::new(runs.iter().map(Run::bytes).sum());
            runs.into_iter().for_each(|r| m.push(r));
            m
        };
        let a = Run::Data { offset: 8192, len: 4096 };
        let b = Run::Data { offset: 0, len: 4096 };
        assert_eq!(map(vec![a, Run::Zero { len: 4096 }, b]).shared_byte(), None);
        // A chain that comes back to its first cluster.
        assert_eq!(map(vec![a, b, a]).shared_byte(), Some(8192));
        // One run reaching into another.
        assert_eq!(map(vec![Run::Data { offset: 0, len: 8704 }, a]).shared_byte(), Some(8192));
    }

    /// Every input the `filemap` fuzz target crashed on (kept in its corpus) is an error now,
    /// not a panic; the first byte picks the reader, as in the target.
    #[test]
    fn fuzz_crashers_are_errors() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/filemap");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.file_name().unwrap().to_string_lossy().starts_with("crash-") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let Some((&pick, dev)) = data.split_first() else { continue };
            let kind = [FsKind::Ext4, FsKind::Vfat, FsKind::Exfat, FsKind::Ntfs][usize::from(pick % 4)];
            assert!(map(dev, kind, "/isos/a b.iso").is_err(), "{}", path.display());
            seen += 1;
        }
        assert!(seen >= 3, "crashers in {}", dir.display());
    }

    #[test]
    fn unknown_filesystems_are_unsupported() {
        let e = map(&[0u8; 4096][..], FsKind::Squashfs, "/a.iso").unwrap_err();
        assert!(matches!(e, ScanError::Unsupported(m) if m.contains("squashfs")));
    }
}
