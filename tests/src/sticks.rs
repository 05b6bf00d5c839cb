//! Sticks made by `isoroot install` onto image files, one per data filesystem, with the ISOs
//! then copied onto the data partition with ordinary tools and no isoroot command (FUSE
//! exFAT, an ext4 loop mount, mtools, ntfs-3g), as a user does after installing. Booted from
//! firmware (OVMF, SeaBIOS): GRUB finds the ISOs itself at boot.

use crate::fixtures::Loop;
use crate::sh::run;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where each ISO of the boot loader fixtures goes on the stick, in the menu's (path) order:
/// a folder and a file name with a space and a non-ASCII letter first, then the top level,
/// then a folder.
pub const ISOS: [(&str, &str); 3] = [
    ("Linux ISOs/débian live.iso", "debian live.iso"),
    ("archlinux.iso", "archlinux.iso"),
    ("more/fedora.iso", "fedora.iso"),
];

/// `isoroot install --fs` values, the fixture disk made with each, and the mount command a
/// user puts files on it with (none: mtools, which also needs no vfat driver on the host).
const FILESYSTEMS: [(&str, &str, &[&str]); 4] = [
    ("exfat", "stick-exfat", &["mount.exfat-fuse"]),
    ("ext4", "stick-ext4", &["mount", "-t", "ext4"]),
    ("fat32", "stick-fat32", &[]),
    ("ntfs", "stick-ntfs", &["ntfs-3g"]),
];

/// The data partition (number 3): its offset and size in bytes, as sfdisk reads the table.
pub fn data_partition(img: &Path) -> Result<(u64, u64)> {
    let out = run(Command::new("sfdisk").arg("-J").arg(img))?;
    let table: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let p = &table["partitiontable"]["partitions"][2];
    let (start, size) = (p["start"].as_u64(), p["size"].as_u64());
    start.zip(size).map(|(s, n)| (s * 512, n * 512)).context("no partition 3 in sfdisk's view")
}

/// Copies the ISOs onto the FAT data partition with mtools, which reads it at its offset.
fn mcopy_isos(img: &Path, isos: &Path) -> Result<()> {
    let at = format!("{}@@{}", img.display(), data_partition(img)?.0);
    let mtools = |tool: &str, args: &[&OsStr]| {
        // Long names are written in the locale's character set.
        run(Command::new(tool).env("LC_ALL", "C.UTF-8").args(["-i", &at]).args(args))
    };
    for (dest, iso) in ISOS {
        if let Some((dir, _)) = dest.rsplit_once('/') {
            mtools("mmd", &[OsStr::new(&format!("::/{dir}"))])?;
        }
        mtools("mcopy", &[isos.join(iso).as_os_str(), OsStr::new(&format!("::/{dest}"))])?;
    }
    Ok(())
}

/// Copies the ISOs onto the stick's data partition, mounted with `mount`.
fn copy_isos(img: &Path, mount: &[&str], isos: &Path, mnt: &Path) -> Result<()> {
    if mount.is_empty() {
        return mcopy_isos(img, isos);
    }
    let (offset, size) = data_partition(img)?;
    let dev = Loop::new(img, &["-o", &offset.to_string(), "--sizelimit", &size.to_string()])?;
    fs::create_dir_all(mnt)?;
    run(Command::new(mount[0]).args(&mount[1..]).arg(&dev.0).arg(mnt))?;
    let copied = ISOS.iter().try_for_each(|(dest, iso)| -> Result<()> {
        let to = mnt.join(dest);
        fs::create_dir_all(to.parent().unwrap())?;
        fs::copy(isos.join(iso), &to).with_context(|| format!("copying to {}", to.display()))?;
        Ok(())
    });
    run(Command::new("umount").arg(mnt))?;
    copied
}

/// Debian's signed boot chain for `install --secure-boot`, unpacked (not installed: the
/// packages' scripts would set up the build machine's own boot) into one root in `dir`.
/// Downloaded once with apt-get; the folder is kept.
const SIGNED_PACKAGES: [&str; 3] = ["shim-signed", "shim-helpers-amd64-signed", "grub-efi-amd64-signed"];

fn signed_root(dir: &Path) -> Result<PathBuf> {
    let root = dir.join("signed-boot");
    let debs = dir.join("third-party-debs");
    fs::create_dir_all(&debs)?;
    for package in SIGNED_PACKAGES {
        // The newest version downloaded.
        let found = |debs: &Path| -> Result<Option<PathBuf>> {
            Ok(fs::read_dir(debs)?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{package}_")))
                })
                .max())
        };
        let deb = match found(&debs)? {
            Some(deb) => deb,
            None => {
                run(Command::new("apt-get").args(["download", "-q", package]).current_dir(&debs))
                    .with_context(|| {
                        format!("downloading Debian's {package} (needs apt's lists and the network)")
                    })?;
                found(&debs)?.with_context(|| format!("apt-get download left no {package} package"))?
            }
        };
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    }
    Ok(root)
}

/// Runs `isoroot install` as the tests make every stick: 512 MiB, serial, a 5 s timeout.
fn install(isoroot: &Path, init: &Path, kver: &str, img: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
    let _ = fs::remove_file(img);
    run(Command::new(isoroot)
        .arg("install")
        .arg(img)
        .args(["--size", "512", "--yes", "--serial", "--timeout", "5", "-k", kver, "--init"])
        .arg(init)
        .args(["--append", "panic=-1"])
        .args(args))
    .with_context(|| format!("isoroot install {args:?}"))?;
    Ok(())
}

/// Writes `stick-FS.img` for each filesystem into `dir`, and `stick-secure-boot.img` (ext4,
/// shim and Debian's signed GRUB).
pub fn build(
    isoroot: &Path,
    init: &Path,
    kver: &str,
    isos: &Path,
    work: &Path,
    dir: &Path,
) -> Result<BTreeMap<&'static str, PathBuf>> {
    let mut disks = BTreeMap::new();
    for (fs, name, mount) in FILESYSTEMS {
        let img = dir.join(format!("{name}.img"));
        install(isoroot, init, kver, &img, &[OsStr::new("--fs"), OsStr::new(fs)])?;
        copy_isos(&img, mount, isos, &work.join(format!("{name}-mnt")))?;
        disks.insert(name, img);
    }
    let img = dir.join("stick-secure-boot.img");
    let signed = match signed_root(dir) {
        Ok(root) => root,
        // Its case is then skipped, saying so.
        Err(e) => {
            eprintln!("fixtures: no stick-secure-boot: {e:#}");
            return Ok(disks);
        }
    };
    let args =
        [OsStr::new("--fs"), OsStr::new("ext4"), OsStr::new("--secure-boot"), OsStr::new("--signed-from")];
    install(isoroot, init, kver, &img, &[&args[..], &[signed.as_os_str()]].concat())?;
    copy_isos(&img, &["mount", "-t", "ext4"], isos, &work.join("stick-secure-boot-mnt"))?;
    disks.insert("stick-secure-boot", img);
    Ok(disks)
}
