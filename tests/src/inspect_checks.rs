//! `isoroot inspect` on every fixture ISO: the profile, the distro and kernel read from the
//! root image, the ISO's own kernel, and refusals — checked against what each fixture holds.

use crate::cases::Outcome;
use crate::fixtures::{Fixtures, FIXTURE_KVER};
use std::path::Path;
use std::process::Command;

/// (ISO, JSON fragments its report must contain).
const CHECKS: &[(&str, &[&str])] = &[
    (
        "debian-live.iso",
        &[
            r#""profile": "debian-live""#,
            r#""names": "Rock Ridge""#,
            r#""distro": "isoroot fixture debian""#,
            r#""/live/vmlinuz""#,
            // The ISO's own GRUB menu, read as it is.
            r#""title": "Live system""#,
            r#""from": "/boot/grub/loopback.cfg""#,
            r#""findiso=""#,
        ],
    ),
    (
        "debian-signed.iso",
        &[
            r#""subject": "Debian Secure Boot Signer"#,
            r#""issuer": "Debian Secure Boot CA""#,
            r#""secure_boot": "accepted: signed under Debian's CA"#,
        ],
    ),
    (
        "debian-joliet.iso",
        &[r#""profile": "debian-live""#, r#""names": "Joliet""#, r#""distro": "isoroot fixture debian""#],
    ),
    (
        "debian-plain.iso",
        &[r#""profile": "debian-live""#, r#""names": "ISO 9660""#, r#""distro": "isoroot fixture debian""#],
    ),
    (
        "ubuntu.iso",
        &[
            r#""profile": "ubuntu-casper""#,
            r#""strategy": "handoff""#,
            r#""distro": "isoroot fixture minimal""#,
            "/casper/minimal.standard.live.squashfs",
        ],
    ),
    (
        "fedora.iso",
        &[
            r#""profile": "fedora-liveos""#,
            r#""root_format": "squashfs holding an ext image""#,
            r#""/images/pxeboot/vmlinuz""#,
        ],
    ),
    (
        "fedora-kiwi.iso",
        &[r#""profile": "opensuse-kiwi""#, r#""root_format": "erofs""#, r#""/boot/x86_64/loader/linux""#],
    ),
    ("void.iso", &[r#""profile": "void""#, r#""label": "VOID_LIVE""#, r#""strategy": "handoff""#]),
    (
        "archlinux.iso",
        &[
            r#""profile": "archiso""#,
            r#""distro": "isoroot fixture arch""#,
            r#""/arch/boot/x86_64/vmlinuz-linux""#,
        ],
    ),
    ("systemrescue.iso", &[r#""profile": "systemrescue""#, r#""distro": "isoroot fixture rescue""#]),
    (
        "manjaro.iso",
        &[
            r#""profile": "manjaro""#,
            r#""distro": "isoroot fixture manjaro-root""#,
            "/manjaro/x86_64/livefs.sfs",
        ],
    ),
    (
        "nixos.iso",
        &[
            r#""profile": "nixos""#,
            r#""/boot/bzImage""#,
            r#""distro": null"#,
            // Where NixOS names its generation's init: only in its own menu.
            r#""init=/nix/store/0000000000000000000000000000000a-nixos-system-isoroot-24.11/init""#,
        ],
    ),
    ("tails.iso", &[r#""profile": "tails""#, r#""strategy": "handoff""#]),
    ("alpine.iso", &[r#""profile": "alpine""#, r#""unsupported": "Alpine builds its root"#]),
    ("tinycore.iso", &[r#""profile": "tinycore""#, r#""/boot/corepure64.gz""#]),
    ("unknown.iso", &[r#""profile": null"#, "no profile matches; tried"]),
];

/// Runs `isoroot inspect --json ISO`; an ISO with no fragments to check must be refused
/// with `refusal` on stderr.
fn check(isoroot: &Path, iso: &Path, want: &[&str], refusal: Option<&str>) -> Result<(), String> {
    let out =
        Command::new(isoroot).arg("inspect").arg("--json").arg(iso).output().map_err(|e| e.to_string())?;
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    match refusal {
        Some(r) if out.status.success() || !err.contains(r) => {
            return Err(format!("want a refusal saying {r:?}, got {}: {err}", out.status))
        }
        Some(_) => return Ok(()),
        None if !out.status.success() => return Err(format!("exit {}: {err}", out.status)),
        None => {}
    }
    let kver = format!("\"{FIXTURE_KVER}\"");
    let modules = text.contains(r#""distro": "isoroot"#).then_some(kver.as_str());
    match want.iter().copied().chain(modules).find(|w| !text.contains(w)) {
        Some(w) => Err(format!("the report lacks {w}:\n{text}")),
        None => Ok(()),
    }
}

/// Runs the checks whose name contains `filter`.
pub fn run(isoroot: &Path, f: &Fixtures, filter: Option<&str>) -> Vec<Outcome> {
    let refused = [("notiso.iso", "not an ISO 9660 image")];
    let all = CHECKS
        .iter()
        .map(|&(iso, want)| (iso, want, None))
        .chain(refused.map(|(iso, r)| (iso, &[][..], Some(r))));
    all.map(|(iso, want, refusal)| (format!("inspect {iso}"), iso, want, refusal))
        .filter(|(name, ..)| filter.is_none_or(|s| name.contains(s)))
        .map(|(name, iso, want, refusal)| {
            Outcome::timed(&name, || check(isoroot, &f.isos.join(iso), want, refusal))
        })
        .collect()
}
