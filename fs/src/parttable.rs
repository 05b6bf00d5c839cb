//! PARTUUID and PARTLABEL from the partition table: the kernel's uevent has only the
//! partition number on the kernels isoroot boots (Debian 12's 6.1), and there is no udev.

use crate::ReadAt;
use std::io;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PartInfo {
    pub uuid: Option<String>,
    pub label: Option<String>,
}

fn guid(b: &[u8]) -> String {
    // The first three fields are little-endian, the rest is bytes in order.
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        u32::from_le_bytes(b[0..4].try_into().unwrap()),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10..16].iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// One partition of a table, as [`table`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based, as the kernel numbers it.
    pub number: u32,
    /// Bytes from the start of the disk.
    pub start: u64,
    pub size: u64,
    /// The GPT type GUID, or the MBR type byte as `0x83`.
    pub kind: String,
    pub label: Option<String>,
}

/// GPT type GUIDs that [`table`] reports and `isoroot install` writes.
pub mod kind {
    pub const BIOS_BOOT: &str = "21686148-6449-6e6f-744e-656564454649";
    pub const ESP: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
    pub const BASIC_DATA: &str = "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7";
    pub const LINUX: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
}

/// A GPT header's entry array: where it starts (bytes), how many entries, their size.
fn gpt_array(disk: &(impl ReadAt + ?Sized), sector: u64) -> io::Result<Option<(u64, u32, u32)>> {
    let mut hdr = vec![0u8; 512];
    disk.read_at(sector, &mut hdr)?;
    if &hdr[0..8] != b"EFI PART" {
        return Ok(None);
    }
    let lba = u64::from_le_bytes(hdr[0x48..0x50].try_into().unwrap());
    let count = u32::from_le_bytes(hdr[0x50..0x54].try_into().unwrap());
    let size = u32::from_le_bytes(hdr[0x54..0x58].try_into().unwrap());
    // The specification's sizes; anything else is not a table to trust.
    if !(128..=4096).contains(&size) || count > 1024 {
        return Ok(None);
    }
    Ok(Some((lba.saturating_mul(sector), count, size)))
}

fn gpt_name(e: &[u8]) -> Option<String> {
    let units: Vec<u16> = e[56..128]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    let label = String::from_utf16_lossy(&units);
    (!label.is_empty()).then_some(label)
}

/// The table entry of partition `number` (1-based) on `disk` with `sector`-byte sectors.
pub fn read(disk: &(impl ReadAt + ?Sized), sector: u64, number: u32) -> io::Result<PartInfo> {
    if let Some((at, count, size)) = gpt_array(disk, sector)? {
        if number == 0 || number > count {
            return Ok(PartInfo::default());
        }
        let mut e = vec![0u8; size as usize];
        disk.read_at(at.saturating_add(u64::from(number - 1) * u64::from(size)), &mut e)?;
        return Ok(PartInfo { uuid: Some(guid(&e[16..32])), label: gpt_name(&e) });
    }
    let mut mbr = vec![0u8; 512];
    disk.read_at(0, &mut mbr)?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Ok(PartInfo::default());
    }
    // MBR: the disk signature and the partition number, as blkid and the kernel's root=
    // spell it. MBR partitions have no labels.
    let id = u32::from_le_bytes(mbr[0x1B8..0x1BC].try_into().unwrap());
    Ok(PartInfo { uuid: Some(format!("{id:08x}-{number:02x}")), label: None })
}

/// Every partition on `disk` (GPT, or the four primary MBR entries; a GPT's protective MBR
/// entry is not listed), in table order; empty when there is no table.
pub fn table(disk: &(impl ReadAt + ?Sized), sector: u64) -> io::Result<Vec<Partition>> {
    let mut out = Vec::new();
    if let Some((at, count, size)) = gpt_array(disk, sector)? {
        let all = crate::read_vec(disk, at, count as usize * size as usize)?;
        for (i, e) in all.chunks_exact(size as usize).enumerate() {
            let (first, last) = (crate::le64(e, 32), crate::le64(e, 40));
            if e[0..16].iter().all(|&b| b == 0) || last < first {
                continue;
            }
            out.push(Partition {
                number: i as u32 + 1,
                start: first.saturating_mul(sector),
                size: (last - first).saturating_add(1).saturating_mul(sector),
                kind: guid(&e[0..16]),
                label: gpt_name(e),
            });
        }
        return Ok(out);
    }
    let mbr = crate::read_vec(disk, 0, 512)?;
    if mbr[510..512] != [0x55, 0xAA] {
        return Ok(out);
    }
    for n in 0..4u32 {
        let e = &mbr[0x1BE + 16 * n as usize..][..16];
        let (kind, first, count) = (e[4], crate::le32(e, 8), crate::le32(e, 12));
        if kind == 0 || kind == 0xEE || count == 0 {
            continue;
        }
        out.push(Partition {
            number: n + 1,
            start: u64::from(first) * sector,
            size: u64::from(count) * sector,
            kind: format!("0x{kind:02x}"),
            label: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbr_partuuid() {
        let mut d = vec![0u8; 4096];
        d[0x1B8..0x1BC].copy_from_slice(&0x1507c0deu32.to_le_bytes());
        d[510] = 0x55;
        d[511] = 0xAA;
        assert_eq!(read(&d[..], 512, 1).unwrap(), PartInfo { uuid: Some("1507c0de-01".into()), label: None });
        assert_eq!(read(&vec![0u8; 4096][..], 512, 1).unwrap(), PartInfo::default());
    }

    #[test]
    fn gpt_guid_and_name() {
        let mut d = vec![0u8; 64 * 1024];
        d[510] = 0x55;
        d[511] = 0xAA; // protective MBR
        let h = 512;
        d[h..h + 8].copy_from_slice(b"EFI PART");
        d[h + 0x48..h + 0x50].copy_from_slice(&2u64.to_le_bytes());
        d[h + 0x50..h + 0x54].copy_from_slice(&128u32.to_le_bytes());
        d[h + 0x54..h + 0x58].copy_from_slice(&128u32.to_le_bytes());
        let e = 2 * 512 + 128; // partition 2
        let g = [0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x9a, 0xbc, 1, 2, 3, 4, 5, 6];
        d[e + 16..e + 32].copy_from_slice(&g);
        for (i, c) in "my data".encode_utf16().enumerate() {
            d[e + 56 + 2 * i..e + 58 + 2 * i].copy_from_slice(&c.to_le_bytes());
        }
        let p = read(&d[..], 512, 2).unwrap();
        assert_eq!(p.uuid.as_deref(), Some("12345678-1234-5678-9abc-010203040506"));
        assert_eq!(p.label.as_deref(), Some("my data"));
        assert_eq!(read(&d[..], 512, 200).unwrap(), PartInfo::default());
        // An entry needs a type GUID to be listed.
        d[e..e + 16].copy_from_slice(&g);
        d[e + 32..e + 40].copy_from_slice(&2048u64.to_le_bytes());
        d[e + 40..e + 48].copy_from_slice(&4095u64.to_le_bytes());
        let t = table(&d[..], 512).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].number, t[0].start, t[0].size), (2, 2048 * 512, 2048 * 512));
        assert_eq!(t[0].label.as_deref(), Some("my data"));
    }

    #[test]
    fn mbr_table_leaves_out_the_protective_entry() {
        let mut d = vec![0u8; 4096];
        d[510] = 0x55;
        d[511] = 0xAA;
        d[0x1BE + 4] = 0xEE;
        d[0x1CE + 4] = 0x83;
        d[0x1CE + 8..0x1CE + 12].copy_from_slice(&2048u32.to_le_bytes());
        d[0x1CE + 12..0x1CE + 16].copy_from_slice(&100u32.to_le_bytes());
        let t = table(&d[..], 512).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].number, t[0].kind.as_str(), t[0].size), (2, "0x83", 51200));
    }
}
