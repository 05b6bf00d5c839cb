//! `isoroot menu` given ISOs whose names try to write boot loader commands of their own.

use crate::cases::Outcome;
use crate::fixtures::Fixtures;
use std::path::Path;
use std::process::Command;

/// A file name that, put on a line as it is, would end an iPXE `item` line and add a label
/// and a shell to the script every machine booting from that server runs.
const HOSTILE: &str = "evil\n:x\nshell\n${ip}.iso";

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
    let item = "item evil-x-shell--ip- isoroot fixture rootfs (evil :x shell {ip}.iso)";
    if !lines.contains(&item) {
        return Err(format!("no line {item:?} in:\n{script}"));
    }
    // The script's own lines only: one label for the entry, one for failures, one shell.
    let labels: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with(':')).collect();
    let shells = lines.iter().filter(|l| l.starts_with("shell")).count();
    if labels != [":evil-x-shell--ip-", ":failed"] || shells != 1 {
        return Err(format!("the file name added lines to the script:\n{script}"));
    }
    Ok(())
}

pub fn run(isoroot: &Path, f: &Fixtures, filter: Option<&str>) -> Vec<Outcome> {
    let name = "menu --ipxe: an ISO's file name cannot add commands";
    if filter.is_some_and(|s| !name.contains(s)) {
        return vec![];
    }
    vec![Outcome::timed(name, || ipxe_names_stay_text(isoroot, f))]
}
