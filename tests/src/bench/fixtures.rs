//! The benchmark's work: a minimal Debian 12 with systemd (debootstrap), in live-build's
//! layout with live-boot's initrd and in dracut's LiveOS layout with a dracut initrd, both
//! ISOs on one ext4 disk; and every initramfs being compared. The root and the third-party
//! initrds are cached under target/; the rest is rebuilt each run.

use crate::fixtures::{concat_initrds, iso, kernel, mkinitramfs, Mounted};
use crate::sh::run;
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const DISK_UUID: &str = "bbbbbbbb-0000-4000-8000-000000000001";
pub const LIVE_ISO: &str = "/isos/debian-bench.iso";
pub const LIVEOS_ISO: &str = "/isos/liveos-bench.iso";
pub const LIVEOS_LABEL: &str = "BENCH-LIVEOS";
/// The same root in archiso's layout, for archiso's own `img_dev=`/`img_loop=`.
pub const ARCH_ISO: &str = "/isos/arch-bench.iso";
const MIRROR: &str = "http://deb.debian.org/debian";
/// On top of minbase: systemd as init, and udev, without which systemd waits 90 s for the
/// serial console's device.
const PACKAGES: &str = "systemd-sysv,udev";

pub struct BenchFixtures {
    pub dir: PathBuf,
    pub kernel: PathBuf,
    pub kver: String,
    pub disk: PathBuf,
    /// `isoroot extents` words for LIVE_ISO.
    pub hints: String,
    /// The root image's size: how much the read rows read.
    pub root_bytes: u64,
    pub isoroot: PathBuf,
    /// `--network`: NIC drivers and nbd.
    pub isoroot_net: PathBuf,
    /// The network boots' server folder: LIVE_ISO under it, at the same path as on the disk.
    pub www: PathBuf,
    pub addon: PathBuf,
    pub combined: PathBuf,
    pub liveboot: PathBuf,
    pub dracut: PathBuf,
    /// Arch's mkinitcpio initrd with archiso's hooks, where its sources are
    /// ([`crate::distros::third_party_sources`]).
    pub archiso: Option<PathBuf>,
}

/// systemd-analyze on the console once the boot has finished, then power off: for the boot
/// with the root's own systemd (`bench.analyze` on the command line).
const ANALYZE_UNIT: &str = "[Unit]
Description=Print systemd-analyze for the isoroot benchmark, then power off
ConditionKernelCommandLine=bench.analyze

[Service]
Type=simple
ExecStart=/bin/sh -c 'until systemd-analyze time > /dev/ttyS0 2>&1; do sleep 1; done; systemctl poweroff'

[Install]
WantedBy=multi-user.target
";

/// The root image: debootstrap's minbase with systemd, the benchmark's static init at
/// /bench-init, squashfs (zstd). Built once for each version of what isoroot adds to it.
fn root_image(dir: &Path) -> Result<PathBuf> {
    use std::hash::{Hash, Hasher};
    let source = crate::root().join("tests/fixtures/bench-init.c");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (fs::read(&source)?, ANALYZE_UNIT, PACKAGES).hash(&mut h);
    let image = dir.join(format!("root-{:016x}.squashfs", h.finish()));
    if image.exists() {
        return Ok(image);
    }
    let root = dir.join("root");
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    let mirror = std::env::var("ISOROOT_BENCH_MIRROR").unwrap_or_else(|_| MIRROR.into());
    eprintln!("bench: debootstrap of Debian 12 (minbase, {PACKAGES}) from {mirror}");
    run(Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={PACKAGES}"), "bookworm"])
        .arg(&root)
        .arg(&mirror))
    .context("debootstrap (package debootstrap) needs to reach a Debian mirror; set ISOROOT_BENCH_MIRROR")?;
    run(Command::new("gcc").args(["-static", "-O2", "-o"]).arg(root.join("bench-init")).arg(&source))?;
    let units = root.join("etc/systemd/system");
    fs::write(units.join("isoroot-analyze.service"), ANALYZE_UNIT)?;
    fs::create_dir_all(units.join("multi-user.target.wants"))?;
    std::os::unix::fs::symlink(
        "../isoroot-analyze.service",
        units.join("multi-user.target.wants/isoroot-analyze.service"),
    )?;
    let tmp = image.with_extension("tmp");
    run(Command::new("mksquashfs").arg(&root).arg(&tmp).args([
        "-comp",
        "zstd",
        "-noappend",
        "-quiet",
        "-no-progress",
    ]))?;
    fs::rename(&tmp, &image)?;
    fs::remove_dir_all(&root)?;
    Ok(image)
}

/// An ISO holding `files` (path in the ISO, file on the host).
fn make_iso(work: &Path, name: &str, label: &str, files: &[(&str, &Path)]) -> Result<PathBuf> {
    let tree = work.join(format!("tree-{name}"));
    if tree.exists() {
        fs::remove_dir_all(&tree)?;
    }
    for (dest, src) in files {
        let target = tree.join(dest);
        fs::create_dir_all(target.parent().unwrap())?;
        // A hard link where the filesystem allows it: the root image is large.
        if fs::hard_link(src, &target).is_err() {
            fs::copy(src, &target)?;
        }
    }
    let out = work.join(name);
    iso(&tree, label, &out)?;
    fs::remove_dir_all(&tree)?;
    Ok(out)
}

pub fn build(isoroot: &Path, init: &Path) -> Result<BenchFixtures> {
    let dir = crate::target().join("isoroot-bench");
    fs::create_dir_all(&dir)?;
    let (kernel, kver) = kernel()?;
    let root = root_image(&dir)?;
    let initrds = crate::distros::third_party(&crate::target().join("isoroot-tests"), &kver)?;
    let initrd = |name: &str| {
        initrds.iter().find(|(n, _)| *n == name).map(|(_, p)| p.clone()).context(name.to_string())
    };
    let (liveboot, dracut) = (initrd("initramfs-tools")?, initrd("dracut")?);
    let live = make_iso(
        &dir,
        "debian-bench.iso",
        "d-live bench",
        &[("live/filesystem.squashfs", &root), ("live/vmlinuz", &kernel), ("live/initrd.img", &liveboot)],
    )?;
    let liveos = make_iso(
        &dir,
        "liveos-bench.iso",
        LIVEOS_LABEL,
        &[
            ("LiveOS/squashfs.img", &root),
            ("images/pxeboot/vmlinuz", &kernel),
            ("images/pxeboot/initrd.img", &dracut),
        ],
    )?;
    let archiso = initrd("mkinitcpio").ok();
    let mut isos = vec![(live.clone(), LIVE_ISO), (liveos.clone(), LIVEOS_ISO)];
    if archiso.is_some() {
        isos.push((
            make_iso(&dir, "arch-bench.iso", "ARCH_BENCH", &[("arch/x86_64/airootfs.sfs", &root)])?,
            ARCH_ISO,
        ));
    }
    // The ISOs copied densely onto ext4, as a user's disk would hold them.
    let disk = dir.join("disk.img");
    let mut size = 64 << 20;
    for (iso, _) in &isos {
        size += fs::metadata(iso)?.len();
    }
    fs::File::create(&disk)?.set_len(size)?;
    run(Command::new("mkfs.ext4").args(["-q", "-F", "-U", DISK_UUID, "-L", "bench"]).arg(&disk))?;
    let mnt = dir.join("mnt");
    let m = Mounted::new(&disk, &mnt)?;
    fs::create_dir_all(mnt.join("isos"))?;
    for (iso, at) in &isos {
        run(Command::new("cp").arg("--sparse=never").arg(iso).arg(mnt.join(&at[1..])))?;
    }
    run(&mut Command::new("sync"))?;
    let words = run(Command::new(isoroot).arg("extents").arg(mnt.join(&LIVE_ISO[1..])))?;
    let hints = String::from_utf8(words.stdout)?.trim().to_string();
    drop(m);
    let www = dir.join("www");
    fs::create_dir_all(www.join("isos"))?;
    fs::rename(&live, www.join(&LIVE_ISO[1..]))?;
    for (iso, _) in &isos[1..] {
        fs::remove_file(iso)?;
    }
    let mk = |out: &Path, args: &[&str]| mkinitramfs(isoroot, init, &kver, out, args);
    let standalone = mk(&dir.join("isoroot.img"), &[])?;
    let isoroot_net = mk(&dir.join("isoroot-net.img"), &["--network"])?;
    let addon = mk(&dir.join("isoroot-addon.img"), &["--no-modules"])?;
    let combined = dir.join("combined.img");
    concat_initrds(&[&liveboot, &addon], &combined)?;
    Ok(BenchFixtures {
        root_bytes: fs::metadata(&root)?.len(),
        dir,
        kernel,
        kver,
        disk,
        hints,
        isoroot: standalone,
        isoroot_net,
        www,
        addon,
        combined,
        liveboot,
        dracut,
        archiso,
    })
}
