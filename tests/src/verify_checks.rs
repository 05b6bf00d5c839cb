//! `isoroot verify` against a checksum file signed with a throw-away OpenPGP key (gpg makes
//! the key and the signatures, gpgv checks them): a good pair, a wrong sum, a file changed
//! after it was signed, an ISO the file does not list, an unsigned file, the signer pinned.

use crate::cases::Outcome;
use crate::fixtures::Fixtures;
use crate::sh;
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Signed {
    keyring: PathBuf,
    dir: PathBuf,
    /// The key's fingerprint, and what `isoroot verify` says of a signature it made.
    fingerprint: String,
    good_by: String,
}

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.arg("--homedir").arg(home).args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""]);
    c
}

/// A key, its public keyring, and signed sums files: `good` lists the ISO's real sum, `bad`
/// a wrong one, `changed` is `good` edited after signing.
/// Stops the gpg-agent that gpg started for `home`: one left from an earlier run serves a
/// folder that was deleted and made again, and key generation then fails now and then.
fn kill_agent(home: &Path) {
    let _ = Command::new("gpgconf").arg("--homedir").arg(home).args(["--kill", "gpg-agent"]).output();
}

fn prepare(f: &Fixtures, iso: &Path) -> Result<Signed> {
    let dir = f.dir.join("verify");
    let home = dir.join("gnupg");
    if dir.exists() {
        kill_agent(&home);
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&home)?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&home, fs::Permissions::from_mode(0o700))?;
    sh::run(gpg(&home).args([
        "--quick-gen-key",
        "isoroot test <test@isoroot.invalid>",
        "ed25519",
        "sign",
        "never",
    ]))?;
    let keyring = dir.join("keyring.gpg");
    let listed = sh::run(gpg(&home).args(["--with-colons", "--list-keys"]))?;
    let listed = String::from_utf8(listed.stdout)?;
    let fingerprint = listed
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .and_then(|l| l.split(':').nth(8))
        .context("gpg --list-keys printed no fingerprint")?
        .to_string();
    let export = sh::run(gpg(&home).arg("--export"))?;
    fs::write(&keyring, export.stdout)?;
    let hash = crate::fixtures::sha256sum(iso)?;
    let name = iso.file_name().unwrap().to_string_lossy().into_owned();
    let sums = [("good", hash.clone()), ("bad", "0".repeat(64)), ("changed", hash)];
    for (what, h) in sums {
        let file = dir.join(format!("SHA256SUMS.{what}"));
        fs::write(&file, format!("{}  other.iso\n{h}  {name}\n", "1".repeat(64)))?;
        sh::run(
            gpg(&home)
                .arg("--detach-sign")
                .arg("-o")
                .arg(dir.join(format!("SHA256SUMS.{what}.sign")))
                .arg(&file),
        )?;
    }
    fs::write(dir.join("SHA256SUMS.changed"), format!("{}  {name}\n", "2".repeat(64)))?;
    kill_agent(&home);
    let good_by = format!("(key {fingerprint})");
    Ok(Signed { keyring, dir, fingerprint, good_by })
}

pub fn run(isoroot: &Path, f: &Fixtures, filter: Option<&str>) -> Vec<Outcome> {
    let iso = f.isos.join("debian-live.iso");
    let signed = match prepare(f, &iso) {
        Ok(s) => s,
        Err(e) => {
            println!("FAILED verify: set-up: {e:#}");
            return vec![Outcome::new("verify: set-up", Err(format!("{e:#}")), 0.0)];
        }
    };
    let other = f.isos.join("archlinux.iso");
    let good = || Check { name: "", sums: "good", iso: &iso, signed: true, signer: None, ok: true, text: "" };
    let checks = [
        Check { name: "verify: a signed SHA256SUMS that lists the ISO", text: "Good signature", ..good() },
        Check {
            name: "verify: a wrong sum in a signed file",
            sums: "bad",
            ok: false,
            text: "SHA256SUMS.bad: its sha256 is",
            ..good()
        },
        Check {
            name: "verify: a sums file changed after signing",
            sums: "changed",
            ok: false,
            text: "does not verify",
            ..good()
        },
        Check {
            name: "verify: an ISO the file does not list",
            iso: &other,
            ok: false,
            text: "has no sha256 for archlinux.iso; it lists: other.iso",
            ..good()
        },
        Check {
            name: "verify: a sums file without a signature is said to be unsigned",
            signed: false,
            text: "SHA256SUMS.good: not signed",
            ..good()
        },
        Check {
            name: "verify: --signer with the signing key's fingerprint",
            signer: Some(&signed.fingerprint),
            text: &signed.good_by,
            ..good()
        },
        Check {
            name: "verify: --signer with another key's fingerprint is refused",
            signer: Some("0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567"),
            ok: false,
            text: "not by --signer 0123456789ABCDEF0123456789ABCDEF01234567",
            ..good()
        },
    ];
    checks
        .into_iter()
        .filter(|c| filter.is_none_or(|s| c.name.contains(s)))
        .map(|c| Outcome::timed(c.name, || c.run(isoroot, &signed)))
        .collect()
}

/// One `isoroot verify` run: the sums file `SHA256SUMS.{sums}`, with its signature or not,
/// and whether it must succeed saying `text` or be refused saying it.
struct Check<'a> {
    name: &'a str,
    sums: &'a str,
    iso: &'a Path,
    signed: bool,
    signer: Option<&'a str>,
    ok: bool,
    text: &'a str,
}

impl Check<'_> {
    fn run(&self, isoroot: &Path, signed: &Signed) -> Result<(), String> {
        let sums = signed.dir.join(format!("SHA256SUMS.{}", self.sums));
        let mut c = Command::new(isoroot);
        c.arg("verify").arg("--sums").arg(&sums).arg("--keyring").arg(&signed.keyring);
        if self.signed {
            c.arg("--signature").arg(signed.dir.join(format!("SHA256SUMS.{}.sign", self.sums)));
        }
        if let Some(fpr) = self.signer {
            c.args(["--signer", fpr]);
        }
        let o = c.arg(self.iso).output().map_err(|e| e.to_string())?;
        let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        if o.status.success() != self.ok || !said.contains(self.text) {
            return Err(format!(
                "want {} with {:?}, got {}: {said}",
                if self.ok { "success" } else { "a refusal" },
                self.text,
                o.status
            ));
        }
        Ok(())
    }
}
