//! isoroot-fs: the disk formats isoroot reads, in pure Rust with no system calls, for the
//! init (at boot, on hostile disks), the host tool and the fuzz targets alike: superblocks,
//! partition tables, ISO 9660, squashfs metadata, the ext4/FAT/exFAT/NTFS allocation of a
//! file, and the ways a place on a disk is named (tags, paths, sector extents).
//! `docs/architecture.md` shows where it sits.

pub mod extents;
pub mod filemap;
pub mod iso9660;
pub mod location;
pub mod parttable;
pub mod pathwalk;
#[cfg(feature = "squashfs")]
pub mod squashfs;
pub mod superblock;

use std::io;

/// Random access to a device or an image.
pub trait ReadAt {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// `len` bytes at `offset`.
pub fn read_vec(src: &(impl ReadAt + ?Sized), offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    src.read_at(offset, &mut buf)?;
    Ok(buf)
}

/// A window of a device or image: a partition on a disk, a root image inside an ISO.
pub struct Window<'a, D: ReadAt + ?Sized> {
    pub dev: &'a D,
    pub offset: u64,
}

impl<D: ReadAt + ?Sized> ReadAt for Window<'_, D> {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let at = self.offset.checked_add(offset).ok_or(io::ErrorKind::UnexpectedEof)?;
        self.dev.read_at(at, buf)
    }
}

/// Little-endian fields of on-disk structures.
pub fn le16(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
pub fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
pub fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// A size as messages give it: `1000 B`, `2.0 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(super::human_size(1000), "1000 B");
        assert_eq!(super::human_size(2 << 20), "2.0 MiB");
    }
}
