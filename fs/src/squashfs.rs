//! Reading files from a squashfs image inside an ISO, without mounting or copying it: the
//! superblock, the inode and directory tables, data blocks and fragments, just enough to
//! read `/etc/os-release` and list `/lib/modules`. (squashfs-ng opens a path and maps the
//! whole file, so it would need the root image copied out of the ISO first.)

use crate::pathwalk::{self, Next};
use crate::{read_vec, ReadAt};
use anyhow::{anyhow, bail, Context, Result};

const MAGIC: &[u8; 4] = b"hsqs";
const META: usize = 8192;
/// Bounds that no real image reaches: a crafted one stops here.
const MAX_FILE: u64 = 1 << 20;
const MAX_META_BLOCKS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compressor {
    Zlib,
    Xz,
    Lz4,
    Zstd,
}

impl Compressor {
    fn from_id(id: u16) -> Result<Self> {
        Ok(match id {
            1 => Compressor::Zlib,
            4 => Compressor::Xz,
            5 => Compressor::Lz4,
            6 => Compressor::Zstd,
            2 => bail!("lzma (legacy) compression is not read"),
            3 => bail!("lzo compression is not read"),
            _ => bail!("unknown compressor {id}"),
        })
    }

    fn decompress(self, data: &[u8], max: usize) -> Result<Vec<u8>> {
        use std::io::Read;
        let mut out = Vec::new();
        match self {
            Compressor::Zlib => {
                flate2::read::ZlibDecoder::new(data).take(max as u64 + 1).read_to_end(&mut out)?;
            }
            Compressor::Xz => {
                xz2::read::XzDecoder::new(data).take(max as u64 + 1).read_to_end(&mut out)?;
            }
            Compressor::Zstd => {
                zstd::stream::read::Decoder::new(data)?.take(max as u64 + 1).read_to_end(&mut out)?;
            }
            Compressor::Lz4 => {
                out = lz4_flex::block::decompress(data, max).map_err(|e| anyhow!("lz4: {e}"))?
            }
        }
        if out.len() > max {
            bail!("a block decompresses to more than {max} bytes");
        }
        Ok(out)
    }
}

fn u16_at(b: &[u8], at: usize) -> Result<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).context("truncated metadata")
}
fn u32_at(b: &[u8], at: usize) -> Result<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes(s.try_into().unwrap())).context("truncated metadata")
}
fn u64_at(b: &[u8], at: usize) -> Result<u64> {
    b.get(at..at + 8).map(|s| u64::from_le_bytes(s.try_into().unwrap())).context("truncated metadata")
}

enum Inode {
    Dir {
        start: u32,
        offset: u16,
        size: u32,
    },
    /// The block sizes are read only when the file is: `sizes` is where they start in the
    /// inode table (block, offset), `count` how many there are.
    File {
        blocks_start: u64,
        size: u64,
        frag: u32,
        frag_offset: u32,
        sizes: (u64, usize),
        count: usize,
    },
    Symlink(String),
    Other,
}

pub struct Squashfs<'a, S: ReadAt + ?Sized> {
    src: &'a S,
    comp: Compressor,
    block_size: u32,
    root: u64,
    inode_table: u64,
    dir_table: u64,
    frag_table: u64,
}

impl<'a, S: ReadAt + ?Sized> Squashfs<'a, S> {
    pub fn open(src: &'a S) -> Result<Self> {
        let sb = read_vec(src, 0, 96).context("reading the squashfs superblock")?;
        if &sb[0..4] != MAGIC {
            bail!("not a squashfs image");
        }
        if u16_at(&sb, 28)? != 4 {
            bail!("squashfs version {} (only 4 is read)", u16_at(&sb, 28)?);
        }
        let block_size = u32_at(&sb, 12)?;
        if !(4096..=1 << 20).contains(&block_size) {
            bail!("odd block size {block_size}");
        }
        Ok(Squashfs {
            src,
            comp: Compressor::from_id(u16_at(&sb, 20)?)?,
            block_size,
            root: u64_at(&sb, 32)?,
            inode_table: u64_at(&sb, 64)?,
            dir_table: u64_at(&sb, 72)?,
            frag_table: u64_at(&sb, 80)?,
        })
    }

    /// `len` bytes of metadata from the block at `block` (absolute), starting `offset` bytes
    /// into its decompressed contents and running on through the following blocks.
    fn meta(&self, mut block: u64, offset: usize, len: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for _ in 0..MAX_META_BLOCKS {
            if out.len() >= offset + len {
                out.drain(..offset);
                out.truncate(len);
                return Ok(out);
            }
            let header = read_vec(self.src, block, 2)?;
            let h = u16::from_le_bytes([header[0], header[1]]);
            let size = usize::from(h & 0x7fff);
            let data = read_vec(self.src, block + 2, size)?;
            if h & 0x8000 != 0 {
                out.extend(data);
            } else {
                out.extend(self.comp.decompress(&data, META)?);
            }
            block += 2 + size as u64;
        }
        bail!("metadata longer than {MAX_META_BLOCKS} blocks")
    }

    fn inode(&self, reference: u64) -> Result<Inode> {
        let block = self.inode_table + (reference >> 16);
        let offset = (reference & 0xffff) as usize;
        let kind = u16_at(&self.meta(block, offset, 2)?, 0)?;
        // Each type's fixed part, so that the last inode of the table reads nothing beyond it.
        let fixed = match kind {
            1 | 2 => 32,
            3 | 10 => 24,
            8 => 40,
            9 => 56,
            _ => return Ok(Inode::Other),
        };
        let head = self.meta(block, offset, fixed)?;
        Ok(match kind {
            1 => Inode::Dir {
                start: u32_at(&head, 16)?,
                offset: u16_at(&head, 26)?,
                size: u32::from(u16_at(&head, 24)?),
            },
            8 => {
                Inode::Dir { start: u32_at(&head, 24)?, offset: u16_at(&head, 34)?, size: u32_at(&head, 20)? }
            }
            2 | 9 => {
                let (blocks_start, size, frag, frag_offset, list) = if kind == 2 {
                    let size = u64::from(u32_at(&head, 28)?);
                    (u64::from(u32_at(&head, 16)?), size, u32_at(&head, 20)?, u32_at(&head, 24)?, 32)
                } else {
                    (u64_at(&head, 16)?, u64_at(&head, 24)?, u32_at(&head, 44)?, u32_at(&head, 48)?, 56)
                };
                let bs = u64::from(self.block_size);
                let count = if frag == u32::MAX { size.div_ceil(bs) } else { size / bs } as usize;
                Inode::File { blocks_start, size, frag, frag_offset, sizes: (block, offset + list), count }
            }
            3 | 10 => {
                let n = u32_at(&head, 20)? as usize;
                if n > 4096 {
                    bail!("a symlink target of {n} bytes");
                }
                Inode::Symlink(String::from_utf8_lossy(&self.meta(block, offset + 24, n)?).into_owned())
            }
            _ => Inode::Other,
        })
    }

    /// (name, inode reference) of each entry in a directory.
    fn entries(&self, start: u32, offset: u16, size: u32) -> Result<Vec<(String, u64)>> {
        // The listed size counts 3 bytes that are not there ("." and "..").
        let len = (size as usize).saturating_sub(3);
        let data = self.meta(self.dir_table + u64::from(start), usize::from(offset), len)?;
        let mut out = Vec::new();
        let mut at = 0;
        while at + 12 <= data.len() {
            let count = u32_at(&data, at)? as usize + 1;
            let inode_block = u64::from(u32_at(&data, at + 4)?);
            at += 12;
            for _ in 0..count.min(256) {
                let entry_offset = u64::from(u16_at(&data, at)?);
                let name_len = usize::from(u16_at(&data, at + 6)?) + 1;
                let name = data.get(at + 8..at + 8 + name_len).context("truncated directory")?;
                out.push((String::from_utf8_lossy(name).into_owned(), inode_block << 16 | entry_offset));
                at += 8 + name_len;
            }
        }
        Ok(out)
    }

    /// The inode at an absolute path, symlinks followed inside the image.
    fn resolve(&self, path: &str) -> Result<Option<Inode>> {
        let found = pathwalk::resolve(path, self.root, |&dir, name| {
            let Inode::Dir { start, offset, size } = self.inode(dir)? else { return Ok(Next::Missing) };
            let Some((_, next)) = self.entries(start, offset, size)?.into_iter().find(|(n, _)| n == name)
            else {
                return Ok(Next::Missing);
            };
            Ok(match self.inode(next)? {
                Inode::Symlink(target) => Next::Link(target),
                _ => Next::Node(next),
            })
        })?;
        found.map(|r| self.inode(r)).transpose()
    }

    /// The names in a directory, or `None` when there is no such directory.
    pub fn list(&self, path: &str) -> Result<Option<Vec<String>>> {
        match self.resolve(path)? {
            Some(Inode::Dir { start, offset, size }) => {
                Ok(Some(self.entries(start, offset, size)?.into_iter().map(|e| e.0).collect()))
            }
            _ => Ok(None),
        }
    }

    /// Whether the path names a regular file.
    pub fn is_file(&self, path: &str) -> Result<bool> {
        Ok(matches!(self.resolve(path)?, Some(Inode::File { .. })))
    }

    /// A small file's contents, or `None` when there is no such file.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let Some(Inode::File { blocks_start, size, frag, frag_offset, sizes, count }) = self.resolve(path)?
        else {
            return Ok(None);
        };
        if size > MAX_FILE {
            bail!("{path} has {size} bytes: more than this reader reads");
        }
        let raw = self.meta(sizes.0, sizes.1, count * 4)?;
        let blocks = raw.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap()));
        let bs = self.block_size as usize;
        let mut out = Vec::new();
        let mut pos = blocks_start;
        for b in blocks {
            let len = (b & 0x00ff_ffff) as usize;
            if len == 0 {
                out.resize(out.len() + bs, 0);
                continue;
            }
            out.extend(self.block(pos, b, bs)?);
            pos += len as u64;
        }
        if frag != u32::MAX {
            let entry = self.meta_at_index(frag)?;
            let (start, word) = (u64_at(&entry, 0)?, u32_at(&entry, 8)?);
            let data = self.block(start, word, bs)?;
            let tail = (size % bs as u64) as usize;
            let from = frag_offset as usize;
            out.extend(data.get(from..from + tail).context("a fragment past its block")?);
        }
        out.truncate(size as usize);
        Ok(Some(out))
    }

    /// The 16-byte fragment table entry `i`.
    fn meta_at_index(&self, i: u32) -> Result<Vec<u8>> {
        let pointer = read_vec(self.src, self.frag_table + u64::from(i / 512) * 8, 8)?;
        let block = u64::from_le_bytes(pointer.try_into().unwrap());
        self.meta(block, (i % 512) as usize * 16, 16)
    }

    fn block(&self, pos: u64, word: u32, max: usize) -> Result<Vec<u8>> {
        let len = (word & 0x00ff_ffff) as usize;
        if len > max {
            bail!("a data block of {len} bytes");
        }
        let data = read_vec(self.src, pos, len)?;
        if word & (1 << 24) != 0 {
            Ok(data)
        } else {
            self.comp.decompress(&data, max)
        }
    }
}
