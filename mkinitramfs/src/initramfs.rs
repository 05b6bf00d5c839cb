//! `isoroot mkinitramfs`: the init, the profiles, the modules, written as one newc archive.

use crate::cpio::Archive;
use crate::kmods;
use anyhow::{bail, Context, Result};
use isoroot_profiles::layout::{ADDON, MODULE_LIST, PROFILE_DIR};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Compress {
    None,
    Gzip,
    Zstd,
    Xz,
}

pub struct Options {
    pub out: PathBuf,
    pub kver: String,
    pub modules_dir: PathBuf,
    pub no_modules: bool,
    pub compress: Compress,
    pub init: PathBuf,
    pub rescue_shell: Option<PathBuf>,
    pub profiles: Vec<PathBuf>,
    pub add_modules: Vec<String>,
    /// NIC drivers and nbd, for `iso=http://…` and `iso=nbd://…`.
    pub network: bool,
    /// A `--no-modules` archive carried at [`ADDON`] for the boot-time picker's kexec.
    pub addon: Option<PathBuf>,
}

/// Where the isoroot-init binary is looked for when `--init` is not given: beside this
/// program (an install), or where `cargo xtask build` puts it. A statically linked one comes
/// first: `cargo build --release` leaves a dynamically linked one beside this program.
pub fn default_init() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let found: Vec<PathBuf> = [
        dir.join("isoroot-init"),
        dir.join("../x86_64-unknown-linux-gnu/release/isoroot-init"),
        PathBuf::from("/usr/lib/isoroot/isoroot-init"),
    ]
    .into_iter()
    .filter(|p| p.is_file())
    .collect();
    let is_static = |p: &&PathBuf| std::fs::read(p).is_ok_and(|b| not_static(&b).is_none());
    found.iter().find(is_static).or(found.first()).cloned()
}

/// Why `elf` cannot be the /init of an initramfs, which the kernel starts with no dynamic
/// loader: not a 64-bit ELF, or one that names an interpreter (PT_INTERP).
fn not_static(elf: &[u8]) -> Option<String> {
    const PT_INTERP: u32 = 3;
    let bytes = |at: usize, n: usize| elf.get(at..at.checked_add(n)?);
    let u16_at = |at| bytes(at, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at| bytes(at, 4).map(|b| u32::from_le_bytes(b.try_into().unwrap()));
    let u64_at = |at| bytes(at, 8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize);
    if bytes(0, 6) != Some(b"\x7fELF\x02\x01") {
        return Some("it is not a 64-bit little-endian ELF executable".into());
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return Some("its ELF header is cut short".into());
    };
    for i in 0..usize::from(count) {
        let at = phoff.saturating_add(i * usize::from(size));
        match u32_at(at) {
            None => return Some("its program headers are cut short".into()),
            Some(PT_INTERP) => {
                let interp = u64_at(at + 8)
                    .zip(u64_at(at + 32))
                    .and_then(|(offset, len)| bytes(offset, len))
                    .map(|b| String::from_utf8_lossy(b).trim_end_matches('\0').to_string())
                    .unwrap_or_default();
                return Some(format!("it is dynamically linked (it asks for {interp})"));
            }
            Some(_) => {}
        }
    }
    None
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn add_modules(a: &mut Archive, o: &Options) -> Result<()> {
    let set = kmods::resolve(&o.modules_dir, &o.add_modules, o.network)?;
    for m in &set.missing {
        eprintln!("isoroot: note: kernel {} has no module {m}; skipped", o.kver);
    }
    let base = format!("lib/modules/{}", o.kver);
    let mut dep = String::new();
    for (rel, deps) in &set.files {
        a.file(&format!("{base}/{rel}"), read(&o.modules_dir.join(rel))?, 0o644);
        dep.push_str(&format!("{rel}: {}\n", deps.join(" ")));
    }
    let alias = std::fs::read_to_string(o.modules_dir.join("modules.alias")).unwrap_or_default();
    a.file(&format!("{base}/modules.dep"), dep.into_bytes(), 0o644);
    a.file(&format!("{base}/modules.alias"), kmods::filter_aliases(&alias, &set).into_bytes(), 0o644);
    let builtin = std::fs::read(o.modules_dir.join("modules.builtin")).unwrap_or_default();
    a.file(&format!("{base}/modules.builtin"), builtin, 0o644);
    let mut load = set.load.join("\n");
    load.push('\n');
    a.file(MODULE_LIST.trim_start_matches('/'), load.into_bytes(), 0o644);
    eprintln!("isoroot: {} modules for {}, {} loaded at every boot", set.files.len(), o.kver, set.load.len());
    Ok(())
}

fn add_shell(a: &mut Archive, busybox: &Path) -> Result<()> {
    a.file("bin/busybox", read(busybox)?, 0o755);
    a.symlink("bin/sh", "busybox");
    // Every applet as a link, so the shell has ls, mount, cat… under their own names.
    let list = Command::new(busybox).arg("--list").output();
    let applets = match list {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => String::new(),
    };
    for applet in applets.lines().map(str::trim).filter(|l| !l.is_empty() && !l.contains('/')) {
        if !a.contains(&format!("bin/{applet}")) {
            a.symlink(&format!("bin/{applet}"), "busybox");
        }
    }
    Ok(())
}

pub fn build(o: &Options) -> Result<()> {
    let mut a = Archive::default();
    for d in ["dev", "proc", "sys", "run", "newroot", PROFILE_DIR.trim_start_matches('/')] {
        a.dir(d);
    }
    a.char_dev("dev/console", 5, 1, 0o600);
    let init = read(&o.init)?;
    if let Some(why) = not_static(&init) {
        bail!(
            "{} cannot be the init of an initramfs: {why}, and the kernel starts it with no dynamic loader \
             (\"Failed to execute /init (error -2)\"); build the static one with `cargo xtask build` and name it \
             with --init",
            o.init.display()
        );
    }
    a.file("isoroot/init", init, 0o755);
    for path in &o.profiles {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let p = isoroot_profiles::from_yaml(&text).with_context(|| format!("profile {}", path.display()))?;
        let compact = isoroot_profiles::to_compact(std::slice::from_ref(&p));
        a.file(
            &format!("{}/{}.profile", PROFILE_DIR.trim_start_matches('/'), p.name),
            compact.into_bytes(),
            0o644,
        );
    }
    if o.no_modules {
        // Appended to a distro's initrd, whose module tree and modules.dep the init uses:
        // only the names to load at every boot. The distro's /init and /etc/initrd-release
        // stay as they are; boot entries use rdinit=/isoroot/init. `--add-module` names join
        // the list: the distro's tree has them.
        let load: String = kmods::ALWAYS
            .iter()
            .copied()
            .chain(o.add_modules.iter().map(String::as_str))
            .map(|m| format!("{m}\n"))
            .collect();
        a.file(MODULE_LIST.trim_start_matches('/'), load.into_bytes(), 0o644);
    } else {
        a.symlink("init", "isoroot/init");
        a.file(
            "etc/initrd-release",
            format!("NAME=isoroot\nID=isoroot\nVERSION_ID={}\n", env!("CARGO_PKG_VERSION")).into_bytes(),
            0o644,
        );
        add_modules(&mut a, o)?;
    }
    if let Some(addon) = &o.addon {
        a.file(ADDON.trim_start_matches('/'), read(addon)?, 0o644);
    }
    if let Some(sh) = &o.rescue_shell {
        add_shell(&mut a, sh)?;
    }
    write(&a, &o.out, o.compress)
}

/// Writes next to the target and renames, so that a failed run leaves no half archive.
fn write(a: &Archive, out: &Path, compress: Compress) -> Result<()> {
    let mut raw = Vec::new();
    a.write(&mut raw)?;
    let data = match compress {
        Compress::None => raw,
        Compress::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&raw)?;
            e.finish()?
        }
        Compress::Zstd => zstd::encode_all(&raw[..], 10)?,
        Compress::Xz => {
            // The kernel's xz decoder checks CRC32 only.
            let stream = xz2::stream::Stream::new_easy_encoder(6, xz2::stream::Check::Crc32)?;
            let mut e = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
            e.write_all(&raw)?;
            e.finish()?
        }
    };
    let Some(name) = out.file_name() else {
        bail!("{} is not a file name", out.display());
    };
    let tmp = out.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    std::fs::write(&tmp, &data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("renaming {} to {}", tmp.display(), out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::not_static;

    #[test]
    fn only_a_static_elf_can_be_init() {
        // This test's own binary: dynamically linked, as `cargo build` makes them.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let why = not_static(&me).unwrap();
        assert!(why.starts_with("it is dynamically linked (it asks for /lib"), "{why}");
        assert!(not_static(b"#!/bin/sh\n").unwrap().contains("not a 64-bit"));
        // A header and one PT_LOAD program header, no PT_INTERP.
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3A].copy_from_slice(&1u16.to_le_bytes());
        elf[64] = 1;
        assert_eq!(not_static(&elf), None);
        // Program headers that point past the file.
        elf[0x38..0x3A].copy_from_slice(&2u16.to_le_bytes());
        assert!(not_static(&elf).unwrap().contains("cut short"));
    }
}
