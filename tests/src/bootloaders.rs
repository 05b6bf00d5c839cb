//! Disks made the way a user makes them with `isoroot menu`: a folder of ISOs, each with a
//! real kernel, on an ext4 partition, behind GRUB for BIOS (SeaBIOS), GRUB for UEFI, or
//! systemd-boot (both OVMF). The ISOs' own initrds are isoroot's standalone image here (the
//! combined-boot tests prove real distro initrds); the entries are exactly what
//! `isoroot menu` wrote.

use crate::fixtures::Mounted;
use crate::sh::{cmd, run, run_input};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The folder of `work` where [`build`] leaves the ISOs it made, each with a real kernel.
pub const BOOT_ISOS: &str = "boot-isos";
pub const LOADER_UUID: &str = "cccccccc-1111-4222-8333-444444444444";
const GRUB_BIOS: &str = "/usr/lib/grub/i386-pc";
const SYSTEMD_BOOT: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// GPT partition types.
const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

/// (ISO file, its fixture tree in the work directory, its label, kernel and initrd paths).
const ISOS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "archlinux.iso",
        "tree-archlinux.iso",
        "ARCH_202611",
        "arch/boot/x86_64/vmlinuz-linux",
        "arch/boot/x86_64/initramfs-linux.img",
    ),
    // A space in the name: GRUB quotes the kernel's arguments itself.
    ("debian live.iso", "tree-debian", "d-live 12.8.0 st amd64", "live/vmlinuz", "live/initrd.img"),
    (
        "fedora.iso",
        "tree-fedora.iso",
        "Fedora-WS-Live-40-1-14",
        "images/pxeboot/vmlinuz",
        "images/pxeboot/initrd.img",
    ),
];

/// A partitioned disk: each image at the next MiB boundary, in order.
fn disk(out: &Path, label: &str, parts: &[(&str, &Path)]) -> Result<()> {
    let mut script = format!("label: {label}\n");
    let mut at = 2048u64;
    let mut places = Vec::new();
    for (kind, image) in parts {
        let sectors = fs::metadata(image)?.len().div_ceil(512);
        script.push_str(&format!("start={at}, size={sectors}, type={kind}\n"));
        places.push((at, *image));
        at = (at + sectors).next_multiple_of(2048);
    }
    fs::File::create(out)?.set_len((at + 2048) * 512)?;
    run_input(Command::new("sfdisk").arg("--quiet").arg(out), script.as_bytes())?;
    for (start, image) in places {
        dd(image, out, start, 512)?;
    }
    Ok(())
}

/// Writes `from` into `to` at block `seek` of `bs` bytes, keeping the rest of `to`.
fn dd(from: &Path, to: &Path, seek: u64, bs: u64) -> Result<()> {
    run(Command::new("dd")
        .arg(format!("if={}", from.display()))
        .arg(format!("of={}", to.display()))
        .arg(format!("bs={bs}"))
        .arg(format!("seek={seek}"))
        .args(["conv=notrunc", "status=none"]))?;
    Ok(())
}

/// A FAT image of `mib` MiB holding the tree at `src` (mtools: no mount).
fn fat(src: &Path, mib: u64, out: &Path) -> Result<()> {
    let _ = fs::remove_file(out);
    cmd("mkfs.vfat", ["-C", out.to_str().unwrap(), &(mib * 1024).to_string()])?;
    let img = out.to_string_lossy().into_owned();
    for e in fs::read_dir(src)? {
        run(Command::new("mcopy").args(["-s", "-i", &img]).arg(e?.path()).arg("::/"))?;
    }
    Ok(())
}

/// The menu tool, as a user runs it.
fn menu(isoroot: &Path, args: &[&str], mnt: &Path) -> Result<()> {
    run(Command::new(isoroot)
        .arg("menu")
        .args(args)
        .arg("--addon")
        .arg(mnt.join("boot/isoroot-addon.img"))
        .args(["--append", "console=ttyS0 panic=-1"]))?;
    Ok(())
}

/// Builds the three disks from the fixture trees in `work`.
pub fn build(
    isoroot: &Path,
    init: &Path,
    kernel: &Path,
    initrd: &Path,
    work: &Path,
    dir: &Path,
) -> Result<BTreeMap<&'static str, PathBuf>> {
    let isos = work.join(BOOT_ISOS);
    fs::create_dir_all(&isos)?;
    for (file, tree, label, k, i) in ISOS {
        let copy = work.join(format!("boot-{tree}"));
        run(Command::new("cp").arg("-a").arg(work.join(tree)).arg(&copy))?;
        fs::copy(kernel, copy.join(k))?;
        fs::copy(initrd, copy.join(i))?;
        crate::fixtures::iso(&copy, label, &isos.join(file))?;
    }
    let data = work.join("loader-data.img");
    fs::File::create(&data)?.set_len(128 << 20)?;
    run(Command::new("mkfs.ext4").args(["-q", "-F", "-U", LOADER_UUID, "-L", "isodisk"]).arg(&data))?;
    let esp_tree = work.join("esp-systemd-boot");
    {
        let mnt = work.join("loader-mnt");
        let _m = Mounted::new(&data, &mnt)?;
        fs::create_dir_all(mnt.join("isos"))?;
        for (file, ..) in ISOS {
            run(Command::new("cp")
                .arg("--sparse=never")
                .arg(isos.join(file))
                .arg(mnt.join("isos").join(file)))?;
        }
        // GRUB for BIOS loads its modules from the partition, as grub-install puts them.
        let modules = mnt.join("boot/grub/i386-pc");
        fs::create_dir_all(&modules)?;
        for e in fs::read_dir(GRUB_BIOS).context("GRUB for BIOS (package grub-pc-bin)")? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "mod" || x == "lst") {
                fs::copy(&p, modules.join(p.file_name().unwrap()))?;
            }
        }
        run(Command::new(isoroot)
            .args(["mkinitramfs", "--no-modules", "--init"])
            .arg(init)
            .arg("-o")
            .arg(mnt.join("boot/isoroot-addon.img")))?;
        run(&mut Command::new("sync"))?;
        let cfg = mnt.join("boot/grub/grub.cfg");
        let isos_dir = mnt.join("isos");
        menu(
            isoroot,
            &[
                "--grub",
                isos_dir.to_str().unwrap(),
                "--serial",
                "--timeout",
                "5",
                "-o",
                cfg.to_str().unwrap(),
            ],
            &mnt,
        )?;
        menu(isoroot, &["--bls", isos_dir.to_str().unwrap(), "--esp", esp_tree.to_str().unwrap()], &mnt)?;
        run(&mut Command::new("sync"))?;
    }
    let mut disks = BTreeMap::new();

    // BIOS: boot.img in the MBR, core.img right after it (where grub-install embeds it).
    let core = work.join("core.img");
    run(Command::new("grub-mkimage").args(["-O", "i386-pc", "-o"]).arg(&core).args([
        "-p",
        "(hd0,msdos1)/boot/grub",
        "biosdisk",
        "part_msdos",
        "ext2",
    ]))?;
    let bios = dir.join("grub-bios.img");
    disk(&bios, "dos", &[("83", &data)])?;
    run(Command::new("dd")
        .arg(format!("if={GRUB_BIOS}/boot.img"))
        .arg(format!("of={}", bios.display()))
        .args(["bs=440", "count=1", "conv=notrunc", "status=none"]))?;
    dd(&core, &bios, 1, 512)?;
    disks.insert("grub-bios", bios);

    // UEFI GRUB: a standalone image on the ESP that finds the data partition's grub.cfg.
    let stub = work.join("stub.cfg");
    fs::write(
        &stub,
        format!(
            "insmod part_gpt\ninsmod part_msdos\ninsmod ext2\nsearch --no-floppy --fs-uuid --set=root {LOADER_UUID}\n\
             configfile ($root)/boot/grub/grub.cfg\n"
        ),
    )?;
    let esp_grub = work.join("esp-grub");
    fs::create_dir_all(esp_grub.join("EFI/BOOT"))?;
    run(Command::new("grub-mkstandalone")
        .args(["-O", "x86_64-efi", "-o"])
        .arg(esp_grub.join("EFI/BOOT/BOOTX64.EFI"))
        .arg(format!("boot/grub/grub.cfg={}", stub.display())))
    .context("grub-mkstandalone (packages grub-efi-amd64-bin, grub2-common)")?;
    let esp = work.join("esp-grub.img");
    fat(&esp_grub, 32, &esp)?;
    let uefi = dir.join("grub-uefi.img");
    disk(&uefi, "gpt", &[(ESP, &esp), (LINUX, &data)])?;
    disks.insert("grub-uefi", uefi);

    // systemd-boot: the entries and the copied kernels and initrds `menu --bls` wrote.
    fs::create_dir_all(esp_tree.join("EFI/BOOT"))?;
    fs::copy(SYSTEMD_BOOT, esp_tree.join("EFI/BOOT/BOOTX64.EFI"))
        .context("systemd-boot (package systemd-boot-efi)")?;
    fs::write(esp_tree.join("loader/loader.conf"), "default isoroot-fedora.conf\ntimeout 0\n")?;
    let esp = work.join("esp-systemd-boot.img");
    fat(&esp_tree, 96, &esp)?;
    let sdboot = dir.join("systemd-boot.img");
    disk(&sdboot, "gpt", &[(ESP, &esp), (LINUX, &data)])?;
    disks.insert("systemd-boot", sdboot);
    Ok(disks)
}
