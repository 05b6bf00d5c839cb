//! Filesystem identification from on-disk structures, as blkid would report it: there is no
//! udev or blkid in the initramfs. Each reader checks a magic number, then reads the UUID
//! and the label where the filesystem keeps them.

use crate::{le16, le32, le64, read_vec, ReadAt};
use std::io;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// ext2, ext3 and ext4, all mounted by the ext4 driver.
    Ext4,
    Vfat,
    Exfat,
    Ntfs,
    Iso9660,
    Udf,
    Squashfs,
    Erofs,
}

impl FsKind {
    /// The `mount -t` type, as blkid names it.
    pub fn name(self) -> &'static str {
        match self {
            FsKind::Ext4 => "ext4",
            FsKind::Vfat => "vfat",
            FsKind::Exfat => "exfat",
            FsKind::Ntfs => "ntfs",
            FsKind::Iso9660 => "iso9660",
            FsKind::Udf => "udf",
            FsKind::Squashfs => "squashfs",
            FsKind::Erofs => "erofs",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    pub kind: FsKind,
    pub uuid: Option<String>,
    pub label: Option<String>,
    /// ext4 with a journal to replay: mounting it without `noload` would write.
    pub needs_recovery: bool,
}

impl FsInfo {
    fn new(kind: FsKind, uuid: Option<String>, label: Option<String>) -> Self {
        FsInfo { kind, uuid, label, needs_recovery: false }
    }
}

/// A fixed-size label field: trailing NULs and spaces go; empty means no label.
fn label(bytes: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim_end_matches(['\0', ' ']);
    (!s.is_empty()).then(|| s.to_string())
}

fn utf16_label(bytes: &[u8]) -> Option<String> {
    let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    label(String::from_utf16_lossy(&units).as_bytes())
}

/// Identifies the filesystem on `dev`; `Ok(None)` when none is recognised.
pub fn probe(dev: &(impl ReadAt + ?Sized)) -> io::Result<Option<FsInfo>> {
    let mut head = vec![0u8; 4096];
    match dev.read_at(0, &mut head) {
        Ok(()) => {}
        // Smaller than 4 KiB: nothing we know fits.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if &head[0..4] == b"hsqs" {
        return Ok(Some(FsInfo::new(FsKind::Squashfs, None, None)));
    }
    if le32(&head, 1024) == 0xE0F5_E1E2 {
        return Ok(Some(erofs(&head)));
    }
    if le16(&head, 0x438) == 0xEF53 {
        return Ok(Some(ext4(&head)));
    }
    if &head[3..11] == b"EXFAT   " {
        return exfat(dev, &head).map(Some);
    }
    if &head[3..11] == b"NTFS    " {
        return ntfs(dev, &head).map(Some);
    }
    // An ISO may also carry an MBR and even a FAT boot record (hybrid images): check it
    // before FAT.
    if let Ok(pvd) = read_vec(dev, 0x8000, 2048) {
        if &pvd[1..6] == b"CD001" {
            return Ok(Some(iso9660(&pvd)));
        }
        if &pvd[1..6] == b"BEA01" {
            return Ok(Some(FsInfo::new(FsKind::Udf, None, None)));
        }
    }
    if le16(&head, 510) == 0xAA55 && (&head[0x52..0x57] == b"FAT32" || &head[0x36..0x39] == b"FAT") {
        return fat(dev, &head).map(Some);
    }
    Ok(None)
}

fn uuid_string(b: &[u8]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// ext4's incompatible features (`s_feature_incompat`) that more than one reader needs.
pub const EXT4_INCOMPAT_RECOVER: u32 = 0x4;
pub const EXT4_INCOMPAT_64BIT: u32 = 0x80;

fn ext4(head: &[u8]) -> FsInfo {
    let sb = &head[1024..2048];
    let mut info = FsInfo::new(FsKind::Ext4, Some(uuid_string(&sb[0x68..0x78])), label(&sb[0x78..0x88]));
    info.needs_recovery = le32(sb, 0x60) & EXT4_INCOMPAT_RECOVER != 0;
    info
}

fn erofs(head: &[u8]) -> FsInfo {
    let sb = &head[1024..1152];
    FsInfo::new(FsKind::Erofs, Some(uuid_string(&sb[0x30..0x40])), label(&sb[0x40..0x50]))
}

/// blkid's FAT and exFAT "UUID": the 32-bit serial as XXXX-XXXX.
fn serial32(v: u32) -> String {
    format!("{:04X}-{:04X}", v >> 16, v & 0xffff)
}

/// The label lives in the root directory as a volume-ID entry (what Windows and mlabel
/// change) and, older, in the boot sector; blkid prefers the directory entry.
fn fat(dev: &(impl ReadAt + ?Sized), bs: &[u8]) -> io::Result<FsInfo> {
    let fat32 = &bs[0x52..0x57] == b"FAT32";
    let (serial_at, label_at) = if fat32 { (0x43, 0x47) } else { (0x27, 0x2B) };
    let uuid = Some(serial32(le32(bs, serial_at)));
    let boot_label = label(&bs[label_at..label_at + 11]).filter(|l| l != "NO NAME");
    let sector = u64::from(le16(bs, 0x0B));
    let per_cluster = u64::from(bs[0x0D]);
    let reserved = u64::from(le16(bs, 0x0E));
    let fats = u64::from(bs[0x10]);
    let (root_sector, root_len) = if fat32 {
        let data = reserved + fats * u64::from(le32(bs, 0x24));
        let root_cluster = u64::from(le32(bs, 0x2C));
        (data + root_cluster.saturating_sub(2) * per_cluster, sector * per_cluster)
    } else {
        (reserved + fats * u64::from(le16(bs, 0x16)), u64::from(le16(bs, 0x11)) * 32)
    };
    let len = root_len.min(64 * 1024) as usize;
    let dir_label = read_vec(dev, root_sector * sector, len).ok().and_then(|dir| {
        dir.chunks_exact(32)
            .take_while(|e| e[0] != 0)
            .find(|e| e[0] != 0xE5 && e[11] & 0x3F == 0x08)
            .and_then(|e| label(&e[0..11]))
    });
    Ok(FsInfo::new(FsKind::Vfat, uuid, dir_label.or(boot_label)))
}

fn exfat(dev: &(impl ReadAt + ?Sized), bs: &[u8]) -> io::Result<FsInfo> {
    let uuid = Some(serial32(le32(bs, 0x64)));
    let sector_shift = u32::from(bs[0x6C]).min(12);
    let cluster_shift = sector_shift + u32::from(bs[0x6D]).min(25);
    let heap = u64::from(le32(bs, 0x58)) << sector_shift;
    let root = u64::from(le32(bs, 0x60)).saturating_sub(2) << cluster_shift;
    let len = (1usize << cluster_shift).min(64 * 1024);
    let label = read_vec(dev, heap.saturating_add(root), len).ok().and_then(|dir| {
        dir.chunks_exact(32)
            .take_while(|e| e[0] != 0)
            .find(|e| e[0] == 0x83)
            .and_then(|e| utf16_label(&e[2..2 + 2 * usize::from(e[1].min(11))]))
    });
    Ok(FsInfo::new(FsKind::Exfat, uuid, label))
}

/// NTFS keeps its label in the $Volume file (MFT record 3), attribute $VOLUME_NAME.
fn ntfs(dev: &(impl ReadAt + ?Sized), bs: &[u8]) -> io::Result<FsInfo> {
    let uuid = Some(format!("{:016X}", le64(bs, 0x48)));
    let cluster = u64::from(le16(bs, 0x0B)) * u64::from(bs[0x0D]);
    let per_record = bs[0x40] as i8;
    let record_len = if per_record < 0 {
        1u64 << (-i32::from(per_record)).min(16)
    } else {
        u64::from(per_record as u8) * cluster
    };
    let mft = le64(bs, 0x30).saturating_mul(cluster);
    let label = read_vec(dev, mft.saturating_add(3 * record_len), record_len.min(4096) as usize)
        .ok()
        .and_then(|mut rec| ntfs_volume_name(&mut rec));
    Ok(FsInfo::new(FsKind::Ntfs, uuid, label))
}

fn ntfs_volume_name(rec: &mut [u8]) -> Option<String> {
    if rec.len() < 48 || &rec[0..4] != b"FILE" {
        return None;
    }
    // Undo the update sequence: the last two bytes of every 512-byte block were swapped
    // for a check value when the record was written.
    let usa = usize::from(le16(rec, 4));
    let count = usize::from(le16(rec, 6));
    for i in 1..count {
        let end = i * 512;
        if end > rec.len() || usa + 2 * i + 2 > rec.len() {
            return None;
        }
        let (a, b) = (rec[usa + 2 * i], rec[usa + 2 * i + 1]);
        rec[end - 2] = a;
        rec[end - 1] = b;
    }
    let mut at = usize::from(le16(rec, 0x14));
    while at + 24 <= rec.len() {
        let kind = le32(rec, at);
        let len = le32(rec, at + 4) as usize;
        if kind == 0xFFFF_FFFF || len == 0 {
            break;
        }
        if kind == 0x60 && rec[at + 8] == 0 {
            let vlen = le32(rec, at + 0x10) as usize;
            let voff = at + usize::from(le16(rec, at + 0x14));
            return rec.get(voff..voff + vlen).and_then(utf16_label);
        }
        at += len;
    }
    None
}

/// blkid reports an ISO's "UUID" as its modification (else creation) date.
fn iso9660(pvd: &[u8]) -> FsInfo {
    let date = |at: usize| {
        let d = &pvd[at..at + 16];
        (d.iter().all(u8::is_ascii_digit) && d.iter().any(|&c| c != b'0')).then(|| {
            let s = String::from_utf8_lossy(d);
            format!(
                "{}-{}-{}-{}-{}-{}-{}",
                &s[0..4],
                &s[4..6],
                &s[6..8],
                &s[8..10],
                &s[10..12],
                &s[12..14],
                &s[14..16]
            )
        })
    };
    FsInfo::new(FsKind::Iso9660, date(830).or_else(|| date(813)), label(&pvd[40..72]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(len: usize) -> Vec<u8> {
        vec![0; len]
    }

    #[test]
    fn ext4_uuid_label_and_recovery() {
        let mut d = image(8192);
        d[0x438..0x43A].copy_from_slice(&0xEF53u16.to_le_bytes());
        d[0x468..0x478].copy_from_slice(&[
            0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1, 0xf0,
        ]);
        d[0x478..0x47D].copy_from_slice(b"stick");
        d[0x460] = 0x4 | 0x2;
        let i = probe(&d[..]).unwrap().unwrap();
        assert_eq!(i.kind, FsKind::Ext4);
        assert_eq!(i.uuid.as_deref(), Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"));
        assert_eq!(i.label.as_deref(), Some("stick"));
        assert!(i.needs_recovery);
    }

    fn fat32(dir_label: Option<&[u8; 11]>) -> Vec<u8> {
        let mut d = image(64 * 1024);
        d[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        d[0x0D] = 1; // sectors per cluster
        d[0x0E..0x10].copy_from_slice(&4u16.to_le_bytes()); // reserved
        d[0x10] = 2; // FATs
        d[0x24..0x28].copy_from_slice(&8u32.to_le_bytes()); // sectors per FAT
        d[0x2C..0x30].copy_from_slice(&2u32.to_le_bytes()); // root cluster
        d[0x43..0x47].copy_from_slice(&0x1234ABCDu32.to_le_bytes());
        d[0x47..0x52].copy_from_slice(b"BOOTLABEL  ");
        d[0x52..0x5A].copy_from_slice(b"FAT32   ");
        d[510] = 0x55;
        d[511] = 0xAA;
        let root = (4 + 2 * 8) * 512;
        // A long-name entry (attribute 0x0F) must not be taken for the label.
        d[root + 11] = 0x0F;
        d[root] = b'A';
        if let Some(l) = dir_label {
            d[root + 32..root + 43].copy_from_slice(l);
            d[root + 43] = 0x08;
        }
        d
    }

    #[test]
    fn fat32_prefers_the_directory_label() {
        let i = probe(&fat32(Some(b"ISOSTICK   "))[..]).unwrap().unwrap();
        assert_eq!(i.kind, FsKind::Vfat);
        assert_eq!(i.uuid.as_deref(), Some("1234-ABCD"));
        assert_eq!(i.label.as_deref(), Some("ISOSTICK"));
        let i = probe(&fat32(None)[..]).unwrap().unwrap();
        assert_eq!(i.label.as_deref(), Some("BOOTLABEL"));
    }

    #[test]
    fn exfat_label_from_the_root_directory() {
        let mut d = image(256 * 1024);
        d[3..11].copy_from_slice(b"EXFAT   ");
        d[0x58..0x5C].copy_from_slice(&64u32.to_le_bytes()); // heap at sector 64
        d[0x60..0x64].copy_from_slice(&4u32.to_le_bytes()); // root cluster
        d[0x64..0x68].copy_from_slice(&0xDEADBEEFu32.to_le_bytes());
        d[0x6C] = 9;
        d[0x6D] = 3; // 4 KiB clusters
        let root = 64 * 512 + 2 * 4096;
        d[root] = 0x81; // bitmap entry comes first
        d[root + 32] = 0x83;
        d[root + 33] = 4;
        for (i, c) in "Ünï ".encode_utf16().enumerate() {
            d[root + 34 + 2 * i..root + 36 + 2 * i].copy_from_slice(&c.to_le_bytes());
        }
        let i = probe(&d[..]).unwrap().unwrap();
        assert_eq!(i.kind, FsKind::Exfat);
        assert_eq!(i.uuid.as_deref(), Some("DEAD-BEEF"));
        assert_eq!(i.label.as_deref(), Some("Ünï"));
    }

    #[test]
    fn ntfs_label_with_fixups() {
        let mut d = image(64 * 1024);
        d[3..11].copy_from_slice(b"NTFS    ");
        d[0x0B..0x0D].copy_from_slice(&512u16.to_le_bytes());
        d[0x0D] = 8; // 4 KiB clusters
        d[0x30..0x38].copy_from_slice(&2u64.to_le_bytes()); // MFT at cluster 2
        d[0x40] = (-10i8) as u8; // 1 KiB records
        d[0x48..0x50].copy_from_slice(&0x0123456789ABCDEFu64.to_le_bytes());
        let r = 2 * 4096 + 3 * 1024;
        d[r..r + 4].copy_from_slice(b"FILE");
        d[r + 4..r + 6].copy_from_slice(&48u16.to_le_bytes()); // update sequence at 48
        d[r + 6..r + 8].copy_from_slice(&3u16.to_le_bytes());
        d[r + 48..r + 50].copy_from_slice(&[7, 7]); // check value
        d[r + 50..r + 52].copy_from_slice(&[0, 0]); // real end of block 1
        d[r + 52..r + 54].copy_from_slice(&[0, 0]);
        d[r + 510..r + 512].copy_from_slice(&[7, 7]);
        d[r + 1022..r + 1024].copy_from_slice(&[7, 7]);
        d[r + 0x14..r + 0x16].copy_from_slice(&56u16.to_le_bytes());
        let a = r + 56;
        d[a..a + 4].copy_from_slice(&0x60u32.to_le_bytes());
        d[a + 4..a + 8].copy_from_slice(&40u32.to_le_bytes());
        d[a + 0x10..a + 0x14].copy_from_slice(&8u32.to_le_bytes());
        d[a + 0x14..a + 0x16].copy_from_slice(&24u16.to_le_bytes());
        for (i, c) in "Win!".encode_utf16().enumerate() {
            d[a + 24 + 2 * i..a + 26 + 2 * i].copy_from_slice(&c.to_le_bytes());
        }
        d[a + 40..a + 44].copy_from_slice(&0xFFFF_FFFFu32.to_le_bytes());
        let i = probe(&d[..]).unwrap().unwrap();
        assert_eq!(i.kind, FsKind::Ntfs);
        assert_eq!(i.uuid.as_deref(), Some("0123456789ABCDEF"));
        assert_eq!(i.label.as_deref(), Some("Win!"));
    }

    #[test]
    fn iso9660_label_and_date_uuid() {
        let mut d = image(0x8800);
        let p = 0x8000;
        d[p] = 1;
        d[p + 1..p + 6].copy_from_slice(b"CD001");
        d[p + 40..p + 72].copy_from_slice(format!("{:<32}", "d-live 12.5 lx amd64").as_bytes());
        d[p + 813..p + 829].copy_from_slice(b"2024060112345600");
        let i = probe(&d[..]).unwrap().unwrap();
        assert_eq!(i.kind, FsKind::Iso9660);
        assert_eq!(i.label.as_deref(), Some("d-live 12.5 lx amd64"));
        assert_eq!(i.uuid.as_deref(), Some("2024-06-01-12-34-56-00"));
        d[p + 830..p + 846].copy_from_slice(b"2025010203040500");
        assert_eq!(probe(&d[..]).unwrap().unwrap().uuid.as_deref(), Some("2025-01-02-03-04-05-00"));
    }

    #[test]
    fn root_images_and_nothing() {
        let mut d = image(8192);
        d[0..4].copy_from_slice(b"hsqs");
        assert_eq!(probe(&d[..]).unwrap().unwrap().kind, FsKind::Squashfs);
        let mut d = image(8192);
        d[1024..1028].copy_from_slice(&0xE0F5E1E2u32.to_le_bytes());
        assert_eq!(probe(&d[..]).unwrap().unwrap().kind, FsKind::Erofs);
        assert_eq!(probe(&image(8192)[..]).unwrap(), None);
        assert_eq!(probe(&image(100)[..]).unwrap(), None);
    }

    #[test]
    fn garbage_never_panics() {
        // Magic numbers with nonsense geometry must not index out of bounds.
        for magic_at in [(3usize, &b"EXFAT   "[..]), (3, b"NTFS    "), (0x52, b"FAT32   ")] {
            let mut d = vec![0xFFu8; 4096];
            d[magic_at.0..magic_at.0 + magic_at.1.len()].copy_from_slice(magic_at.1);
            d[510] = 0x55;
            d[511] = 0xAA;
            let _ = probe(&d[..]);
        }
    }
}
