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

/// The table entry of partition `number` (1-based) on `disk` with `sector`-byte sectors.
pub fn read(disk: &(impl ReadAt + ?Sized), sector: u64, number: u32) -> io::Result<PartInfo> {
    let mut hdr = vec![0u8; 512];
    disk.read_at(sector, &mut hdr)?;
    if &hdr[0..8] == b"EFI PART" {
        let entries = u64::from_le_bytes(hdr[0x48..0x50].try_into().unwrap());
        let count = u32::from_le_bytes(hdr[0x50..0x54].try_into().unwrap());
        let size = u32::from_le_bytes(hdr[0x54..0x58].try_into().unwrap());
        if number == 0 || number > count || !(128..=4096).contains(&size) {
            return Ok(PartInfo::default());
        }
        let mut e = vec![0u8; size as usize];
        disk.read_at(
            entries.saturating_mul(sector).saturating_add(u64::from(number - 1) * u64::from(size)),
            &mut e,
        )?;
        let units: Vec<u16> = e[56..128]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .take_while(|&u| u != 0)
            .collect();
        let label = String::from_utf16_lossy(&units);
        return Ok(PartInfo { uuid: Some(guid(&e[16..32])), label: (!label.is_empty()).then_some(label) });
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
    }
}
