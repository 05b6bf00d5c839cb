//! ext4 (and ext2/3 made with extents): superblock, group descriptors, inodes, extent trees,
//! directory blocks. Read-only and just enough to map one file.

use super::{components, corrupt, FileMap, Run, ScanError};
use crate::superblock::{le16, le32, ReadAt};

const ROOT_INODE: u32 = 2;
const EXTENTS_FL: u32 = 0x8_0000;
const INLINE_DATA_FL: u32 = 0x1000_0000;
const INCOMPAT_RECOVER: u32 = 0x4;
const INCOMPAT_64BIT: u32 = 0x80;
const STATE_ERRORS: u16 = 0x2;
const MAX_LINKS: usize = 40;
/// More extents than a 64 TiB file of 32 MiB extents: only a crafted tree has them.
const MAX_EXTENTS: usize = 1 << 21;

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
        if incompat & INCOMPAT_RECOVER != 0 {
            return Err(ScanError::Unclean(
                "its journal needs recovery (the host was not shut down cleanly); only a mount may replay it"
                    .into(),
            ));
        }
        if le16(&sb, 0x3A) & STATE_ERRORS != 0 {
            return Err(ScanError::Unclean("it has recorded errors; run fsck on it".into()));
        }
        let log = le32(&sb, 0x18);
        if log > 6 {
            return Err(corrupt(format!("block size 1024 << {log}")));
        }
        let block = 1024u64 << log;
        let rev = le32(&sb, 0x4C);
        let inode_size = if rev == 0 { 128 } else { u64::from(le16(&sb, 0x58)) };
        let is_64bit = incompat & INCOMPAT_64BIT != 0;
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
        let raw = self.read(table * self.block + index * self.inode_size, 128)?;
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
        self.walk(&inode.i_block, 0, &mut leaves)?;
        leaves.sort_by_key(|l| l.0);
        let mut map = FileMap { size: inode.size, runs: Vec::new() };
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
                Run::Data { offset: start * self.block, len: bytes }
            });
            next = logical + len;
        }
        // Blocks past the last extent are a hole (push cuts the run to what is left).
        map.push(Run::Zero { len: inode.size });
        Ok(map)
    }

    /// Collects (logical block, physical block, length, unwritten) from an extent node.
    fn walk(
        &self,
        node: &[u8],
        depth_seen: u32,
        out: &mut Vec<(u64, u64, u64, bool)>,
    ) -> Result<(), ScanError> {
        if node.len() < 12 || le16(node, 0) != 0xF30A {
            return Err(corrupt("bad extent header"));
        }
        let entries = usize::from(le16(node, 2));
        let depth = le16(node, 6);
        if depth_seen > 5 || 12 + entries * 12 > node.len() || out.len() > MAX_EXTENTS {
            return Err(corrupt("extent tree too deep or too full"));
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
                let leaf = u64::from(le32(e, 4)) | u64::from(le16(e, 8)) << 32;
                let child = self.read(leaf * self.block, self.block as usize)?;
                self.walk(&child, depth_seen + 1, out)?;
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

    /// Directory entries as (name, inode); linear, which also reads htree directories
    /// (their index blocks look like one empty entry).
    fn entries(&self, dir: &Inode) -> Result<Vec<(Vec<u8>, u32)>, ScanError> {
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
                    out.push((block[at + 8..at + 8 + name_len].to_vec(), inode));
                }
                at += rec_len;
            }
        }
        Ok(out)
    }
}

pub fn map(dev: &(impl ReadAt + ?Sized), path: &str) -> Result<FileMap, ScanError> {
    let fs = Fs::open(dev)?;
    let mut todo: Vec<String> = components(path).rev().map(String::from).collect();
    let mut stack: Vec<u32> = vec![ROOT_INODE];
    let mut walked: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        let dir_no = *stack.last().unwrap();
        match name.as_str() {
            "." => continue,
            ".." => {
                if stack.len() > 1 {
                    stack.pop();
                    walked.pop();
                }
                continue;
            }
            _ => {}
        }
        let dir = fs.inode(dir_no)?;
        let entries = fs.entries(&dir)?;
        let Some(&(_, n)) = entries.iter().find(|(e, _)| e == name.as_bytes()) else {
            let mut names: Vec<String> = entries
                .iter()
                .map(|(e, _)| String::from_utf8_lossy(e).into_owned())
                .filter(|e| e != "." && e != "..")
                .collect();
            names.sort();
            return Err(ScanError::NotFound {
                path: path.into(),
                dir: format!("/{}", walked.join("/")),
                names,
            });
        };
        let inode = fs.inode(n)?;
        if inode.is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(ScanError::Unsupported(format!("{path}: too many levels of symbolic links")));
            }
            let target = if inode.size < 60 && inode.flags & EXTENTS_FL == 0 {
                inode.i_block[..inode.size as usize].to_vec()
            } else {
                fs.contents(&inode)?
            };
            let target = String::from_utf8_lossy(&target).into_owned();
            if target.starts_with('/') {
                stack.truncate(1);
                walked.clear();
            }
            todo.extend(components(&target).rev().map(String::from));
            continue;
        }
        if todo.is_empty() {
            if inode.is_dir() || !inode.is_file() {
                return Err(ScanError::NotAFile(path.into()));
            }
            return fs.file_map(&inode);
        }
        if !inode.is_dir() {
            return Err(ScanError::NotFound {
                path: path.into(),
                dir: format!("/{}", walked.join("/")),
                names: vec![],
            });
        }
        stack.push(n);
        walked.push(name);
    }
    Err(ScanError::NotAFile(path.into()))
}
