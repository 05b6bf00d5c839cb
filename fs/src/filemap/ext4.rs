//! ext4 (and ext2/3 made with extents): superblock, group descriptors, inodes, extent trees,
//! directory blocks. Read-only and just enough to map one file.

use super::{corrupt, find, is_iso_name, walk_isos, FileMap, Item, Listing, Lookup, Run, ScanError};
use crate::pathwalk::MAX_LINK;
use crate::superblock::{EXT4_INCOMPAT_64BIT, EXT4_INCOMPAT_RECOVER};
use crate::{le16, le32, ReadAt};

const ROOT_INODE: u32 = 2;
const EXTENTS_FL: u32 = 0x8_0000;
const INLINE_DATA_FL: u32 = 0x1000_0000;
/// The incompatible features this reader follows, or that change nothing it reads:
/// filetype, recover (refused on its own), extents, 64bit, mmp, flex_bg, ea_inode,
/// csum_seed, largedir, inline_data (refused per file). Anything else (meta_bg moves the
/// group descriptors, casefold changes name lookups, encrypt, dirdata) could make the
/// reader map the wrong sectors: such a filesystem goes to the kernel's driver instead.
const INCOMPAT_FOLLOWED: u32 = 0x2 | 0x4 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x2000 | 0x4000 | 0x8000;
const STATE_VALID: u16 = 0x1;
const STATE_ERRORS: u16 = 0x2;
/// More extents than a 64 TiB file of 32 MiB extents: only a crafted tree has them.
const MAX_EXTENTS: usize = 1 << 21;
/// More index and leaf blocks than MAX_EXTENTS fill (340 a block): a crafted tree whose
/// index entries all point at one child would otherwise be walked exponentially often.
const MAX_NODES: usize = 1 << 16;
/// ext4's deepest extent tree.
const MAX_DEPTH: u16 = 5;

struct Fs<'a, D: ReadAt + ?Sized> {
    dev: &'a D,
    block: u64,
    inodes_per_group: u32,
    inode_size: u64,
    desc_size: u64,
    desc_start: u64,
    is_64bit: bool,
}

struct Inode {
    mode: u16,
    size: u64,
    flags: u32,
    i_block: [u8; 60],
}

impl Inode {
    fn is_dir(&self) -> bool {
        self.mode & 0xF000 == 0x4000
    }
    fn is_symlink(&self) -> bool {
        self.mode & 0xF000 == 0xA000
    }
    fn is_file(&self) -> bool {
        self.mode & 0xF000 == 0x8000
    }
}

impl<'a, D: ReadAt + ?Sized> Fs<'a, D> {
    fn open(dev: &'a D) -> Result<Self, ScanError> {
        let mut sb = [0u8; 1024];
        dev.read_at(1024, &mut sb)?;
        if le16(&sb, 0x38) != 0xEF53 {
            return Err(corrupt("no ext4 superblock"));
        }
        let incompat = le32(&sb, 0x60);
        if incompat & EXT4_INCOMPAT_RECOVER != 0 {
            return Err(ScanError::Unclean(
                "its journal needs recovery (the host was not shut down cleanly); only a mount may replay it"
                    .into(),
            ));
        }
        let state = le16(&sb, 0x3A);
        if state & STATE_ERRORS != 0 {
            return Err(ScanError::Unclean("it has recorded errors; run fsck on it".into()));
        }
        // Without a journal the driver clears VALID_FS while mounted read-write: still
        // clear, the host crashed or the filesystem is mounted elsewhere.
        if state & STATE_VALID == 0 {
            return Err(ScanError::Unclean(
                "it was not unmounted cleanly (s_state lacks VALID_FS), or is mounted read-write; run fsck on it"
                    .into(),
            ));
        }
        if incompat & !INCOMPAT_FOLLOWED != 0 {
            return Err(ScanError::Unsupported(format!(
                "ext4 incompatible features {:#x} (meta_bg, casefold, encrypt or newer), which isoroot's reader \
                 does not follow",
                incompat & !INCOMPAT_FOLLOWED
            )));
        }
        let log = le32(&sb, 0x18);
        if log > 6 {
            return Err(corrupt(format!("block size 1024 << {log}")));
        }
        let block = 1024u64 << log;
        let rev = le32(&sb, 0x4C);
        let inode_size = if rev == 0 { 128 } else { u64::from(le16(&sb, 0x58)) };
        let is_64bit = incompat & EXT4_INCOMPAT_64BIT != 0;
        let desc_size = if is_64bit { u64::from(le16(&sb, 0xFE)).max(32) } else { 32 };
        let inodes_per_group = le32(&sb, 0x28);
        if inodes_per_group == 0 || !(128..=4096).contains(&inode_size) {
            return Err(corrupt("inode geometry"));
        }
        let first_data_block = u64::from(le32(&sb, 0x14));
        Ok(Fs {
            dev,
            block,
            inodes_per_group,
            inode_size,
            desc_size,
            desc_start: (first_data_block + 1) * block,
            is_64bit,
        })
    }

    /// Where block `n` starts on the device; a crafted number can point past any device.
    fn at(&self, n: u64) -> Result<u64, ScanError> {
        n.checked_mul(self.block).ok_or_else(|| corrupt(format!("block {n} is past any device")))
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, ScanError> {
        let mut buf = vec![0u8; len];
        self.dev.read_at(offset, &mut buf)?;
        Ok(buf)
    }

    fn inode(&self, n: u32) -> Result<Inode, ScanError> {
        if n == 0 {
            return Err(corrupt("inode 0"));
        }
        let group = u64::from((n - 1) / self.inodes_per_group);
        let index = u64::from((n - 1) % self.inodes_per_group);
        let d = self.read(self.desc_start + group * self.desc_size, self.desc_size as usize)?;
        let mut table = u64::from(le32(&d, 0x8));
        if self.is_64bit && self.desc_size >= 64 {
            table |= u64::from(le32(&d, 0x28)) << 32;
        }
        let at =
            self.at(table)?.checked_add(index * self.inode_size).ok_or_else(|| corrupt("inode table"))?;
        let raw = self.read(at, 128)?;
        let mut i_block = [0u8; 60];
        i_block.copy_from_slice(&raw[0x28..0x64]);
        Ok(Inode {
            mode: le16(&raw, 0),
            size: u64::from(le32(&raw, 4)) | u64::from(le32(&raw, 0x6C)) << 32,
            flags: le32(&raw, 0x20),
            i_block,
        })
    }

    /// The inode's blocks, as runs in file order (holes and unwritten extents read as zeros).
    fn file_map(&self, inode: &Inode) -> Result<FileMap, ScanError> {
        if inode.flags & INLINE_DATA_FL != 0 {
            return Err(ScanError::Unsupported("the file's data is inline in its inode".into()));
        }
        if inode.flags & EXTENTS_FL == 0 {
            return Err(ScanError::Unsupported(
                "the file uses ext2/ext3 block maps, which isoroot's reader does not follow".into(),
            ));
        }
        let mut leaves = Vec::new();
        self.walk(&inode.i_block, None, &mut 0, &mut leaves)?;
        leaves.sort_by_key(|l| l.0);
        let mut map = FileMap::new(inode.size);
        let mut next = 0u64;
        for (logical, start, len, unwritten) in leaves {
            if logical < next {
                return Err(corrupt("overlapping extents"));
            }
            map.push(Run::Zero { len: (logical - next) * self.block });
            let bytes = len * self.block;
            map.push(if unwritten {
                Run::Zero { len: bytes }
            } else {
                Run::Data { offset: self.at(start)?, len: bytes }
            });
            next = logical + len;
        }
        // Blocks past the last extent are a hole (push cuts the run to what is left).
        map.push(Run::Zero { len: inode.size });
        Ok(map)
    }

    /// Collects (logical block, physical block, length, unwritten) from an extent node whose
    /// depth must be `depth` (a child is one level below its parent, so the walk ends),
    /// counting the blocks read in `nodes`.
    fn walk(
        &self,
        node: &[u8],
        want_depth: Option<u16>,
        nodes: &mut usize,
        out: &mut Vec<(u64, u64, u64, bool)>,
    ) -> Result<(), ScanError> {
        if node.len() < 12 || le16(node, 0) != 0xF30A {
            return Err(corrupt("bad extent header"));
        }
        let entries = usize::from(le16(node, 2));
        let depth = le16(node, 6);
        if depth > MAX_DEPTH || want_depth.is_some_and(|d| d != depth) {
            return Err(corrupt(format!("an extent node at depth {depth} where {want_depth:?} belongs")));
        }
        if 12 + entries * 12 > node.len() || out.len() > MAX_EXTENTS {
            return Err(corrupt("an extent tree too full"));
        }
        for i in 0..entries {
            let e = &node[12 + i * 12..24 + i * 12];
            let logical = u64::from(le32(e, 0));
            if depth == 0 {
                let raw_len = le16(e, 4);
                let (len, unwritten) =
                    if raw_len > 32768 { (raw_len - 32768, true) } else { (raw_len, false) };
                let start = u64::from(le16(e, 6)) << 32 | u64::from(le32(e, 8));
                out.push((logical, start, u64::from(len), unwritten));
            } else {
                *nodes += 1;
                if *nodes > MAX_NODES {
                    return Err(corrupt("an extent tree of more blocks than any file has"));
                }
                let leaf = u64::from(le32(e, 4)) | u64::from(le16(e, 8)) << 32;
                let child = self.read(self.at(leaf)?, self.block as usize)?;
                self.walk(&child, Some(depth - 1), nodes, out)?;
            }
        }
        Ok(())
    }

    /// Reads a whole (small) file or directory through its map.
    fn contents(&self, inode: &Inode) -> Result<Vec<u8>, ScanError> {
        if inode.size > 64 << 20 {
            return Err(corrupt("a directory larger than 64 MiB"));
        }
        let map = self.file_map(inode)?;
        let mut out = Vec::with_capacity(inode.size as usize);
        for run in map.runs {
            match run {
                Run::Data { offset, len } => out.extend(self.read(offset, len as usize)?),
                Run::Zero { len } => out.resize(out.len() + len as usize, 0),
            }
        }
        Ok(out)
    }

    /// Directory entries as (name, inode, file type: 1 a file, 2 a directory, 0 unknown
    /// without the filetype feature); linear, which also reads htree directories (their
    /// index blocks look like one empty entry).
    fn entries(&self, dir: &Inode) -> Result<Vec<(Vec<u8>, u32, u8)>, ScanError> {
        let data = self.contents(dir)?;
        let mut out = Vec::new();
        for block in data.chunks(self.block as usize) {
            let mut at = 0;
            while at + 8 <= block.len() {
                let inode = le32(block, at);
                let rec_len = usize::from(le16(block, at + 4));
                let name_len = usize::from(block[at + 6]);
                if rec_len < 8 || at + rec_len > block.len() {
                    break;
                }
                if inode != 0 && 8 + name_len <= rec_len {
                    out.push((block[at + 8..at + 8 + name_len].to_vec(), inode, block[at + 7]));
                }
                at += rec_len;
            }
        }
        Ok(out)
    }
}

pub fn map(dev: &(impl ReadAt + ?Sized), path: &str) -> Result<FileMap, ScanError> {
    let fs = Fs::open(dev)?;
    let file = find(path, ROOT_INODE, |&dir, name| {
        let entries = fs.entries(&fs.inode(dir)?)?;
        let Some(&(_, n, _)) = entries.iter().find(|(e, ..)| e == name.as_bytes()) else {
            return Ok(Lookup::Missing(
                entries
                    .iter()
                    .map(|(e, ..)| String::from_utf8_lossy(e).into_owned())
                    .filter(|e| e != "." && e != "..")
                    .collect(),
            ));
        };
        let inode = fs.inode(n)?;
        Ok(if inode.is_symlink() {
            if inode.size > MAX_LINK as u64 {
                return Err(corrupt(format!("a symbolic link of {} bytes in {name}", inode.size)));
            }
            let target = if inode.size < 60 && inode.flags & EXTENTS_FL == 0 {
                inode.i_block[..inode.size as usize].to_vec()
            } else {
                fs.contents(&inode)?
            };
            Lookup::Link(String::from_utf8_lossy(&target).into_owned())
        } else if inode.is_dir() {
            Lookup::Dir(n)
        } else if inode.is_file() {
            Lookup::File(n)
        } else {
            Lookup::Other
        })
    })?;
    fs.file_map(&fs.inode(file)?)
}

pub fn isos(dev: &(impl ReadAt + ?Sized)) -> Result<Listing, ScanError> {
    let fs = Fs::open(dev)?;
    walk_isos(ROOT_INODE, |&dir| {
        let mut items = Vec::new();
        for (name, n, file_type) in fs.entries(&fs.inode(dir)?)? {
            let name = String::from_utf8_lossy(&name).into_owned();
            // The entry's file type where it has one; the inode only where it does not. An
            // inode that cannot be read loses its entry, not the folder.
            let dir = match file_type {
                1 => false,
                2 => true,
                0 => match fs.inode(n) {
                    Ok(i) if i.is_dir() || i.is_file() => i.is_dir(),
                    _ => continue,
                },
                _ => continue,
            };
            if dir || is_iso_name(&name) {
                items.push(Item { name, dir, node: n });
            }
        }
        Ok(items)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A superblock with the given state and incompatible features, enough for `open`.
    fn image(state: u16, incompat: u32) -> Vec<u8> {
        let mut d = vec![0u8; 4096];
        let sb = &mut d[1024..2048];
        sb[0x38..0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
        sb[0x3A..0x3C].copy_from_slice(&state.to_le_bytes());
        sb[0x60..0x64].copy_from_slice(&incompat.to_le_bytes());
        sb[0x28..0x2C].copy_from_slice(&8192u32.to_le_bytes()); // inodes per group
        sb[0x4C] = 1; // dynamic revision
        sb[0x58..0x5A].copy_from_slice(&256u16.to_le_bytes()); // inode size
        d
    }

    /// An extent node: its header and (logical, pointer) index entries or nothing.
    fn node(depth: u16, children: &[u32], room: usize) -> Vec<u8> {
        let mut n = vec![0u8; room];
        n[0..2].copy_from_slice(&0xF30Au16.to_le_bytes());
        n[2..4].copy_from_slice(&(children.len() as u16).to_le_bytes());
        n[6..8].copy_from_slice(&depth.to_le_bytes());
        for (i, c) in children.iter().enumerate() {
            n[12 + i * 12 + 4..12 + i * 12 + 8].copy_from_slice(&c.to_le_bytes());
        }
        n
    }

    fn fs(dev: &[u8]) -> Fs<'_, [u8]> {
        Fs {
            dev,
            block: 1024,
            inodes_per_group: 1,
            inode_size: 128,
            desc_size: 32,
            desc_start: 0,
            is_64bit: false,
        }
    }

    #[test]
    fn crafted_extent_trees_end() {
        // Every index entry of every level points at the next level's one block: 4 × 84⁴
        // paths to walk without a budget.
        let mut dev = vec![0u8; 6 * 1024];
        for depth in 1..=4u16 {
            let at = (5 - depth as usize) * 1024;
            dev[at..at + 1024].copy_from_slice(&node(depth, &[6 - u32::from(depth); 84], 1024));
        }
        dev[5 * 1024..].copy_from_slice(&node(0, &[], 1024));
        let root = node(5, &[1; 4], 60);
        let start = std::time::Instant::now();
        let e = fs(&dev).walk(&root, None, &mut 0, &mut Vec::new()).err();
        assert!(matches!(e, Some(ScanError::Corrupt(m)) if m.contains("more blocks")));
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        // A child that claims the depth of its parent would loop.
        let mut dev = vec![0u8; 2 * 1024];
        dev[1024..].copy_from_slice(&node(1, &[1], 1024));
        let e = fs(&dev).walk(&node(1, &[1], 60), None, &mut 0, &mut Vec::new()).err();
        assert!(matches!(e, Some(ScanError::Corrupt(m)) if m.contains("at depth 1 where Some(0)")));
    }

    #[test]
    fn what_the_reader_cannot_follow_is_refused_before_it_maps() {
        let filetype_extents_64bit = 0x2 | 0x40 | 0x80;
        assert!(Fs::open(&image(STATE_VALID, filetype_extents_64bit)[..]).is_ok());
        for meta_bg_or_casefold in [0x10, 0x2_0000] {
            let e = Fs::open(&image(STATE_VALID, filetype_extents_64bit | meta_bg_or_casefold)[..]).err();
            assert!(matches!(e, Some(ScanError::Unsupported(m)) if m.contains("does not follow")));
        }
        let e = Fs::open(&image(0, filetype_extents_64bit)[..]).err();
        assert!(matches!(e, Some(ScanError::Unclean(m)) if m.contains("VALID_FS")));
    }
}
