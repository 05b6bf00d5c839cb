//! Is this file an ISO image, and is it whole? Checked before anything is attached, so
//! that a wrong or truncated file gets a message instead of a mount error.

use crate::blockdev::human_size;
use crate::superblock::{self, FsKind, ReadAt};
use anyhow::{bail, Result};

const SECTOR: u64 = 2048;
/// The system area (16 sectors) and one volume descriptor.
const MIN_LEN: u64 = 17 * SECTOR;

#[derive(Debug, PartialEq, Eq)]
pub struct IsoInfo {
    /// `iso9660`, or `udf` for UDF-only images.
    pub fstype: &'static str,
    pub label: Option<String>,
}

fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| if b.is_ascii_graphic() { (b as char).to_string() } else { format!("\\x{b:02x}") })
        .collect()
}

/// Whether a file of `len` bytes can hold an ISO at all.
pub fn check_len(len: u64, name: &str) -> Result<()> {
    if len < MIN_LEN {
        bail!(
            "{name} is not an ISO image: it has {len} bytes, an ISO 9660 image has at least \
             {MIN_LEN} (a volume descriptor at byte 32768); is it an empty or truncated copy?"
        );
    }
    Ok(())
}

/// Checks the volume descriptor at byte 32768 and that the file holds the whole volume.
pub fn check(file: &(impl ReadAt + ?Sized), len: u64, name: &str) -> Result<IsoInfo> {
    check_len(len, name)?;
    let mut pvd = [0u8; SECTOR as usize];
    file.read_at(16 * SECTOR, &mut pvd)?;
    match &pvd[1..6] {
        b"CD001" => {}
        b"BEA01" => return Ok(IsoInfo { fstype: "udf", label: None }),
        found => {
            let what = match superblock::probe(file) {
                Ok(Some(fs)) => format!("it holds a {} filesystem", fs.kind.name()),
                _ => format!("found {:?}", printable(found)),
            };
            bail!("{name} is not an ISO 9660 or UDF image: expected \"CD001\" at byte 32769, {what}");
        }
    }
    let blocks = u64::from(u32::from_le_bytes(pvd[80..84].try_into().unwrap()));
    let block_len = u64::from(u16::from_le_bytes([pvd[128], pvd[129]]));
    let want = blocks * block_len;
    if want > len {
        bail!(
            "{name} is truncated: its volume descriptor says {} ({want} bytes), the file has {} \
             ({len} bytes); copy it again",
            human_size(want),
            human_size(len)
        );
    }
    let label = superblock::probe(file)?.filter(|f| f.kind == FsKind::Iso9660).and_then(|f| f.label);
    Ok(IsoInfo { fstype: "iso9660", label })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(blocks: u32) -> Vec<u8> {
        let mut d = vec![0u8; 18 * SECTOR as usize];
        let p = 16 * SECTOR as usize;
        d[p] = 1;
        d[p + 1..p + 6].copy_from_slice(b"CD001");
        d[p + 40..p + 72].copy_from_slice(format!("{:<32}", "LIVE").as_bytes());
        d[p + 80..p + 84].copy_from_slice(&blocks.to_le_bytes());
        d[p + 128..p + 130].copy_from_slice(&2048u16.to_le_bytes());
        d
    }

    #[test]
    fn a_whole_iso_passes() {
        let d = iso(18);
        let info = check(&d[..], d.len() as u64, "/a.iso").unwrap();
        assert_eq!(info, IsoInfo { fstype: "iso9660", label: Some("LIVE".into()) });
    }

    #[test]
    fn truncated_empty_and_foreign_files_say_what_they_are() {
        let d = iso(1000);
        let e = check(&d[..], d.len() as u64, "/a.iso").unwrap_err().to_string();
        assert!(e.starts_with("/a.iso is truncated: its volume descriptor says 2.0 MiB (2048000 bytes), the file has 36.0 KiB (36864 bytes)"), "{e}");
        let e = check(&[][..], 0, "/e.iso").unwrap_err().to_string();
        assert!(e.contains("it has 0 bytes"), "{e}");
        let e = check(&vec![b'x'; 40000][..], 40000, "/x.iso").unwrap_err().to_string();
        assert!(e.contains("expected \"CD001\" at byte 32769, found \"xxxxx\""), "{e}");
        let mut ext4 = vec![0u8; 40000];
        ext4[0x438] = 0x53;
        ext4[0x439] = 0xEF;
        let e = check(&ext4[..], 40000, "/x.iso").unwrap_err().to_string();
        assert!(e.ends_with("it holds a ext4 filesystem"), "{e}");
    }
}
