//! `isoroot verify ISO`: the ISO against the checksum a distro publishes, and that checksum
//! file (or the ISO itself) against its OpenPGP signature. Signatures are checked by `gpgv`,
//! Debian's minimal verifier (what apt uses), with the keyring the user names: the distro's
//! signing key, downloaded and checked out of band as the distro documents.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Options {
    pub iso: PathBuf,
    /// A SHA256SUMS-style file (GNU `HASH  NAME` or `HASH *NAME`, or BSD `SHA256 (NAME) = HASH`).
    pub sums: Option<PathBuf>,
    /// A detached signature of the sums file, or of the ISO when there is no sums file.
    pub signature: Option<PathBuf>,
    pub keyring: Option<PathBuf>,
    pub sha256: Option<String>,
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(isoroot_init::verify::hex(&h.finalize()))
}

/// The hash a sums file gives for `name`, and every name it lists (for the message).
fn lookup(sums: &str, name: &str) -> (Option<String>, Vec<String>) {
    let mut names = Vec::new();
    for line in sums.lines().map(str::trim) {
        let entry = if let Some(rest) = line.strip_prefix("SHA256 (") {
            rest.split_once(") = ").map(|(n, h)| (h, n))
        } else {
            line.split_once(char::is_whitespace).map(|(h, n)| (h, n.trim_start().trim_start_matches('*')))
        };
        let Some((hash, file)) = entry else { continue };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let base = file.rsplit('/').next().unwrap_or(file);
        if base == name {
            return (Some(hash.to_ascii_lowercase()), names);
        }
        names.push(base.to_string());
    }
    (None, names)
}

/// gpgv's verdict: the signer line on success, its whole report otherwise.
fn gpgv(signature: &Path, data: &Path, keyring: Option<&Path>) -> Result<String> {
    let mut c = Command::new("gpgv");
    if let Some(k) = keyring {
        // gpgv reads a relative keyring name from ~/.gnupg.
        c.arg("--keyring").arg(std::path::absolute(k)?);
    }
    let out = c.arg(signature).arg(data).output().context("running gpgv (package gpgv)")?;
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!(
            "the signature {} does not verify {}:\n{}",
            signature.display(),
            data.display(),
            report.trim_end()
        );
    }
    Ok(report.lines().find(|l| l.contains("Good signature")).unwrap_or("Good signature").trim().to_string())
}

pub fn run(o: &Options) -> Result<String> {
    if o.sums.is_none() && o.sha256.is_none() && o.signature.is_none() {
        bail!("nothing to verify against: give --sums FILE (with --signature), --signature, or --sha256 HEX");
    }
    let name = o.iso.file_name().context("the ISO has no file name")?.to_string_lossy().into_owned();
    let mut said = Vec::new();
    if let (Some(sig), None) = (&o.signature, &o.sums) {
        said.push(format!("{name}: {}", gpgv(sig, &o.iso, o.keyring.as_deref())?));
    }
    if let Some(sums) = &o.sums {
        if let Some(sig) = &o.signature {
            said.push(format!("{}: {}", sums.display(), gpgv(sig, sums, o.keyring.as_deref())?));
        }
        let text = std::fs::read_to_string(sums).with_context(|| format!("reading {}", sums.display()))?;
        let (want, listed) = lookup(&text, &name);
        let Some(want) = want else {
            bail!("{} has no sha256 for {name}; it lists: {}", sums.display(), listed.join(", "));
        };
        let got = sha256_of(&o.iso)?;
        if got != want {
            bail!("{name} does not match {}: its sha256 is {got}, the file says {want}", sums.display());
        }
        said.push(format!("{name}: sha256 {got} matches {}", sums.display()));
    }
    if let Some(want) = &o.sha256 {
        let got = sha256_of(&o.iso)?;
        if !got.eq_ignore_ascii_case(want) {
            bail!("{name} does not match --sha256: its sha256 is {got}, expected {want}");
        }
        said.push(format!("{name}: sha256 {got} matches --sha256"));
    }
    Ok(said.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_files_in_every_spelling() {
        let h = "a".repeat(64);
        let g = "b".repeat(64);
        let gnu = format!("{h}  debian-live-12.8.0-amd64-kde.iso\n{g} *other.iso\n");
        assert_eq!(lookup(&gnu, "other.iso").0.as_deref(), Some(g.as_str()));
        assert_eq!(lookup(&gnu, "debian-live-12.8.0-amd64-kde.iso").0.as_deref(), Some(h.as_str()));
        let bsd = format!("SHA256 (./isos/x.iso) = {}\n", h.to_uppercase());
        assert_eq!(lookup(&bsd, "x.iso").0.as_deref(), Some(h.as_str()));
        let (none, listed) = lookup(&gnu, "missing.iso");
        assert_eq!(
            (none, listed),
            (None, vec!["debian-live-12.8.0-amd64-kde.iso".to_string(), "other.iso".to_string()])
        );
        assert_eq!(lookup("not a sums file\n", "x.iso").0, None);
    }
}
