//! `isoroot mkinitramfs` on the host: what its options put in the archive, read back with
//! cpio and the decompressors the kernel's formats come from.

use crate::cases::Outcome;
use crate::fixtures::Fixtures;
use std::path::{Path, PathBuf};
use std::process::Command;

fn build(isoroot: &Path, init: &Path, out: &Path, args: &[&str]) -> Result<(), String> {
    crate::sh::run(
        Command::new(isoroot).arg("mkinitramfs").arg("--init").arg(init).arg("-o").arg(out).args(args),
    )
    .map(drop)
    .map_err(|e| format!("{e:#}"))
}

/// One file of an uncompressed newc archive, as cpio reads it.
fn member(archive: &Path, name: &str) -> Result<String, String> {
    let out = crate::sh::run(
        Command::new("cpio")
            .args(["-i", "--quiet", "--to-stdout", name])
            .stdin(std::fs::File::open(archive).map_err(|e| e.to_string())?),
    )
    .map_err(|e| format!("{e:#}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Each `--compress` gives its format (the magic the kernel's decompressors look for), and
/// the same archive inside.
fn compress(isoroot: &Path, init: &Path, f: &Fixtures) -> Result<(), String> {
    let formats: [(&str, &[u8], Option<&str>); 4] = [
        ("none", b"070701", None),
        ("gzip", &[0x1f, 0x8b], Some("gzip")),
        ("xz", &[0xfd, b'7', b'z', b'X', b'Z', 0], Some("xz")),
        ("zstd", &[0x28, 0xb5, 0x2f, 0xfd], Some("zstd")),
    ];
    for (format, magic, tool) in formats {
        let out = f.dir.join(format!("addon-{format}.img"));
        build(isoroot, init, &out, &["--no-modules", "--compress", format])?;
        let bytes = std::fs::read(&out).map_err(|e| e.to_string())?;
        if !bytes.starts_with(magic) {
            return Err(format!("--compress {format}: {} does not start with {magic:02x?}", out.display()));
        }
        let Some(tool) = tool else { continue };
        let plain =
            crate::sh::run(Command::new(tool).args(["-d", "-c"]).arg(&out)).map_err(|e| format!("{e:#}"))?;
        if !plain.stdout.starts_with(b"070701") {
            return Err(format!("--compress {format}: {tool} -d gives no newc archive"));
        }
    }
    Ok(())
}

/// `--profile` puts the profile in the compact form where the init reads it, and
/// `--add-module` puts the module in the archive and on the list loaded at every boot, for
/// the standalone image and for the addon (whose modules come from the distro's tree).
fn profile_and_module(isoroot: &Path, init: &Path, f: &Fixtures) -> Result<(), String> {
    let yaml = std::fs::read_to_string(crate::root().join("profiles/generic.yaml"))
        .map_err(|e| e.to_string())?
        .replace("name: generic", "name: checked");
    let profile: PathBuf = f.dir.join("checked.yaml");
    std::fs::write(&profile, yaml).map_err(|e| e.to_string())?;
    let common = ["--compress", "none", "--profile", profile.to_str().unwrap(), "--add-module", "nls_utf8"];
    for (what, extra) in [("standalone", &["-k", f.kver.as_str()][..]), ("addon", &["--no-modules"][..])] {
        let out = f.dir.join(format!("checked-{what}.img"));
        build(isoroot, init, &out, &[extra, &common[..]].concat())?;
        let compact = member(&out, "etc/isoroot/profiles/checked.profile")?;
        if !compact.lines().any(|l| l == "profile checked") {
            return Err(format!("{what}: etc/isoroot/profiles/checked.profile holds {compact:?}"));
        }
        let load = member(&out, "etc/isoroot/modules.load")?;
        if !load.lines().any(|l| l == "nls_utf8") {
            return Err(format!("{what}: nls_utf8 is not in etc/isoroot/modules.load: {load:?}"));
        }
        if what == "standalone" {
            let list = crate::sh::run(
                Command::new("cpio")
                    .args(["-t", "--quiet"])
                    .stdin(std::fs::File::open(&out).map_err(|e| e.to_string())?),
            )
            .map_err(|e| format!("{e:#}"))?;
            if !String::from_utf8_lossy(&list.stdout).lines().any(|l| l.contains("/nls_utf8.ko")) {
                return Err(format!("{what}: no nls_utf8.ko in the archive"));
            }
        }
    }
    Ok(())
}

/// An init the kernel could not start (dynamically linked, as `cargo build` makes it) is
/// refused with the reason, and no archive is written.
fn dynamic_init_refused(isoroot: &Path, _init: &Path, f: &Fixtures) -> Result<(), String> {
    let out = f.dir.join("dynamic-init.img");
    let _ = std::fs::remove_file(&out);
    let dynamic = Path::new("/bin/ls");
    let e = build(isoroot, dynamic, &out, &["--no-modules"]).err().ok_or("/bin/ls was taken as the init")?;
    if !e.contains("/bin/ls cannot be the init of an initramfs: it is dynamically linked") || out.exists() {
        return Err(format!("want a refusal naming /bin/ls and no archive, got: {e}"));
    }
    Ok(())
}

pub fn run(isoroot: &Path, init: &Path, f: &Fixtures, filter: Option<&str>) -> Vec<Outcome> {
    type Check = fn(&Path, &Path, &Fixtures) -> Result<(), String>;
    let checks: [(&str, Check); 3] = [
        ("mkinitramfs --compress none, gzip, xz, zstd", compress),
        ("mkinitramfs refuses a dynamically linked init", dynamic_init_refused),
        ("mkinitramfs --profile and --add-module, standalone and addon", profile_and_module),
    ];
    Outcome::checks(checks.into(), filter, |check| check(isoroot, init, f))
}
