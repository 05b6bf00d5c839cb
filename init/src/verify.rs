//! `iso.sha256=`: the whole image checked before anything trusts it.

use anyhow::{bail, Result};
use isoroot_fs::extents::hex;
use sha2::{Digest, Sha256};

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

    fn hex_to(h: &[u8]) -> [u8; 32] {
        let s = std::str::from_utf8(h).unwrap();
        std::array::from_fn(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
    }
}
