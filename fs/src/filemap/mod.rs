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

/// A file read through its map, from the device under it: an ISO inside a filesystem read
/// without a kernel driver or a device-mapper device.
pub struct MappedFile<'a, D: ReadAt + ?Sized> {
    dev: &'a D,
    runs: &'a [Run],
    /// Where each run starts in the file.
    starts: Vec<u64>,
    size: u64,
}

impl<'a, D: ReadAt + ?Sized> MappedFile<'a, D> {
    pub fn new(dev: &'a D, map: &'a FileMap) -> Self {
        let starts = map
            .runs
            .iter()
            .scan(0u64, |at, r| {
                let start = *at;
                *at += r.bytes();
                Some(start)
            })
            .collect();
        MappedFile { dev, runs: &map.runs, starts, size: map.size }
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

impl<D: ReadAt + ?Sized> ReadAt for MappedFile<'_, D> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).filter(|&e| e <= self.size);
        if end.is_none() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let (mut at, mut done) = (offset, 0);
        while done < buf.len() {
            let i = self.starts.partition_point(|&s| s <= at) - 1;
            let within = at - self.starts[i];
            let n = ((self.runs[i].bytes() - within) as usize).min(buf.len() - done);
            if n == 0 {
                // Runs that cover less than the size (a map not made by [`map`]).
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            match self.runs[i] {
                Run::Data { offset, .. } => {
                    let at = offset.checked_add(within).ok_or(std::io::ErrorKind::InvalidData)?;
                    self.dev.read_at(at, &mut buf[done..done + n])?
                }
                Run::Zero { .. } => buf[done..done + n].fill(0),
            }
            done += n;
            at += n as u64;
        }
        Ok(())
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

/// A subdirectory or regular file in a directory, as [`isos`] walks the tree.
struct Item<N> {
    name: String,
    dir: bool,
    node: N,
}

/// Folders below the top level that [`isos`] looks in: two, as `isoroot install`'s GRUB menu.
const ISO_DEPTH: usize = 2;
/// Folders [`isos`] reads at most, and directory entries it looks at at most: a crafted or
/// huge tree ends the search, not the boot.
const MAX_DIRS: usize = 512;
const MAX_ENTRIES: usize = 100_000;
/// ISO files [`isos`] returns at most.
const MAX_ISOS: usize = 1000;

/// Whether [`isos`] leaves a name out: hidden ones (`.…`), NTFS's own files and Windows'
/// recycle bin (`$…`), and Windows' System Volume Information.
fn skipped(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('$') || name.eq_ignore_ascii_case("System Volume Information")
}

/// Whether a file name is an ISO's, `*.iso` in any case: the readers look no further at
/// other files.
fn is_iso_name(name: &str) -> bool {
    name.len() > 4 && name.get(name.len() - 4..).is_some_and(|x| x.eq_ignore_ascii_case(".iso"))
}

/// The ISO files [`isos`] found, and what it could not look at.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Absolute paths, sorted by their bytes.
    pub paths: Vec<String>,
    pub notes: Vec<String>,
}

/// Every `*.iso` file (any case) on a filesystem of `kind`, at the top level and in folders
/// down to [`ISO_DEPTH`] levels below it, without [`skipped`] names. Bounded by
/// [`MAX_DIRS`], [`MAX_ENTRIES`] and [`MAX_ISOS`]: a crafted tree cannot make the search
/// long. Only a root directory that cannot be read is an error; a folder that cannot be
/// read is a note.
pub fn isos(dev: &(impl ReadAt + ?Sized), kind: FsKind) -> Result<Listing, ScanError> {
    let mut found = match kind {
        FsKind::Ext4 => ext4::isos(dev)?,
        FsKind::Vfat | FsKind::Exfat => fat::isos(dev, kind)?,
        FsKind::Ntfs => ntfs::isos(dev)?,
        other => {
            return Err(ScanError::Unsupported(format!("isoroot cannot list {} itself", other.name())));
        }
    };
    found.paths.sort();
    found.paths.dedup();
    Ok(found)
}

/// The search of [`isos`] over a reader's tree, from `root`; `items` lists a directory's
/// subdirectories and ISO files.
fn walk_isos<N>(
    root: N,
    mut items: impl FnMut(&N) -> Result<Vec<Item<N>>, ScanError>,
) -> Result<Listing, ScanError> {
    let mut out = Listing::default();
    let mut todo = vec![(String::new(), root, 0)];
    let (mut dirs, mut entries) = (0, 0);
    while let Some((path, dir, depth)) = todo.pop() {
        dirs += 1;
        if dirs > MAX_DIRS || entries > MAX_ENTRIES {
            out.notes.push(format!("stopped after {MAX_DIRS} folders or {MAX_ENTRIES} names"));
            break;
        }
        let listed = match items(&dir) {
            Ok(listed) => listed,
            Err(e) if !path.is_empty() => {
                out.notes.push(format!("{path}: {e}"));
                continue;
            }
            Err(e) => return Err(e),
        };
        entries += listed.len();
        for item in listed {
            if item.name.is_empty() || item.name.contains(['/', '\0']) || skipped(&item.name) {
                continue;
            }
            let at = format!("{path}/{}", item.name);
            if item.dir {
                if depth < ISO_DEPTH {
                    todo.push((at, item.node, depth + 1));
                }
            } else if is_iso_name(&item.name) {
                if out.paths.len() == MAX_ISOS {
                    out.notes.push(format!("stopped at {MAX_ISOS} ISO files"));
                    return Ok(out);
                }
                out.paths.push(at);
            }
        }
    }
    Ok(out)
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
    fn a_mapped_file_reads_across_runs_and_holes() {
        let dev: Vec<u8> = (0..=255u8).collect();
        let mut m = FileMap::new(10);
        m.push(Run::Data { offset: 100, len: 3 });
        m.push(Run::Zero { len: 2 });
        m.push(Run::Data { offset: 10, len: 5 });
        let f = MappedFile::new(&dev[..], &m);
        let mut buf = [9u8; 10];
        f.read_at(0, &mut buf).unwrap();
        assert_eq!(buf, [100, 101, 102, 0, 0, 10, 11, 12, 13, 14]);
        let mut two = [0u8; 2];
        f.read_at(4, &mut two).unwrap();
        assert_eq!(two, [0, 10]);
        // A crafted run past the end of the address space is an error, not an overflow.
        let mut far = FileMap::new(2);
        far.push(Run::Data { offset: u64::MAX, len: 2 });
        assert!(MappedFile::new(&dev[..], &far).read_at(1, &mut two[..1]).is_err());
        assert!(f.read_at(9, &mut two).is_err(), "past the end of the file");
    }

    #[test]
    fn the_iso_search_keeps_to_its_depth_and_skips_hidden_folders() {
        // A tree of nodes: (name, dir, children).
        let tree: Vec<(&str, bool, Vec<usize>)> = vec![
            ("", true, vec![1, 2, 3, 4, 5, 10]),
            ("a.ISO", false, vec![]),
            ("notes.txt", false, vec![]),
            ("$RECYCLE.BIN", true, vec![1]),
            (".hidden", true, vec![1]),
            ("one", true, vec![6, 7]),
            ("b.iso", false, vec![]),
            ("two", true, vec![8, 9]),
            ("c.iso", false, vec![]),
            ("three", true, vec![1]),
            ("é.iso", false, vec![]),
        ];
        let mut found = walk_isos(0usize, |&d| {
            Ok(tree[d].2.iter().map(|&c| Item { name: tree[c].0.into(), dir: tree[c].1, node: c }).collect())
        })
        .unwrap();
        found.paths.sort();
        assert_eq!(found.paths, ["/a.ISO", "/one/b.iso", "/one/two/c.iso", "/é.iso"]);
        // A directory that holds itself ends at the depth limit.
        let looped = walk_isos((), |_| Ok(vec![Item { name: "d".into(), dir: true, node: () }])).unwrap();
        assert_eq!(looped, Listing::default());
        // A folder that cannot be read is a note; the root is an error.
        let listing = walk_isos(0, |&d| match d {
            0 => Ok(vec![
                Item { name: "bad".into(), dir: true, node: 1 },
                Item { name: "x.iso".into(), dir: false, node: 2 },
            ]),
            _ => Err(ScanError::Corrupt("a broken folder".into())),
        })
        .unwrap();
        assert_eq!(listing.paths, ["/x.iso"]);
        assert_eq!(listing.notes, ["/bad: inconsistent filesystem structures: a broken folder"]);
        assert!(walk_isos(0, |_| Err(ScanError::Corrupt("root".into()))).is_err());
        // A directory with more names than the budget ends the search with a note.
        let wide = walk_isos(0, |&d| {
            Ok((0..MAX_ENTRIES + 1).map(|i| Item { name: format!("d{i}"), dir: true, node: d + 1 }).collect())
        })
        .unwrap();
        assert_eq!(wide.notes.len(), 1, "{:?}", wide.notes);
    }

    #[test]
    fn unknown_filesystems_are_unsupported() {
        let e = map(&[0u8; 4096][..], FsKind::Squashfs, "/a.iso").unwrap_err();
        assert!(matches!(e, ScanError::Unsupported(m) if m.contains("squashfs")));
    }
}
