//! `isoroot verify` against a checksum file signed with a throw-away OpenPGP key (gpg makes
//! the key and the signatures, gpgv checks them): a good pair, a wrong sum, a file changed
//! after it was signed, an ISO the file does not list.

use crate::cases::Outcome;
use crate::fixtures::Fixtures;
use crate::sh;
use anyhow::Result;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

struct Signed {
    keyring: PathBuf,
    dir: PathBuf,
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
    let export = sh::run(gpg(&home).arg("--export"))?;
    fs::write(&keyring, export.stdout)?;
    let sum = String::from_utf8(sh::run(Command::new("sha256sum").arg(iso))?.stdout)?;
    let hash = sum.split_whitespace().next().unwrap_or_default().to_string();
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
    Ok(Signed { keyring, dir })
}

pub fn run(isoroot: &Path, f: &Fixtures, filter: Option<&str>) -> Vec<Outcome> {
    let iso = f.isos.join("debian-live.iso");
    let signed = match prepare(f, &iso) {
        Ok(s) => s,
        Err(e) => {
            println!("FAILED verify: set-up: {e:#}");
            return vec![Outcome { name: "verify: set-up".into(), result: Err(format!("{e:#}")), secs: 0.0 }];
        }
    };
    // (name, sums file, the ISO to check, success expected, text expected).
    let other = f.isos.join("archlinux.iso");
    let checks: [(&str, &str, &Path, bool, &str); 4] = [
        ("verify: a signed SHA256SUMS that lists the ISO", "good", &iso, true, "Good signature"),
        ("verify: a wrong sum in a signed file", "bad", &iso, false, "SHA256SUMS.bad: its sha256 is"),
        ("verify: a sums file changed after signing", "changed", &iso, false, "does not verify"),
        (
            "verify: an ISO the file does not list",
            "good",
            &other,
            false,
            "has no sha256 for archlinux.iso; it lists: other.iso",
        ),
    ];
    checks
        .into_iter()
        .filter(|(name, ..)| filter.is_none_or(|s| name.contains(s)))
        .map(|(name, sums, iso, ok, text)| {
            let start = Instant::now();
            let sums = signed.dir.join(format!("SHA256SUMS.{sums}"));
            let out = Command::new(isoroot)
                .arg("verify")
                .arg("--sums")
                .arg(&sums)
                .arg("--signature")
                .arg(sums.with_extension(format!("{}.sign", sums.extension().unwrap().to_string_lossy())))
                .arg("--keyring")
                .arg(&signed.keyring)
                .arg(iso)
                .output();
            let result = match out {
                Err(e) => Err(e.to_string()),
                Ok(o) => {
                    let said = format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    );
                    if o.status.success() != ok || !said.contains(text) {
                        Err(format!(
                            "want {} with {text:?}, got {}: {said}",
                            if ok { "success" } else { "a refusal" },
                            o.status
                        ))
                    } else {
                        Ok(())
                    }
                }
            };
            match &result {
                Ok(()) => println!("ok     {name}"),
                Err(e) => println!("FAILED {name}: {e}"),
            }
            Outcome { name: name.to_string(), result, secs: start.elapsed().as_secs_f64() }
        })
        .collect()
}
