//! Fixture ISOs in each profile's layout (paths, volume labels, image formats as the
//! distros' build tools make them), each with the tiny busybox root, and the third-party
//! initrds for the combined and handoff boots.

use crate::fixtures::{iso, root, squashfs};
use crate::sh::{cmd, run};
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The store path of the NixOS fixture's init, as a NixOS boot entry names it in init=.
pub const NIXOS_INIT: &str = "/nix/store/0000000000000000000000000000000a-nixos-system-isoroot-24.11/init";
const NIXOS_BUSYBOX: &str = "/nix/store/0000000000000000000000000000000b-busybox-1.36.1";

/// A full busybox root named `name` in `work/roots`.
fn full(work: &Path, name: &str) -> Result<PathBuf> {
    let dir = work.join("roots").join(name);
    root(&dir, name, true)?;
    Ok(dir)
}

/// A layer that only says its name (it sits on a full root).
fn partial(work: &Path, name: &str) -> Result<PathBuf> {
    let dir = work.join("roots").join(name);
    root(&dir, name, false)?;
    Ok(dir)
}

fn erofs(src: &Path, out: &Path) -> Result<()> {
    fs::create_dir_all(out.parent().unwrap())?;
    run(Command::new("mkfs.erofs").arg(out).arg(src)).context("mkfs.erofs (package erofs-utils)")?;
    Ok(())
}

/// An ext3/ext4 image of a directory, as kiwi and void-mklive nest inside their squashfs.
fn ext(kind: &str, src: &Path, out: &Path) -> Result<()> {
    fs::create_dir_all(out.parent().unwrap())?;
    run(Command::new(format!("mkfs.{kind}")).args(["-q", "-F", "-d"]).arg(src).arg(out).arg("32M"))?;
    Ok(())
}

/// dracut's LiveOS layout: LiveOS/squashfs.img holding LiveOS/NESTED, an ext image.
fn liveos_nested(work: &Path, tree: &Path, name: &str, kind: &str, nested: &str) -> Result<()> {
    let outer = work.join(format!("outer-{name}"));
    ext(kind, &full(work, name)?, &outer.join("LiveOS").join(nested))?;
    squashfs(&outer, &tree.join("LiveOS/squashfs.img"))
}

fn touch(tree: &Path, files: &[&str]) -> Result<()> {
    for f in files {
        let path = tree.join(f.trim_start_matches('/'));
        fs::create_dir_all(path.parent().unwrap())?;
        fs::write(&path, format!("{f}: a stand-in, not a real one\n"))?;
    }
    Ok(())
}

/// NixOS: nix-store.squashfs holds the store; the generation's init sets up the tmpfs root
/// from it (as NixOS's stage 2 would) and runs the fixture's marker script.
fn nixos_store(work: &Path, out: &Path) -> Result<()> {
    let store = work.join("nix-store");
    let busybox = store.join(NIXOS_BUSYBOX.trim_start_matches("/nix/store/")).join("bin");
    fs::create_dir_all(&busybox)?;
    fs::copy("/bin/busybox", busybox.join("busybox"))?;
    std::os::unix::fs::symlink("busybox", busybox.join("sh"))?;
    let system = store.join(Path::new(NIXOS_INIT).parent().unwrap().strip_prefix("/nix/store")?);
    fs::create_dir_all(&system)?;
    fs::copy(crate::root().join("tests/fixtures/init.sh"), system.join("marker.sh"))?;
    let init = format!(
        "#!{NIXOS_BUSYBOX}/bin/sh\n\
         {NIXOS_BUSYBOX}/bin/busybox mkdir -p /bin /etc/fixture-layers\n\
         {NIXOS_BUSYBOX}/bin/busybox --install -s /bin\n\
         echo nixos > /etc/fixture-top\n\
         : > /etc/fixture-layers/nix-store\n\
         . {}/marker.sh\n",
        Path::new(NIXOS_INIT).parent().unwrap().display()
    );
    fs::write(system.join("init"), init)?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(system.join("init"), fs::Permissions::from_mode(0o755))?;
    squashfs(&store, out)
}

/// Builds every distro ISO into `isos` and returns (file name, path) pairs.
pub fn build(work: &Path, isos: &Path) -> Result<Vec<(&'static str, PathBuf)>> {
    let mut out = Vec::new();
    let mut make = |file: &'static str, label: &str, fill: &dyn Fn(&Path) -> Result<()>| -> Result<()> {
        let tree = work.join(format!("tree-{file}"));
        fill(&tree)?;
        let path = isos.join(file);
        iso(&tree, label, &path)?;
        out.push((file, path));
        Ok(())
    };
    // Fedora's lorax media: an ext4 root inside the squashfs.
    make("fedora.iso", "Fedora-WS-Live-40-1-14", &|t| {
        touch(t, &["/images/pxeboot/vmlinuz", "/images/pxeboot/initrd.img"])?;
        liveos_nested(work, t, "fedora", "ext4", "rootfs.img")
    })?;
    // kiwi media since Fedora 42: LiveOS/squashfs.img is EROFS and is the root itself.
    make("fedora-kiwi.iso", "Fedora-KDE-Live-42-1-1", &|t| {
        touch(t, &["/boot/x86_64/loader/linux", "/boot/x86_64/loader/initrd"])?;
        erofs(&full(work, "kiwi")?, &t.join("LiveOS/squashfs.img"))
    })?;
    make("void.iso", "VOID_LIVE", &|t| {
        touch(t, &["/boot/vmlinuz", "/boot/initrd"])?;
        liveos_nested(work, t, "void", "ext3", "ext3fs.img")
    })?;
    make("archlinux.iso", "ARCH_202611", &|t| {
        touch(t, &["/arch/boot/x86_64/vmlinuz-linux", "/arch/boot/x86_64/initramfs-linux.img"])?;
        squashfs(&full(work, "arch")?, &t.join("arch/x86_64/airootfs.sfs"))
    })?;
    make("systemrescue.iso", "RESCUE1200", &|t| {
        touch(t, &["/sysresccd/boot/x86_64/vmlinuz", "/sysresccd/boot/x86_64/sysresccd.img"])?;
        squashfs(&full(work, "rescue")?, &t.join("sysresccd/x86_64/airootfs.sfs"))
    })?;
    // Manjaro without mhwdfs, which is optional.
    make("manjaro.iso", "MANJARO_KDE_2410", &|t| {
        touch(t, &["/boot/vmlinuz-x86_64", "/boot/initramfs-x86_64.img"])?;
        let dir = t.join("manjaro/x86_64");
        squashfs(&full(work, "manjaro-root")?, &dir.join("rootfs.sfs"))?;
        squashfs(&partial(work, "manjaro-desktop")?, &dir.join("desktopfs.sfs"))?;
        squashfs(&partial(work, "manjaro-live")?, &dir.join("livefs.sfs"))
    })?;
    make("nixos.iso", "nixos-minimal-24.11-x86_64", &|t| {
        touch(t, &["/boot/bzImage", "/boot/initrd", "/version.txt"])?;
        // Where a NixOS boot entry names its generation's init (`isoroot menu` reads it).
        fs::create_dir_all(t.join("boot/grub"))?;
        fs::write(
            t.join("boot/grub/loopback.cfg"),
            format!("menuentry \"NixOS\" {{\n    linux /boot/bzImage init={NIXOS_INIT} findiso=${{iso_path}}\n    initrd /boot/initrd\n}}\n"),
        )?;
        nixos_store(work, &t.join("nix-store.squashfs"))
    })?;
    make("tails.iso", "TAILS 6.9 - 20241029", &|t| {
        touch(t, &["/live/vmlinuz", "/live/initrd.img"])?;
        fs::write(t.join("live/Tails.module"), "filesystem.squashfs\n")?;
        squashfs(&full(work, "tails")?, &t.join("live/filesystem.squashfs"))
    })?;
    make("alpine.iso", "alpine-std 3.20.3 x86_64", &|t| {
        touch(
            t,
            &["/.alpine-release", "/apks/x86_64/APKINDEX.tar.gz", "/boot/vmlinuz-lts", "/boot/modloop-lts"],
        )
    })?;
    make("tinycore.iso", "CorePure64", &|t| {
        touch(t, &["/boot/vmlinuz64", "/boot/corepure64.gz", "/cde/onboot.lst"])
    })?;
    Ok(out)
}

/// The sources of the distro initrd generators Debian does not package.
const THIRD_PARTY: [&str; 3] =
    ["casper-1.461.tar.gz", "mkinitcpio-41.tar.gz", "mkinitcpio-archiso-73.tar.gz"];
/// The initrds built from them: tests that need one are skipped where the sources are not.
pub const FROM_SOURCES: [&str; 2] = ["casper", "mkinitcpio"];

/// Where the owner keeps the [`THIRD_PARTY`] sources, beside the repository:
/// `../shared/third-party`; or why they cannot be used.
pub fn third_party_sources() -> Result<PathBuf, String> {
    let dir = crate::root().join("../shared/third-party");
    let missing: Vec<&str> = THIRD_PARTY.iter().copied().filter(|f| !dir.join(f).exists()).collect();
    if missing.is_empty() {
        Ok(dir)
    } else {
        Err(format!("{} lacks {}", dir.display(), missing.join(", ")))
    }
}

/// Runs a recipe from `tests/third-party` that builds a distro's initrd into `out`, unless
/// an image of the same recipe and sources (its name carries their hash) is there already.
fn from_recipe(dir: &Path, name: &str, kver: &str, inputs: &[PathBuf], source: &Path) -> Result<PathBuf> {
    let script = crate::root().join("tests/third-party").join(format!("{name}.sh"));
    let sums = cmd("sha256sum", std::iter::once(&script).chain(inputs))?;
    let digest = crate::sh::run_input(&mut Command::new("sha256sum"), &sums.stdout)?;
    let digest: String = String::from_utf8(digest.stdout)?.chars().take(12).collect();
    let out = dir.join(format!("{name}-{kver}-{digest}.img"));
    if !out.exists() {
        let work = dir.join(format!("{name}-work"));
        let tmp = out.with_extension("tmp");
        // Packages a recipe downloads (apt-get download) are kept across builds here.
        let debs = dir.join("third-party-debs");
        fs::create_dir_all(&debs)?;
        run(Command::new(&script).arg(source).arg(kver).arg(&work).arg(&tmp).env("DEBS", &debs))
            .with_context(|| format!("building the {name} initrd with {}", script.display()))?;
        fs::rename(&tmp, &out)?;
        fs::remove_dir_all(&work)?;
    }
    Ok(out)
}

/// The third-party initrds, built once per kernel and kept (they take a minute each):
/// Debian's initramfs-tools (with live-boot installed, as live-build's chroot has it), Debian's
/// dracut with dmsquash-live, the initramfs-tools one with its modules recompressed as
/// .ko.gz, .ko.xz and .ko.zst, and, where [`third_party_sources`] are, Ubuntu's casper on
/// initramfs-tools and Arch's mkinitcpio with archiso's hooks.
pub fn third_party(dir: &Path, kver: &str) -> Result<Vec<(&'static str, PathBuf)>> {
    let itools = dir.join(format!("initramfs-tools-{kver}.img"));
    if !itools.exists() {
        let tmp = itools.with_extension("tmp");
        run(Command::new("mkinitramfs").arg("-o").arg(&tmp).arg(kver))
            .context("mkinitramfs (packages initramfs-tools, live-boot)")?;
        fs::rename(&tmp, &itools)?;
    }
    let dracut = dir.join(format!("dracut-{kver}.img"));
    if !dracut.exists() {
        let tmp = dracut.with_extension("tmp");
        run(Command::new("dracut")
            .args(["--quiet", "--force", "--no-hostonly", "--no-hostonly-cmdline", "--add", "dmsquash-live"])
            .arg(&tmp)
            .arg(kver))
        .context("dracut (packages dracut-core, dracut-live)")?;
        fs::rename(&tmp, &dracut)?;
    }
    // The recipe is in the name: a changed recipe makes a new image.
    let recompressed = dir.join(format!("recompressed-gz-xz-zst-{kver}.img"));
    if !recompressed.exists() {
        recompress(&itools, kver, &recompressed)?;
    }
    let mut out = vec![("initramfs-tools", itools), ("dracut", dracut), ("recompressed", recompressed)];
    if let Ok(src) = third_party_sources() {
        let casper = src.join(THIRD_PARTY[0]);
        out.push((
            FROM_SOURCES[0],
            from_recipe(dir, "casper", kver, std::slice::from_ref(&casper), &casper)?,
        ));
        let arch = [src.join(THIRD_PARTY[1]), src.join(THIRD_PARTY[2])];
        out.push((FROM_SOURCES[1], from_recipe(dir, "mkinitcpio", kver, &arch, &src)?));
    }
    Ok(out)
}

/// Unpacks an initramfs-tools initrd, compresses overlayfs with gzip, its drivers with xz and
/// every other module with zstd (as distros ship them), regenerates modules.dep with depmod,
/// and packs it again.
fn recompress(initrd: &Path, kver: &str, out: &Path) -> Result<()> {
    let un = out.with_extension("d");
    if un.exists() {
        fs::remove_dir_all(&un)?;
    }
    run(Command::new("unmkinitramfs").arg(initrd).arg(&un))?;
    let modules = un.join("usr/lib/modules").join(kver);
    let modules = if modules.exists() { modules } else { un.join("lib/modules").join(kver) };
    let list = cmd("find", [modules.to_str().unwrap(), "-name", "*.ko"])?;
    let mut gz = Vec::new();
    for ko in String::from_utf8(list.stdout)?.lines() {
        if ko.contains("/kernel/fs/overlayfs/") {
            gz.push(ko.to_string());
        } else if ko.contains("/kernel/drivers/") {
            cmd("xz", ["--check=crc32", "-q", ko])?;
        } else {
            cmd("zstd", ["-q", "--rm", ko])?;
        }
    }
    run(Command::new("depmod").arg("-b").arg(&un).arg(kver))?;
    // gzip after depmod, which Debian builds without zlib: a distro that ships .ko.gz has a
    // depmod that reads them, and its modules.dep names them so.
    let dep = modules.join("modules.dep");
    let mut text = fs::read_to_string(&dep)?;
    for ko in &gz {
        cmd("gzip", ["-q", ko])?;
        let rel = Path::new(ko).strip_prefix(&modules)?.to_string_lossy().into_owned();
        text = text.replace(&rel, &format!("{rel}.gz"));
    }
    fs::write(&dep, text)?;
    let script = format!(
        "cd '{}' && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | zstd -q -3 > '{}'",
        un.display(),
        out.display()
    );
    run(Command::new("sh").arg("-c").arg(script))?;
    fs::remove_dir_all(&un)?;
    Ok(())
}

/// Debian's dracut with isoroot's dracut module (dracut-module/90isoroot), enabled with
/// `--add isoroot` as the README says, from a copy of dracut's module tree so that the
/// host's stays as it is. Rebuilt each run: it holds this build's isoroot-init.
pub fn dracut_with_isoroot(init: &Path, kver: &str, work: &Path, out: &Path) -> Result<()> {
    let base = work.join("dracut-base");
    run(Command::new("cp").arg("-a").arg("/usr/lib/dracut").arg(&base))?;
    run(Command::new("cp")
        .arg("-a")
        .arg(crate::root().join("dracut-module/90isoroot"))
        .arg(base.join("modules.d")))?;
    run(Command::new("dracut")
        .env("dracutbasedir", &base)
        .env("ISOROOT_INIT", init)
        .args(["--quiet", "--force", "--no-hostonly", "--no-hostonly-cmdline", "--add", "isoroot"])
        .arg(out)
        .arg(kver))
    .context("dracut --add isoroot")?;
    Ok(())
}
