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
    /// The fingerprint of the key (or of its primary key) that must have made the signature.
    pub signer: Option<String>,
    pub sha256: Option<String>,
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(isoroot_fs::extents::hex(&h.finalize()))
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

/// What a signature covers: a file gpgv reads itself (an ISO), or bytes already read (a sums
/// file, read once so that what is checked is what is then used).
enum Signed<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

/// A fingerprint as gpg prints it, without spaces or case, for comparing.
fn fingerprint(text: &str) -> String {
    text.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase()
}

/// gpgv's verdict, read from its status lines (`--status-fd`) rather than from its exit
/// code and prose alone: a good signature has `GOODSIG` and a `VALIDSIG` line, which names
/// the signing key and its primary key; with `signer` one of them must be that key. Returns the good
/// signature's line and the key.
fn gpgv(
    signature: &Path,
    data: Signed,
    what: &str,
    keyring: Option<&Path>,
    signer: Option<&str>,
) -> Result<String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut c = Command::new("gpgv");
    c.args(["--status-fd", "1"]);
    if let Some(k) = keyring {
        // gpgv reads a relative keyring name from ~/.gnupg.
        c.arg("--keyring").arg(std::path::absolute(k)?);
    }
    c.arg(signature).stdout(Stdio::piped()).stderr(Stdio::piped());
    match data {
        Signed::File(path) => c.arg(path).stdin(Stdio::null()),
        Signed::Bytes(_) => c.arg("-").stdin(Stdio::piped()),
    };
    let mut child = c.spawn().context("running gpgv (package gpgv)")?;
    if let (Signed::Bytes(bytes), Some(mut stdin)) = (&data, child.stdin.take()) {
        // gpgv reads all of its input before it writes more than a few lines. One that
        // stops early (a bad signature file) closes the pipe: its report says why.
        match stdin.write_all(bytes) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e).context("feeding gpgv"),
            _ => {}
        }
    }
    let out = child.wait_with_output().context("running gpgv")?;
    let status = String::from_utf8_lossy(&out.stdout);
    let report = String::from_utf8_lossy(&out.stderr);
    // VALIDSIG <signing key> <date> <time> <expiry> <version> <reserved> <algo> <hash> <class> <primary key>
    let keys: Vec<(&str, &str)> = status
        .lines()
        .filter_map(|l| l.strip_prefix("[GNUPG:] VALIDSIG "))
        .filter_map(|rest| {
            let fields: Vec<&str> = rest.split(' ').collect();
            Some((*fields.first()?, *fields.get(9).unwrap_or(fields.first()?)))
        })
        .collect();
    // GOODSIG too: VALIDSIG also comes with an expired or revoked key's signature.
    let good = status.lines().any(|l| l.starts_with("[GNUPG:] GOODSIG "));
    if !out.status.success() || keys.is_empty() || !good {
        bail!("the signature {} does not verify {what}:\n{}", signature.display(), report.trim_end());
    }
    if let Some(want) = signer {
        let want = fingerprint(want);
        if !keys.iter().any(|(key, primary)| fingerprint(key) == want || fingerprint(primary) == want) {
            let by: Vec<&str> = keys.iter().map(|(_, primary)| *primary).collect();
            bail!("{what} is signed by key {}, not by --signer {want}", by.join(", "));
        }
    }
    let good = report.lines().find(|l| l.contains("Good signature")).unwrap_or("Good signature").trim();
    Ok(format!("{good} (key {})", keys[0].1))
}

pub fn run(o: &Options) -> Result<String> {
    if o.sums.is_none() && o.sha256.is_none() && o.signature.is_none() {
        bail!("nothing to verify against: give --sums FILE (with --signature), --signature, or --sha256 HEX");
    }
    let name = o.iso.file_name().context("the ISO has no file name")?.to_string_lossy().into_owned();
    let mut said = Vec::new();
    if o.signer.is_some() && o.signature.is_none() {
        bail!("--signer names who must have signed: give the --signature too");
    }
    let (keyring, signer) = (o.keyring.as_deref(), o.signer.as_deref());
    if let (Some(sig), None) = (&o.signature, &o.sums) {
        said.push(format!("{name}: {}", gpgv(sig, Signed::File(&o.iso), &name, keyring, signer)?));
    }
    if let Some(sums) = &o.sums {
        let what = sums.display().to_string();
        let bytes = std::fs::read(sums).with_context(|| format!("reading {what}"))?;
        match &o.signature {
            Some(sig) => {
                said.push(format!("{what}: {}", gpgv(sig, Signed::Bytes(&bytes), &what, keyring, signer)?))
            }
            None => said.push(format!(
                "{what}: not signed: the sum shows the ISO is the one that file lists, not who made either; \
                 check the file's signature with --signature"
            )),
        }
        let (want, listed) = lookup(&String::from_utf8_lossy(&bytes), &name);
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
