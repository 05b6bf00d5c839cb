//! `isoroot menu` on the host: ISOs whose names try to write boot loader commands of their
//! own, and what the README says each option puts in a GRUB entry.

use crate::cases::Outcome;
use crate::fixtures::{Fixtures, Mounted};
use std::path::Path;
use std::process::Command;

/// A file name that, put on a line as it is, would end an iPXE `item` line and add a label
/// and a shell to the script every machine booting from that server runs, or run a command
/// of its own on the same line (iPXE ends a command at a `;`, `&&` or `||` token).
const HOSTILE: &str = "evil\n:x\nshell ; chain evil.ipxe && echo || #${ip}.iso";

fn ipxe_names_stay_text(isoroot: &Path, f: &Fixtures) -> Result<(), String> {
    let dir = f.dir.join("menu-hostile");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::copy(f.isos.join("generic.iso"), dir.join(HOSTILE)).map_err(|e| e.to_string())?;
    let out = crate::sh::run(
        Command::new(isoroot).args(["menu", "--ipxe"]).arg(&dir).args(["--url", "http://127.0.0.1/live"]),
    )
    .map_err(|e| e.to_string())?;
    let script = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = script.lines().collect();
    // One item, whose text keeps the name's words but nothing iPXE acts on.
    let items: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with("item ")).collect();
    match items[..] {
        [item]
            if item.contains("(evil :x shell chain evil.ipxe echo ip .iso)")
                && !item.contains([';', '&', '|', '#', '$', '{']) => {}
        _ => return Err(format!("want one item line with the name's words only:\n{script}")),
    }
    // The script's own lines only: one label for the entry, one for failures, one shell.
    let labels = lines.iter().filter(|l| l.starts_with(':')).count();
    let shells = lines.iter().filter(|l| l.starts_with("shell")).count();
    if labels != 2 || shells != 1 || lines.last() != Some(&"shell") {
        return Err(format!("the file name added lines to the script:\n{script}"));
    }
    Ok(())
}

/// grub.cfg as `isoroot menu --grub` writes it for debian-live.iso (whose own
/// loopback.cfg gets an entry too) on a freshly made ext4 filesystem, with `extra` options.
fn grub_menus(isoroot: &Path, f: &Fixtures, extra: &[&[&str]]) -> Result<Vec<String>, String> {
    let err = |e: anyhow::Error| format!("{e:#}");
    let img = f.dir.join("menu-options.img");
    std::fs::File::create(&img).and_then(|file| file.set_len(64 << 20)).map_err(|e| e.to_string())?;
    crate::sh::cmd("mkfs.ext4", [std::ffi::OsStr::new("-q"), "-F".as_ref(), img.as_os_str()]).map_err(err)?;
    let mnt = f.dir.join("menu-options-mnt");
    let _mounted = Mounted::new(&img, &mnt).map_err(err)?;
    let isos = mnt.join("isos");
    std::fs::create_dir_all(&isos).map_err(|e| e.to_string())?;
    std::fs::copy(f.isos.join("debian-live.iso"), isos.join("debian-live.iso")).map_err(|e| e.to_string())?;
    // Only its place matters to the menu: a file beside the ISOs.
    std::fs::write(mnt.join("addon.img"), b"addon").map_err(|e| e.to_string())?;
    crate::sh::cmd("sync", [] as [&str; 0]).map_err(err)?;
    extra
        .iter()
        .map(|args| {
            let out = crate::sh::run(
                Command::new(isoroot)
                    .args(["menu", "--grub"])
                    .arg(&isos)
                    .arg("--addon")
                    .arg(mnt.join("addon.img"))
                    .args(*args),
            )
            .map_err(err)?;
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .collect()
}

/// The default entry carries extent hints and the ISO's own loopback.cfg gets an entry;
/// `--no-hints` leaves the hints out; `--pin-sha256` adds the ISO's sum.
fn grub_options(isoroot: &Path, f: &Fixtures) -> Result<(), String> {
    let menus = grub_menus(isoroot, f, &[&[], &["--no-hints"], &["--pin-sha256"]])?;
    let [plain, no_hints, pinned] = &menus[..] else {
        return Err(format!("three menus asked for, {} written", menus.len()));
    };
    let want = |menu: &str, what: &str, yes: &[&str], no: &[&str]| -> Result<(), String> {
        let missing = yes.iter().find(|w| !menu.contains(*w));
        let extra = no.iter().find(|w| menu.contains(*w));
        match (missing, extra) {
            (None, None) => Ok(()),
            (Some(m), _) => Err(format!("{what}: lacks {m:?}:\n{menu}")),
            (_, Some(x)) => Err(format!("{what}: has {x:?}:\n{menu}")),
        }
    };
    want(
        plain,
        "menu --grub",
        &[
            "iso=UUID=",
            "iso.extents=",
            "iso.fingerprint=sha256-extents:",
            "configfile /boot/grub/loopback.cfg",
        ],
        &["iso.sha256="],
    )?;
    want(no_hints, "menu --grub --no-hints", &["iso=UUID="], &["iso.extents=", "iso.fingerprint="])?;
    want(pinned, "menu --grub --pin-sha256", &[&format!("iso.sha256={}", f.debian_sha256)], &[])
}

pub fn run(isoroot: &Path, f: &Fixtures, filter: Option<&str>) -> Vec<Outcome> {
    type Check = fn(&Path, &Fixtures) -> Result<(), String>;
    let checks: [(&str, Check); 2] = [
        ("menu --ipxe: an ISO's file name cannot add commands", ipxe_names_stay_text),
        (
            "menu --grub: hints by default, --no-hints, --pin-sha256, the ISO's loopback.cfg entry",
            grub_options,
        ),
    ];
    Outcome::checks(checks.into(), filter, |check| check(isoroot, f))
}
