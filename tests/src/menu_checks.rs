//! `isoroot menu` given ISOs whose names try to write boot loader commands of their own.

use crate::cases::Outcome;
use crate::fixtures::Fixtures;
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

pub fn run(isoroot: &Path, f: &Fixtures, filter: Option<&str>) -> Vec<Outcome> {
    let name = "menu --ipxe: an ISO's file name cannot add commands";
    if filter.is_some_and(|s| !name.contains(s)) {
        return vec![];
    }
    vec![Outcome::timed(name, || ipxe_names_stay_text(isoroot, f))]
}
