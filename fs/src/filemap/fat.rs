//! FAT12/16/32 and exFAT: boot sector, FAT chains (or exFAT's contiguous "NoFatChain"
//! files), directories with long names. Names compare without regard to case.

use super::{corrupt, find, same_name, walk_isos, FileMap, Item, Listing, Lookup, Run, ScanError};
use crate::superblock::FsKind;
use crate::{le16, le32, le64, ReadAt};
use std::collections::HashMap;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fat12,
    Fat16,
    Fat32,
    Exfat,
}

/// Where a file's clusters are: a FAT chain from `first`, or (exFAT) `first` onwards.
#[derive(Clone, Copy)]
struct Start {
    first: u32,
    contiguous: bool,
}

struct Entry {
    name: String,
    dir: bool,
    size: u64,
    /// exFAT's valid data length: past it the file reads as zeros, whatever its clusters
    /// hold (a preallocated file). FAT has none: all of `size`.
    valid: u64,
    start: Start,
}

struct Fs<'a, D: ReadAt + ?Sized> {
    dev: &'a D,
    kind: Kind,
    cluster: u64,
    fat_offset: u64,
    /// Byte offset of cluster 2.
    heap: u64,
    clusters: u32,
    /// FAT12/16: the fixed root directory (offset, length).
    fixed_root: Option<(u64, u64)>,
    root: Start,
    fat_cache: HashMap<u64, Vec<u8>>,
}

/// Directories are read whole; far above any real one.
const MAX_DIR: u64 = 64 << 20;

/// FAT entries are read and cached a chunk at a time (a 4 GiB file is 128 Ki entries).
const FAT_CHUNK: u64 = 4096;
/// At most 4 MiB of FAT cached: a contiguous 4 GiB file on 4 KiB clusters needs 1 MiB.
const MAX_CACHED_CHUNKS: usize = 1024;

impl<'a, D: ReadAt + ?Sized> Fs<'a, D> {
    fn open(dev: &'a D, is_exfat: bool) -> Result<Self, ScanError> {
        let mut bs = [0u8; 512];
        dev.read_at(0, &mut bs)?;
        if is_exfat {
            Self::exfat(dev, &bs)
        } else {
            Self::fat(dev, &bs)
        }
    }

    /// exFAT's boot sector: geometry in powers of two, the root directory a cluster chain.
    fn exfat(dev: &'a D, bs: &[u8; 512]) -> Result<Self, ScanError> {
        if le16(bs, 0x6A) & 0x2 != 0 {
            return Err(ScanError::Unclean(
                "exFAT's VolumeDirty flag is set (removed without being unmounted); \
                     check it with fsck.exfat"
                    .into(),
            ));
        }
        let (ss, cs) = (u32::from(bs[0x6C]), u32::from(bs[0x6D]));
        if !(9..=12).contains(&ss) || ss + cs > 25 {
            return Err(corrupt("exFAT geometry"));
        }
        let sector = 1u64 << ss;
        Ok(Fs {
            dev,
            kind: Kind::Exfat,
            cluster: sector << cs,
            fat_offset: u64::from(le32(bs, 0x50)) * sector,
            heap: u64::from(le32(bs, 0x58)) * sector,
            clusters: le32(bs, 0x5C),
            fixed_root: None,
            root: Start { first: le32(bs, 0x60), contiguous: false },
            fat_cache: HashMap::new(),
        })
    }

    /// FAT12/16/32's BIOS parameter block; the FAT type follows from the cluster count.
    fn fat(dev: &'a D, bs: &[u8; 512]) -> Result<Self, ScanError> {
        let sector = u64::from(le16(bs, 0x0B));
        let per_cluster = u64::from(bs[0x0D]);
        if !matches!(sector, 512 | 1024 | 2048 | 4096) || per_cluster == 0 {
            return Err(corrupt("FAT geometry"));
        }
        let reserved = u64::from(le16(bs, 0x0E));
        let fats = u64::from(bs[0x10]);
        let root_entries = u64::from(le16(bs, 0x11));
        let total = match le16(bs, 0x13) {
            0 => u64::from(le32(bs, 0x20)),
            n => u64::from(n),
        };
        let fat_size = match le16(bs, 0x16) {
            0 => u64::from(le32(bs, 0x24)),
            n => u64::from(n),
        };
        let root_sectors = (root_entries * 32).div_ceil(sector);
        let data_start = reserved + fats * fat_size + root_sectors;
        let clusters = total.saturating_sub(data_start) / per_cluster;
        // The FAT type follows from the cluster count, as the specification and Linux say.
        let kind = if root_entries == 0 {
            Kind::Fat32
        } else if clusters < 4085 {
            Kind::Fat12
        } else {
            Kind::Fat16
        };
        let fixed_root =
            (kind != Kind::Fat32).then(|| ((reserved + fats * fat_size) * sector, root_sectors * sector));
        // Linux and Windows NT set bit 0 of the boot sector's state byte while the volume is
        // mounted read-write, and fsck.fat clears it; it is a state byte only where the
        // extended boot signature says the fields are there. (FAT[1]'s clean-shutdown bit
        // is not read: Linux never sets it again, so a stick Windows left dirty would be
        // refused for good.)
        let (state, signature) = if kind == Kind::Fat32 { (0x41, 0x42) } else { (0x25, 0x26) };
        if matches!(bs[signature], 0x28 | 0x29) && bs[state] & 1 != 0 {
            return Err(ScanError::Unclean(
                "FAT's dirty flag is set (removed without being unmounted); check it with fsck.fat".into(),
            ));
        }
        Ok(Fs {
            dev,
            kind,
            cluster: sector * per_cluster,
            fat_offset: reserved * sector,
            heap: data_start * sector,
            clusters: clusters as u32,
            fixed_root,
            root: Start { first: if kind == Kind::Fat32 { le32(bs, 0x2C) } else { 0 }, contiguous: false },
            fat_cache: HashMap::new(),
        })
    }

    fn fat_bytes(&mut self, at: u64, len: usize) -> Result<Vec<u8>, ScanError> {
        let mut out = Vec::with_capacity(len);
        for pos in at..at + len as u64 {
            let chunk = pos / FAT_CHUNK;
            if !self.fat_cache.contains_key(&chunk) {
                // A chain that jumps about a large FAT must not fill the memory of PID 1.
                if self.fat_cache.len() >= MAX_CACHED_CHUNKS {
                    self.fat_cache.clear();
                }
                let mut buf = vec![0u8; FAT_CHUNK as usize];
                self.dev.read_at(self.fat_offset + chunk * FAT_CHUNK, &mut buf)?;
                self.fat_cache.insert(chunk, buf);
            }
            out.push(self.fat_cache[&chunk][(pos % FAT_CHUNK) as usize]);
        }
        Ok(out)
    }

    /// The FAT entry of a cluster; None at the end of a chain.
    fn next(&mut self, c: u32) -> Result<Option<u32>, ScanError> {
        let (v, end) = match self.kind {
            Kind::Fat12 => {
                let b = self.fat_bytes(u64::from(c) * 3 / 2, 2)?;
                let v = u32::from(le16(&b, 0));
                (if c % 2 == 0 { v & 0xFFF } else { v >> 4 }, 0xFF8)
            }
            Kind::Fat16 => (u32::from(le16(&self.fat_bytes(u64::from(c) * 2, 2)?, 0)), 0xFFF8),
            Kind::Fat32 => (le32(&self.fat_bytes(u64::from(c) * 4, 4)?, 0) & 0x0FFF_FFFF, 0x0FFF_FFF8),
            Kind::Exfat => (le32(&self.fat_bytes(u64::from(c) * 4, 4)?, 0), 0xFFFF_FFF8),
        };
        if v >= end {
            return Ok(None);
        }
        if v < 2 || v - 2 >= self.clusters {
            return Err(corrupt(format!("cluster {c} points at {v}")));
        }
        Ok(Some(v))
    }

    /// The runs of `size` bytes from `start`.
    fn runs(&mut self, start: Start, size: u64) -> Result<FileMap, ScanError> {
        let mut map = FileMap::new(size);
        if size == 0 {
            return Ok(map);
        }
        let count = size.div_ceil(self.cluster);
        // A file cannot have more clusters than the volume: this also ends a chain that
        // loops back on itself.
        if count > u64::from(self.clusters) {
            return Err(corrupt(format!("a {size}-byte file on a volume of {} clusters", self.clusters)));
        }
        if start.first < 2
            || u64::from(start.first - 2) + if start.contiguous { count } else { 1 }
                > u64::from(self.clusters)
        {
            return Err(corrupt(format!("first cluster {} outside the volume", start.first)));
        }
        let (heap, cluster) = (self.heap, self.cluster);
        let offset = move |c: u32| heap + u64::from(c - 2) * cluster;
        if start.contiguous {
            map.push(Run::Data { offset: offset(start.first), len: count * self.cluster });
            return Ok(map);
        }
        let mut c = start.first;
        for i in 0..count {
            map.push(Run::Data { offset: offset(c), len: self.cluster });
            match self.next(c)? {
                Some(n) => c = n,
                None if i + 1 == count => {}
                None => {
                    return Err(corrupt(format!(
                        "the cluster chain ends after {} of {count} clusters",
                        i + 1
                    )))
                }
            }
        }
        Ok(map)
    }

    fn read_all(&mut self, start: Start, size: u64) -> Result<Vec<u8>, ScanError> {
        let map = self.runs(start, size)?;
        let mut out = Vec::new();
        for r in map.runs {
            if let Run::Data { offset, len } = r {
                let mut buf = vec![0u8; len as usize];
                self.dev.read_at(offset, &mut buf)?;
                out.extend(buf);
            }
        }
        Ok(out)
    }

    /// A directory's raw entries; chained directories are read whole (bounded).
    fn dir_bytes(&mut self, start: Option<Start>, size: Option<u64>) -> Result<Vec<u8>, ScanError> {
        match (start, self.fixed_root) {
            (None, Some((offset, len))) => {
                let mut buf = vec![0u8; len as usize];
                self.dev.read_at(offset, &mut buf)?;
                Ok(buf)
            }
            (s, _) => {
                let s = s.unwrap_or(self.root);
                let size = match size {
                    Some(n) => n,
                    None => {
                        // A FAT chain's length is the directory's size.
                        let mut n = 1u64;
                        let mut c = s.first;
                        while let Some(next) = self.next(c)? {
                            n += 1;
                            c = next;
                            if n * self.cluster > MAX_DIR {
                                return Err(corrupt("a directory chain that does not end"));
                            }
                        }
                        n * self.cluster
                    }
                };
                if size > MAX_DIR {
                    return Err(corrupt(format!("a directory of {size} bytes")));
                }
                self.read_all(s, size)
            }
        }
    }

    fn entries(&mut self, dir: Option<&Entry>) -> Result<Vec<Entry>, ScanError> {
        let (start, size) = match dir {
            Some(e) => (Some(e.start), (self.kind == Kind::Exfat).then_some(e.size)),
            None => (None, None),
        };
        let raw = self.dir_bytes(start, size)?;
        Ok(if self.kind == Kind::Exfat { exfat_entries(&raw) } else { fat_entries(&raw) })
    }
}

fn utf16(units: &[u16]) -> String {
    String::from_utf16_lossy(units)
}

/// FAT directory entries: long names (attribute 0x0F entries, stored last part first)
/// before their 8.3 entry.
fn fat_entries(raw: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut long: Vec<(u8, Vec<u16>)> = Vec::new();
    for e in raw.chunks_exact(32) {
        match e[0] {
            0 => break,
            0xE5 => {
                long.clear();
                continue;
            }
            _ => {}
        }
        let attr = e[11];
        if attr & 0x3F == 0x0F {
            let mut units = Vec::with_capacity(13);
            for (a, b) in [(1, 11), (14, 26), (28, 32)] {
                units.extend(e[a..b].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])));
            }
            let end = units.iter().position(|&u| u == 0 || u == 0xFFFF).unwrap_or(units.len());
            units.truncate(end);
            long.push((e[0] & 0x1F, units));
            continue;
        }
        if attr & 0x08 != 0 {
            long.clear();
            continue; // the volume label
        }
        let name = if long.is_empty() {
            let lower = |s: &[u8], flag: u8| {
                let s = String::from_utf8_lossy(s).trim_end().to_string();
                if e[12] & flag != 0 {
                    s.to_lowercase()
                } else {
                    s
                }
            };
            let (base, ext) = (lower(&e[0..8], 0x08), lower(&e[8..11], 0x10));
            if ext.is_empty() {
                base
            } else {
                format!("{base}.{ext}")
            }
        } else {
            long.sort_by_key(|(seq, _)| *seq);
            utf16(&long.iter().flat_map(|(_, u)| u.iter().copied()).collect::<Vec<_>>())
        };
        long.clear();
        let first = u32::from(le16(e, 0x14)) << 16 | u32::from(le16(e, 0x1A));
        let size = u64::from(le32(e, 0x1C));
        out.push(Entry {
            name,
            dir: attr & 0x10 != 0,
            size,
            valid: size,
            start: Start { first, contiguous: false },
        });
    }
    out
}

/// exFAT entry sets: File (0x85), Stream Extension (0xC0), File Name (0xC1)…
fn exfat_entries(raw: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    let entries: Vec<&[u8]> = raw.chunks_exact(32).collect();
    let mut i = 0;
    while i < entries.len() {
        let e = entries[i];
        if e[0] == 0 {
            break;
        }
        if e[0] != 0x85 {
            i += 1;
            continue;
        }
        let secondary = usize::from(e[1]);
        let dir = le16(e, 4) & 0x10 != 0;
        let set = &entries[i + 1..(i + 1 + secondary).min(entries.len())];
        i += 1 + secondary;
        let Some(stream) = set.first().filter(|s| s[0] == 0xC0) else { continue };
        let name_len = usize::from(stream[3]);
        let mut units: Vec<u16> = set[1..]
            .iter()
            .filter(|n| n[0] == 0xC1)
            .flat_map(|n| n[2..32].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])))
            .collect();
        units.truncate(name_len);
        out.push(Entry {
            name: utf16(&units),
            dir,
            size: le64(stream, 0x18),
            valid: le64(stream, 8),
            start: Start { first: le32(stream, 0x14), contiguous: stream[1] & 0x2 != 0 },
        });
    }
    out
}

pub fn map(dev: &(impl ReadAt + ?Sized), kind: FsKind, path: &str) -> Result<FileMap, ScanError> {
    let mut fs = Fs::open(dev, kind == FsKind::Exfat)?;
    // The root directory is `None`: it has no entry of its own.
    let file = find(path, None, |dir: &Option<Entry>, name| {
        let entries = fs.entries(dir.as_ref())?;
        let (found, others): (Vec<Entry>, Vec<Entry>) =
            entries.into_iter().partition(|e| same_name(&e.name, name));
        Ok(match found.into_iter().next() {
            Some(e) if e.dir => Lookup::Dir(Some(e)),
            Some(e) => Lookup::File(Some(e)),
            None => Lookup::Missing(
                others
                    .into_iter()
                    .filter(|e| e.name != "." && e.name != "..")
                    .map(|e| if e.dir { format!("{}/", e.name) } else { e.name })
                    .collect(),
            ),
        })
    })?;
    let file = file.expect("a file has an entry");
    if file.valid != file.size {
        // Its clusters past the valid length are not the zeros the file reads as there.
        return Err(ScanError::Unsupported(format!(
            "{path} has {} valid bytes of its {} (preallocated, not all written): the rest reads \
             as zeros, not as what its clusters hold",
            file.valid, file.size
        )));
    }
    fs.runs(file.start, file.size)
}

pub fn isos(dev: &(impl ReadAt + ?Sized), kind: FsKind) -> Result<Listing, ScanError> {
    let mut fs = Fs::open(dev, kind == FsKind::Exfat)?;
    walk_isos(None, |dir: &Option<Entry>| {
        Ok(fs
            .entries(dir.as_ref())?
            .into_iter()
            .map(|e| Item { name: e.name.clone(), dir: e.dir, node: Some(e) })
            .collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lfn(seq: u8, chars: &str) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[0] = seq;
        e[11] = 0x0F;
        let mut units: Vec<u16> = chars.encode_utf16().collect();
        if units.len() < 13 {
            units.push(0);
        }
        units.resize(13, 0xFFFF);
        let slots = (1..11).step_by(2).chain((14..26).step_by(2)).chain((28..32).step_by(2));
        for (at, u) in slots.zip(units) {
            e[at..at + 2].copy_from_slice(&u.to_le_bytes());
        }
        e
    }

    /// A FAT32 volume's boot sector and first FAT sector, with `state` in the boot sector
    /// and the extended boot `signature`.
    fn fat32(state: u8, signature: u8) -> Vec<u8> {
        let mut d = vec![0u8; 32 * 512 + 4096];
        d[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        d[0x0D] = 1;
        d[0x0E..0x10].copy_from_slice(&32u16.to_le_bytes());
        d[0x10] = 2;
        d[0x20..0x24].copy_from_slice(&70_000u32.to_le_bytes());
        d[0x24..0x28].copy_from_slice(&600u32.to_le_bytes());
        d[0x2C..0x30].copy_from_slice(&2u32.to_le_bytes());
        d[0x41] = state;
        d[0x42] = signature;
        d
    }

    #[test]
    fn dirty_fat_volumes_are_unclean() {
        assert!(Fs::open(&fat32(0, 0x29)[..], false).is_ok());
        // Without the extended signature the byte is not a state byte.
        assert!(Fs::open(&fat32(1, 0)[..], false).is_ok());
        let e = Fs::open(&fat32(1, 0x29)[..], false).err();
        assert!(matches!(&e, Some(ScanError::Unclean(m)) if m.contains("dirty flag")));
    }

    #[test]
    fn long_names_are_assembled_last_part_first() {
        let mut raw = Vec::new();
        raw.extend(lfn(0x42, "ive.iso"));
        raw.extend(lfn(0x01, "debian live l"));
        let mut sfn = [0u8; 32];
        sfn[0..11].copy_from_slice(b"DEBIAN~1ISO");
        sfn[0x14..0x16].copy_from_slice(&1u16.to_le_bytes());
        sfn[0x1A..0x1C].copy_from_slice(&5u16.to_le_bytes());
        sfn[0x1C..0x20].copy_from_slice(&1234u32.to_le_bytes());
        raw.extend(sfn);
        let mut short = [0u8; 32];
        short[0..11].copy_from_slice(b"README  TXT");
        short[12] = 0x08 | 0x10; // lower-case base and extension
        raw.extend(short);
        let e = fat_entries(&raw);
        assert_eq!(e[0].name, "debian live live.iso");
        assert_eq!((e[0].start.first, e[0].size), (0x1_0005, 1234));
        assert_eq!(e[1].name, "readme.txt");
        assert!(same_name("DEBIAN Live LIVE.ISO", &e[0].name));
    }

    #[test]
    fn exfat_entry_sets_give_name_size_and_contiguity() {
        let mut file = [0u8; 32];
        file[0] = 0x85;
        file[1] = 2;
        let mut stream = [0u8; 32];
        stream[0] = 0xC0;
        stream[1] = 0x3; // allocation possible, NoFatChain
        stream[3] = 5;
        stream[8..16].copy_from_slice(&4096u64.to_le_bytes());
        stream[0x14..0x18].copy_from_slice(&7u32.to_le_bytes());
        stream[0x18..0x20].copy_from_slice(&4096u64.to_le_bytes());
        let mut name = [0u8; 32];
        name[0] = 0xC1;
        for (i, u) in "a.iso".encode_utf16().enumerate() {
            name[2 + 2 * i..4 + 2 * i].copy_from_slice(&u.to_le_bytes());
        }
        let raw: Vec<u8> = [file, stream, name].concat();
        let e = exfat_entries(&raw);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].name.as_str(), e[0].size, e[0].start.first, e[0].start.contiguous),
            ("a.iso", 4096, 7, true)
        );
        // Valid data shorter than the size: the file is found (the path is right), and
        // `map` says why it cannot be mapped instead of calling it missing.
        let mut short = stream;
        short[8..16].copy_from_slice(&100u64.to_le_bytes());
        let e = exfat_entries(&[file, short, name].concat());
        assert_eq!((e[0].name.as_str(), e[0].valid, e[0].size), ("a.iso", 100, 4096));
    }
}
