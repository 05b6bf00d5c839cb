//! `iso.sha256=`: the whole image checked before anything trusts it.

use crate::superblock::ReadAt;
use anyhow::{bail, Result};
use sha2::{Digest, Sha256};

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How much of each end of the file `iso.fingerprint=` covers.
pub const FINGERPRINT_SPAN: u64 = 64 * 1024;

/// sha256 of the first and the last 64 KiB (all of a smaller file, twice): cheap to read at
/// boot, and it changes when the file is rewritten or the map points elsewhere.
pub fn fingerprint(file: &(impl ReadAt + ?Sized), len: u64) -> std::io::Result<[u8; 32]> {
    let span = FINGERPRINT_SPAN.min(len);
    let mut buf = vec![0u8; span as usize];
    let mut hasher = Sha256::new();
    for at in [0, len - span] {
        file.read_at(at, &mut buf)?;
        hasher.update(&buf);
    }
    Ok(hasher.finalize().into())
}

pub fn sha256(file: &std::fs::File, len: u64, want: &[u8; 32], name: &str) -> Result<()> {
    let mut hasher = Sha256::new();
    crate::progress::stream(file, len, &format!("checking sha256 of {name}"), |piece| {
        hasher.update(piece);
        Ok(())
    })?;
    expect(want, &hasher.finalize().into(), name)
}

/// The sha256 `iso.sha256=` names against the one computed.
pub fn expect(want: &[u8; 32], got: &[u8; 32], name: &str) -> Result<()> {
    if got != want {
        bail!(
            "{name} fails its check: iso.sha256= expects {}, the file's sha256 is {}; \
             the copy is damaged or it is another file",
            hex(want),
            hex(got)
        );
    }
    crate::info!("sha256 of {name} matches");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn mismatch_names_both_sums() {
        let path = std::env::temp_dir().join(format!("isoroot-sha-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let abc = hex_to(b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        super::sha256(&f, 3, &abc, "/a.iso").unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let e = super::sha256(&f, 3, &[0; 32], "/a.iso").unwrap_err().to_string();
        assert!(e.contains("the file's sha256 is ba7816bf"), "{e}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn fingerprint_covers_both_ends() {
        let mut data = vec![0u8; 300 * 1024];
        let base = super::fingerprint(&data[..], data.len() as u64).unwrap();
        data[150 * 1024] = 1; // the middle is not covered
        assert_eq!(super::fingerprint(&data[..], data.len() as u64).unwrap(), base);
        let last = data.len() - 1;
        data[last] = 1;
        assert_ne!(super::fingerprint(&data[..], data.len() as u64).unwrap(), base);
        let small = b"tiny";
        assert!(super::fingerprint(&small[..], 4).is_ok());
    }

    fn hex_to(h: &[u8]) -> [u8; 32] {
        let s = std::str::from_utf8(h).unwrap();
        std::array::from_fn(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
    }
}
