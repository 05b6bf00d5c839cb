//! Test fixtures, made the way a user's would be: a busybox root in squashfs images, ISOs
//! by xorriso in each distro's layout, and disk images formatted by mkfs and mtools.

use crate::sh::{cmd, run};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const EXT4_UUID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
pub const EMPTY_UUID: &str = "11111111-2222-3333-4444-555555555555";
pub const HINTS_UUID: &str = "22222222-3333-4444-5555-666666666666";
pub const BAD_UUID: &str = "33333333-4444-5555-6666-777777777777";
pub const FRAG_UUID: &str = "44444444-5555-6666-7777-888888888888";
pub const EXT3_UUID: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
pub const RECOVER_UUID: &str = "55555555-6666-7777-8888-999999999999";
/// The ext4 disk that holds an ISO and a persistence image, and the image's own UUID.
pub const PERSIST_HOST_UUID: &str = "66666666-7777-8888-9999-aaaaaaaaaaaa";
pub const PERSIST_UUID: &str = "77777777-8888-9999-aaaa-bbbbbbbbbbbb";
pub const NTFS_LABEL: &str = "NTFSSTICK";
pub const NTFS_PATH: &str = "/debian live.iso";
pub const NTFS_FRAG_LABEL: &str = "NTFSFRAG";
pub const NTFS_DIRTY_LABEL: &str = "NTFSDIRTY";
pub const FRAG_FAT_LABEL: &str = "FRAGFAT";
pub const FRAG_EXFAT_LABEL: &str = "FRAGEXFAT";
pub const FAT_LABEL: &str = "ISOSTICK";
pub const EXFAT_LABEL: &str = "EXFAT STICK";
pub const EXFAT_PATH: &str = "/my isos/generic live.iso";
/// Debian and Fedora layouts beside it, for the handoff boots.
pub const EXFAT_DEBIAN: &str = "/my isos/debian live.iso";
pub const EXFAT_FEDORA: &str = "/my isos/fedora live.iso";
pub const EXFAT_UBUNTU: &str = "/my isos/ubuntu live.iso";
pub const EXFAT_ARCH: &str = "/my isos/arch live.iso";
/// The ext4 filesystem (4096-byte blocks) for a disk of 4096-byte sectors (4Kn).
pub const FOURK_UUID: &str = "12121212-3434-5656-7878-909090909090";
/// The ext4 disk with one ISO per distro layout in /isos.
pub const DISTROS_UUID: &str = "99999999-aaaa-bbbb-cccc-dddddddddddd";
/// The FAT32 stick's MBR disk identifier, so that its partition is PARTUUID=1507c0de-01.
pub const FAT_DISK_ID: &str = "0x1507c0de";

/// The module directory in the fixtures' roots.
pub const FIXTURE_KVER: &str = "6.1.0-fixture";

pub struct Fixtures {
    pub dir: PathBuf,
    pub kernel: PathBuf,
    pub kver: String,
    /// Initramfs images by name: `plain` (standalone), `rescue` (with a busybox shell), `net`
    /// (with NIC drivers and nbd), `map`
    /// and `frag-map` (with a map archive appended), and the third-party initrds
    /// `initramfs-tools`, `dracut`, `recompressed`, each with isoroot's --no-modules
    /// archive appended.
    pub initrds: BTreeMap<&'static str, PathBuf>,
    pub disks: BTreeMap<&'static str, PathBuf>,
    /// `isoroot extents` words for the ext4-hints disk and for ext3-hints (block-mapped).
    pub hints: HintWords,
    pub ext3_hints: HintWords,
    /// Words taken for /isos/stale.iso before that file was rewritten with another ISO.
    pub stale_hints: String,
    /// Every fixture ISO, for `isoroot inspect`.
    pub isos: PathBuf,
    /// The sha256 of isos/debian-live.iso (the copies on the disks are the same bytes).
    pub debian_sha256: String,
}

/// The newest Debian kernel installed (package linux-image-amd64) and its version.
pub fn kernel() -> Result<(PathBuf, String)> {
    let mut found: Vec<(String, PathBuf)> = fs::read_dir("/boot")
        .context("reading /boot")?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let kver = name.strip_prefix("vmlinuz-")?.to_string();
            Path::new("/lib/modules").join(&kver).join("modules.dep").exists().then(|| (kver, e.path()))
        })
        .collect();
    found.sort_by_key(|(kver, _)| version_key(kver));
    match found.pop() {
        Some((kver, path)) => Ok((path, kver)),
        None => bail!("no kernel with modules in /boot and /lib/modules: apt-get install linux-image-amd64"),
    }
}

fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect()
}

/// A busybox root whose /sbin/init prints the test marker. Each layer of a layered ISO
/// writes its name to /etc/fixture-top (the visible one is the top layer) and a file of its
/// own to /etc/fixture-layers/ (the list shows which layers are mounted).
pub(crate) fn root(dir: &Path, name: &str, full: bool) -> Result<()> {
    fs::create_dir_all(dir.join("etc/fixture-layers"))?;
    fs::write(dir.join("etc/fixture-top"), format!("{name}\n"))?;
    fs::write(dir.join("etc/fixture-layers").join(name), "")?;
    if !full {
        return Ok(());
    }
    for d in ["bin", "sbin", "proc", "sys", "dev", "run", "tmp", "usr/lib"] {
        fs::create_dir_all(dir.join(d))?;
    }
    // What `isoroot inspect` reads: os-release (through the usual symlink) and module trees.
    fs::write(
        dir.join("usr/lib/os-release"),
        format!("PRETTY_NAME=\"isoroot fixture {name}\"\nVERSION_ID=1\n"),
    )?;
    std::os::unix::fs::symlink("../usr/lib/os-release", dir.join("etc/os-release"))?;
    fs::create_dir_all(dir.join("lib/modules").join(FIXTURE_KVER))?;
    fs::copy("/bin/busybox", dir.join("bin/busybox"))
        .context("copying /bin/busybox (package busybox-static)")?;
    let list = cmd("/bin/busybox", ["--list"])?;
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet))?;
    }
    // A second name for the same init, for the test of init=.
    for name in ["init", "init-alt"] {
        let init = dir.join("sbin").join(name);
        fs::copy(crate::root().join("tests/fixtures/init.sh"), &init)?;
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

pub(crate) fn squashfs(src: &Path, out: &Path) -> Result<()> {
    fs::create_dir_all(out.parent().unwrap())?;
    run(Command::new("mksquashfs").arg(src).arg(out).args([
        "-noappend",
        "-quiet",
        "-all-root",
        "-no-progress",
    ]))?;
    Ok(())
}

pub(crate) fn iso(tree: &Path, label: &str, out: &Path) -> Result<()> {
    fs::create_dir_all(tree.join(".disk"))?;
    fs::write(tree.join(".disk/info"), format!("{label} (isoroot test fixture)\n"))?;
    run(Command::new("xorriso")
        .args(["-as", "mkisofs", "-quiet", "-R", "-J", "-V", label, "-o"])
        .arg(out)
        .arg(tree))?;
    Ok(())
}

/// A root image for each layer name, in `dir` of the ISO tree.
fn layers(work: &Path, tree_dir: &Path, names: &[(&str, bool)]) -> Result<()> {
    for (name, full) in names {
        let src = work.join("roots").join(name);
        root(&src, name, *full)?;
        squashfs(&src, &tree_dir.join(format!("{name}.squashfs")))?;
    }
    Ok(())
}

fn ext4(stage: &Path, uuid: &str, label: &str, out: &Path) -> Result<()> {
    ext4_options(stage, uuid, label, out, &[])
}

fn ext4_options(stage: &Path, uuid: &str, label: &str, out: &Path, options: &[&str]) -> Result<()> {
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .args(options)
        .arg("-d")
        .arg(stage)
        .args(["-U", uuid, "-L", label])
        .arg(out)
        .arg("64M"))?;
    Ok(())
}

/// An MBR-partitioned stick with one FAT32 partition, filled by mtools (no mount needed).
fn fat32(files: &[(&str, &Path)], label: &str, out: &Path) -> Result<()> {
    fs::File::create(out)?.set_len(96 << 20)?;
    let mut sfdisk = Command::new("sfdisk");
    sfdisk.arg("--quiet").arg(out).stdin(std::process::Stdio::piped());
    let mut child = sfdisk.spawn().context("starting sfdisk (package fdisk)")?;
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("label: dos\nlabel-id: {FAT_DISK_ID}\nstart=2048, type=c\n").as_bytes())?;
    if !child.wait()?.success() {
        bail!("sfdisk failed on {}", out.display());
    }
    let part = format!("{}@@1M", out.display());
    cmd("mformat", ["-i", &part, "-F", "-v", label, "::"])?;
    for (dest, src) in files {
        let dir = Path::new(dest).parent().unwrap().to_string_lossy().into_owned();
        if dir != "/" {
            // mmd fails on an existing directory; each fixture makes each directory once.
            cmd("mmd", ["-i", &part, &format!("::{dir}")])?;
        }
        run(Command::new("mcopy").args(["-i", &part]).arg(src).arg(format!("::{dest}")))?;
    }
    Ok(())
}

/// exFAT has no `-d` option and no mtools: the image is filled through FUSE on a loop
/// device (needs root), which is released whatever happens.
fn exfat_with(out: &Path, label: &str, work: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    fs::File::create(out)?.set_len(64 << 20)?;
    run(Command::new("mkfs.exfat").args(["-L", label]).arg(out))?;
    let dev = Loop::new(out, &[])?;
    let mnt = work.join("exfat-mnt");
    fs::create_dir_all(&mnt)?;
    run(Command::new("mount.exfat-fuse").arg(&dev.0).arg(&mnt))?;
    let filled = fill(&mnt);
    run(Command::new("umount").arg(&mnt))?;
    filled
}

fn exfat(files: &[(&str, &Path)], label: &str, out: &Path, work: &Path) -> Result<()> {
    exfat_with(out, label, work, |mnt| {
        for (dest, src) in files {
            let target = mnt.join(dest.trim_start_matches('/'));
            fs::create_dir_all(target.parent().unwrap())?;
            fs::copy(src, &target).with_context(|| format!("copying to {}", target.display()))?;
        }
        Ok(())
    })
}

/// A loop device over an image (`losetup` ARGS: an offset, read-only), detached when
/// dropped.
pub(crate) struct Loop(pub String);

impl Loop {
    pub(crate) fn new(img: &Path, args: &[&str]) -> Result<Loop> {
        let out = run(Command::new("losetup").args(["-f", "--show"]).args(args).arg(img))?;
        Ok(Loop(String::from_utf8(out.stdout)?.trim().to_string()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// Unmounts when dropped, so that a failed step leaves no mount behind.
pub(crate) struct Mounted(PathBuf);

impl Mounted {
    pub(crate) fn new(img: &Path, at: &Path) -> Result<Mounted> {
        fs::create_dir_all(at)?;
        run(Command::new("mount").args(["-o", "loop"]).arg(img).arg(at))?;
        Ok(Mounted(at.to_path_buf()))
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Extent hints taken by `isoroot extents` as a user would, and the same words made stale.
#[derive(Default)]
pub struct HintWords {
    /// For /isos/debian-live.iso.
    pub good: String,
    /// `good` with the fingerprint isoroot wrote first (`sha256:`, the file's first and
    /// last 64 KiB only), computed here with coreutils.
    pub ends_only: String,
    /// Taken for /isos/moved.iso before it was replaced by a copy of itself and its freed
    /// sectors were reused, except where an ends-only fingerprint looks (see [`move_away`]).
    pub moved: String,
}

/// An ext4 disk whose ISOs were copied densely (mkfs.ext4 -d would punch holes for zero
/// blocks, and holes have no sectors to map) through a loop mount, with `isoroot extents`
/// run on it as a user would. Returns the hints, the words for /isos/stale.iso taken before
/// it was rewritten in place with another ISO, and the map archive.
fn hints_disk(
    isoroot: &Path,
    debian: &Path,
    generic: &Path,
    out: &Path,
    work: &Path,
) -> Result<(HintWords, String, PathBuf)> {
    fs::File::create(out)?.set_len(64 << 20)?;
    run(Command::new("mkfs.ext4").args(["-q", "-F", "-U", HINTS_UUID, "-L", "hints"]).arg(out))?;
    let mnt = work.join("hints-mnt");
    let m = Mounted::new(out, &mnt)?;
    let isos = mnt.join("isos");
    fs::create_dir_all(&isos)?;
    for name in ["debian-live.iso", "stale.iso", "moved.iso"] {
        run(Command::new("cp").arg("--sparse=never").arg(debian).arg(isos.join(name)))?;
    }
    run(&mut Command::new("sync"))?;
    let good = extents(isoroot, &isos.join("debian-live.iso"), None)?;
    let map = work.join("map.cpio");
    extents(isoroot, &isos.join("debian-live.iso"), Some(&map))?;
    let stale = extents(isoroot, &isos.join("stale.iso"), None)?;
    // Rewritten in place, as a download tool resuming into the same file would: the
    // sectors stay, their contents change.
    run(Command::new("dd")
        .arg(format!("if={}", generic.display()))
        .arg(format!("of={}", isos.join("stale.iso").display()))
        .args(["conv=notrunc,fsync", "status=none"]))?;
    let moved = move_away(isoroot, &isos.join("moved.iso"))?;
    drop(m);
    reuse_freed(out, &moved)?;
    Ok((HintWords { ends_only: ends_only(&good, debian)?, good, moved: moved.old }, stale, map))
}

/// ext3 (no `extents` feature): its files are block-mapped, which isoroot's reader does not
/// follow, so the boot can trust hints there by their fingerprint alone. A block map puts
/// an indirect block after every 1024 data blocks, so `iso` (13 MiB) has an extent every
/// 4 MiB.
fn ext3_hints_disk(isoroot: &Path, debian: &Path, out: &Path, work: &Path) -> Result<HintWords> {
    fs::File::create(out)?.set_len(96 << 20)?;
    run(Command::new("mkfs.ext3").args(["-q", "-F", "-b", "4096", "-U", EXT3_UUID, "-L", "ext3"]).arg(out))?;
    let mnt = work.join("ext3-mnt");
    let m = Mounted::new(out, &mnt)?;
    let isos = mnt.join("isos");
    fs::create_dir_all(&isos)?;
    for name in ["debian-live.iso", "moved.iso"] {
        run(Command::new("cp").arg("--sparse=never").arg(debian).arg(isos.join(name)))?;
    }
    run(&mut Command::new("sync"))?;
    let good = extents(isoroot, &isos.join("debian-live.iso"), None)?;
    if sectors_in(&good).len() < 3 {
        bail!("the ISO on ext3 should be block-mapped, with an extent every 4 MiB: {good}");
    }
    let moved = move_away(isoroot, &isos.join("moved.iso"))?;
    drop(m);
    reuse_freed(out, &moved)?;
    Ok(HintWords { ends_only: ends_only(&good, debian)?, good, moved: moved.old })
}

/// The sha256 of a file, in hex, by coreutils.
pub(crate) fn sha256sum(path: &Path) -> Result<String> {
    let out = String::from_utf8(run(Command::new("sha256sum").arg(path))?.stdout)?;
    Ok(out.split_whitespace().next().unwrap_or_default().to_string())
}

/// `words` with `iso.fingerprint=sha256:` over the first and last 64 KiB of `iso`.
fn ends_only(words: &str, iso: &Path) -> Result<String> {
    let out = run(Command::new("sh")
        .args(["-c", "{ head -c 65536 \"$1\"; tail -c 65536 \"$1\"; } | sha256sum", "sh"])
        .arg(iso))?;
    let sum = String::from_utf8(out.stdout)?.split(' ').next().unwrap_or_default().to_string();
    if sum.len() != 64 {
        bail!("sha256sum printed no sum for {}", iso.display());
    }
    let print = format!("iso.fingerprint=sha256:{sum}");
    Ok(words
        .split(' ')
        .map(|w| if w.starts_with("iso.fingerprint=") { &print } else { w })
        .collect::<Vec<_>>()
        .join(" "))
}

/// `isoroot extents [--cpio OUT] FILE`: its words (or the map's `iso.map=` word).
fn extents(isoroot: &Path, file: &Path, cpio: Option<&Path>) -> Result<String> {
    let mut c = Command::new(isoroot);
    c.arg("extents");
    if let Some(cpio) = cpio {
        c.arg("--cpio").arg(cpio);
    }
    Ok(String::from_utf8(run(c.arg(file))?.stdout)?.trim().to_string())
}

/// The words for a file before and after [`move_away`].
struct Moved {
    old: String,
    new: String,
}

/// Replaces `file` by a copy of itself, as a user tidying a stick or a defragmenter does:
/// the copy gets other sectors, the old ones are freed but keep their bytes.
fn move_away(isoroot: &Path, file: &Path) -> Result<Moved> {
    let old = extents(isoroot, file, None)?;
    let copy = file.with_extension("new");
    run(Command::new("cp").arg("--sparse=never").arg(file).arg(&copy))?;
    fs::rename(&copy, file)?;
    run(&mut Command::new("sync"))?;
    Ok(Moved { old, new: extents(isoroot, file, None)? })
}

/// The (start, sectors) pairs of `iso.extents=` in words.
fn sectors_in(words: &str) -> Vec<(u64, u64)> {
    let list = words.split(' ').find_map(|w| w.strip_prefix("iso.extents=")).unwrap_or_default();
    list.split(',')
        .filter_map(|e| e.split_once('+'))
        .filter_map(|(s, n)| Some((s.parse().ok()?, n.parse().ok()?)))
        .collect()
}

/// With `img` unmounted, writes another file's bytes over the sectors a [`move_away`]
/// freed, as a file written later into the free space would, but leaves the old copy's
/// first and last 64 KiB as they were: an ends-only fingerprint of the old hints still
/// matches, and what they map is no longer the ISO. Checks first that the new copy holds
/// none of those sectors.
fn reuse_freed(img: &Path, moved: &Moved) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let (old, new) = (sectors_in(&moved.old), sectors_in(&moved.new));
    let overlap = old.iter().any(|&(s, n)| new.iter().any(|&(t, m)| s < t + m && t < s + n));
    if old.is_empty() || overlap {
        bail!("the copy of a moved file shares sectors with the old one:\n{}\n{}", moved.old, moved.new);
    }
    let len: u64 = old.iter().map(|(_, n)| n * 512).sum();
    let keep = 64 * 1024;
    let disk = fs::OpenOptions::new().write(true).open(img)?;
    let (mut at, filler) = (0u64, vec![0x6bu8; 1 << 20]);
    for (start, sectors) in old {
        // The part of this extent that lies in [keep, len - keep) of the file.
        let (from, to) = (at.max(keep), (at + sectors * 512).min(len - keep));
        let mut pos = from;
        while pos < to {
            let n = (to - pos).min(filler.len() as u64);
            disk.write_at(&filler[..n as usize], start * 512 + (pos - at))?;
            pos += n;
        }
        at += sectors * 512;
    }
    disk.sync_all()?;
    Ok(())
}

/// Fills `dir` with small files, then deletes every other one: the free space left is all
/// small holes, so a file written next is fragmented whatever the allocator prefers.
fn punch_holes(dir: &Path, count: usize, size: usize) -> Result<()> {
    fs::create_dir_all(dir)?;
    let data = vec![0xa5u8; size];
    let mut written = Vec::new();
    for i in 0..count {
        // Directories of 500 keep FUSE and FAT directory scans short.
        let sub = dir.join(format!("d{}", i / 500));
        fs::create_dir_all(&sub)?;
        let f = sub.join(format!("f{i}"));
        match fs::write(&f, &data) {
            Ok(()) => written.push(f),
            Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC: full
            Err(e) => return Err(e).with_context(|| format!("writing {}", f.display())),
        }
    }
    for f in written.iter().skip(1).step_by(2) {
        fs::remove_file(f)?;
    }
    Ok(())
}

/// How many extents words or a map hold.
fn extent_count(text: &str) -> usize {
    text.lines()
        .flat_map(|l| l.split(' '))
        .find_map(|w| w.strip_prefix("iso.extents="))
        .map_or(0, |v| v.split(',').count())
}

/// `isoroot extents --device` (isoroot's own reader, no mount) into a map archive; the map,
/// checked to be as fragmented as the test needs.
fn device_map(isoroot: &Path, img: &Path, cpio: &Path, min: usize) -> Result<String> {
    let mut c = Command::new(isoroot);
    c.args(["extents", "--cpio"]).arg(cpio).arg("--device").arg(img).arg("/isos/debian-live.iso");
    run(&mut c)?;
    let map = map_in(cpio)?;
    let n = extent_count(&map);
    if n < min {
        bail!("the ISO on {} has {n} runs, the test needs at least {min}", img.display());
    }
    Ok(map)
}

/// The map inside an archive `isoroot extents --cpio` wrote (newc, one file).
fn map_in(cpio: &Path) -> Result<String> {
    let bytes = fs::read(cpio)?;
    let text = String::from_utf8_lossy(&bytes);
    let start = text.find("iso=").context("no iso= in the map archive")?;
    Ok(text[start..].split('\0').next().unwrap_or_default().to_string())
}

/// ext4 with a 200+-extent ISO. Both ways of taking its extents (FIEMAP on the mounted
/// file, and isoroot's own reader on the device) must give the same map.
fn ext4_fragmented(isoroot: &Path, iso_file: &Path, out: &Path, work: &Path) -> Result<PathBuf> {
    fs::File::create(out)?.set_len(64 << 20)?;
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-N", "20000", "-U", FRAG_UUID, "-L", "frag"])
        .arg(out))?;
    let mnt = work.join("frag-mnt");
    let m = Mounted::new(out, &mnt)?;
    punch_holes(&mnt.join("fill"), 20000, 4096)?;
    fs::create_dir_all(mnt.join("isos"))?;
    let iso = mnt.join("isos/debian-live.iso");
    run(Command::new("cp").arg("--sparse=never").arg(iso_file).arg(&iso))?;
    run(&mut Command::new("sync"))?;
    // Too many for the command line: the words are refused, the map archive is the way.
    let refused = Command::new(isoroot).arg("extents").arg(&iso).output()?;
    let said = String::from_utf8_lossy(&refused.stderr);
    if refused.status.success() || !said.contains("--cpio") {
        bail!("isoroot extents should refuse a 200+-extent command line, said: {said}");
    }
    let fiemap = work.join("frag-fiemap.cpio");
    let mut c = Command::new(isoroot);
    c.arg("extents").arg("--cpio").arg(&fiemap).arg(&iso);
    run(&mut c)?;
    drop(m);
    let scanned = device_map(isoroot, out, &work.join("frag-scan.cpio"), 200)?;
    let by_fiemap = map_in(&fiemap)?;
    if by_fiemap != scanned {
        bail!("FIEMAP and isoroot's ext4 reader disagree:\n{by_fiemap}\n{scanned}");
    }
    Ok(fiemap)
}

/// FAT32 filled by mtools (first-fit allocation) with every other small file deleted.
fn fat32_fragmented(isoroot: &Path, iso_file: &Path, out: &Path, work: &Path) -> Result<()> {
    fs::File::create(out)?.set_len(128 << 20)?;
    let img = out.to_string_lossy().into_owned();
    cmd("mformat", ["-i", &img, "-F", "-c", "2", "-v", FRAG_FAT_LABEL, "::"])?;
    let fill = work.join("fatfill");
    fs::create_dir_all(&fill)?;
    let names: Vec<String> = (0..1000).map(|i| format!("f{i:04}")).collect();
    for n in &names {
        fs::write(fill.join(n), vec![0xa5u8; 4096])?;
    }
    run(Command::new("mcopy").args(["-i", &img, "-s"]).arg(&fill).arg("::/fill"))?;
    let odd: Vec<String> = names.iter().skip(1).step_by(2).map(|n| format!("::/fill/{n}")).collect();
    run(Command::new("mdel").args(["-i", &img]).args(&odd))?;
    // mtools allocates from FSInfo's next-free hint, which points past the filler: make it
    // "unknown" so that allocation starts from the first (now punched) clusters.
    let f = fs::OpenOptions::new().read(true).write(true).open(out)?;
    use std::os::unix::fs::FileExt;
    let mut bs = [0u8; 512];
    f.read_exact_at(&mut bs, 0)?;
    let fsinfo = u64::from(u16::from_le_bytes([bs[0x30], bs[0x31]]));
    f.write_all_at(&u32::MAX.to_le_bytes(), fsinfo * 512 + 0x1EC)?;
    drop(f);
    cmd("mmd", ["-i", &img, "::/isos"])?;
    run(Command::new("mcopy").args(["-i", &img]).arg(iso_file).arg("::/isos/debian-live.iso"))?;
    device_map(isoroot, out, &work.join("fat.cpio"), 100).map(drop)
}

/// exFAT through FUSE, filled and punched the same way.
fn exfat_fragmented(isoroot: &Path, iso_file: &Path, out: &Path, work: &Path) -> Result<()> {
    exfat_with(out, FRAG_EXFAT_LABEL, work, |mnt| {
        punch_holes(&mnt.join("fill"), 2000, 4096)?;
        fs::create_dir_all(mnt.join("isos"))?;
        fs::copy(iso_file, mnt.join("isos/debian-live.iso"))?;
        Ok(())
    })?;
    device_map(isoroot, out, &work.join("exfat.cpio"), 100).map(drop)
}

/// An ext4 disk with the ISO and a dense 24 MiB ext4 persistence image (no journal, so that
/// a plain `sync` before power-off leaves it consistent for `e2fsck -n`).
fn persist_disk(iso_file: &Path, out: &Path, work: &Path) -> Result<()> {
    fs::File::create(out)?.set_len(64 << 20)?;
    run(Command::new("mkfs.ext4").args(["-q", "-F", "-U", PERSIST_HOST_UUID, "-L", "persisthost"]).arg(out))?;
    let mnt = work.join("persist-mnt");
    let _m = Mounted::new(out, &mnt)?;
    fs::create_dir_all(mnt.join("isos"))?;
    run(Command::new("cp").arg("--sparse=never").arg(iso_file).arg(mnt.join("isos/debian-live.iso")))?;
    // mkfs.ext4 punches holes into a file it formats: format a scratch copy, then copy it
    // densely, as the README tells users to.
    let scratch = work.join("persist-scratch.img");
    fs::File::create(&scratch)?.set_len(24 << 20)?;
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-O", "^has_journal", "-U", PERSIST_UUID, "-L", "persist"])
        .arg(&scratch))?;
    run(Command::new("cp").arg("--sparse=never").arg(&scratch).arg(mnt.join("persist.img")))?;
    // The same image with its superblock wiped: what a pulled stick can leave behind.
    let mut corrupt = fs::read(&scratch)?;
    corrupt[1024..2048].fill(0);
    fs::write(mnt.join("corrupt.img"), corrupt)?;
    run(&mut Command::new("sync"))?;
    Ok(())
}

/// An NTFS image made by mkntfs and filled by ntfscp, as a stick prepared on Windows would
/// be, without a driver.
fn ntfs(label: &str, files: &[(&str, &Path)], out: &Path) -> Result<()> {
    fs::File::create(out)?.set_len(64 << 20)?;
    run(Command::new("mkntfs").args(["-q", "-F", "-Q", "-L", label]).arg(out))?;
    for (dest, src) in files {
        run(Command::new("ntfscp").arg("-f").arg(out).arg(src).arg(dest))?;
    }
    Ok(())
}

/// NTFS through ntfs-3g, filled to the last cluster and punched, so that ntfs-3g, which
/// otherwise finds a contiguous run, has to fragment the ISO.
fn ntfs_fragmented(isoroot: &Path, iso_file: &Path, out: &Path, work: &Path) -> Result<()> {
    fs::File::create(out)?.set_len(32 << 20)?;
    run(Command::new("mkntfs").args(["-q", "-F", "-Q", "-L", NTFS_FRAG_LABEL]).arg(out))?;
    let mnt = work.join("ntfs-mnt");
    fs::create_dir_all(&mnt)?;
    run(Command::new("ntfs-3g").arg(out).arg(&mnt))?;
    let filled = (|| -> Result<()> {
        punch_holes(&mnt.join("fill"), 20000, 4096)?;
        fs::create_dir_all(mnt.join("isos"))?;
        fs::copy(iso_file, mnt.join("isos/debian-live.iso"))?;
        Ok(())
    })();
    run(Command::new("umount").arg(&mnt))?;
    filled?;
    device_map(isoroot, out, &work.join("ntfs.cpio"), 20).map(drop)
}

/// Sets the dirty flag in $Volume's $VOLUME_INFORMATION, as an unclean Windows shutdown
/// leaves it. The flag is not near a sector's end, so the record's fixups stay valid.
fn mark_ntfs_dirty(img: &Path) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().read(true).write(true).open(img)?;
    let mut bs = [0u8; 512];
    f.read_exact_at(&mut bs, 0)?;
    let cluster = u64::from(u16::from_le_bytes([bs[0x0B], bs[0x0C]])) * u64::from(bs[0x0D]);
    let record = match bs[0x40] as i8 {
        v if v < 0 => 1u64 << -i32::from(v),
        v => v as u64 * cluster,
    };
    let at = u64::from_le_bytes(bs[0x30..0x38].try_into()?) * cluster + 3 * record;
    let mut rec = vec![0u8; record as usize];
    f.read_exact_at(&mut rec, at)?;
    let mut a = usize::from(u16::from_le_bytes([rec[0x14], rec[0x15]]));
    while a + 24 < rec.len() {
        let kind = u32::from_le_bytes(rec[a..a + 4].try_into()?);
        let len = u32::from_le_bytes(rec[a + 4..a + 8].try_into()?) as usize;
        if kind == 0xFFFF_FFFF || len == 0 {
            break;
        }
        if kind == 0x70 {
            let flags = a + usize::from(u16::from_le_bytes([rec[a + 0x14], rec[a + 0x15]])) + 0x0A;
            rec[flags] |= 1;
            f.write_all_at(&rec, at)?;
            return Ok(());
        }
        a += len;
    }
    bail!("no $VOLUME_INFORMATION in {}", img.display())
}

/// `isoroot mkinitramfs` for the test kernel, as a user runs it.
pub(crate) fn mkinitramfs(
    isoroot: &Path,
    init: &Path,
    kver: &str,
    out: &Path,
    args: &[&str],
) -> Result<PathBuf> {
    run(Command::new(isoroot)
        .args(["mkinitramfs", "-k", kver, "--init"])
        .arg(init)
        .arg("-o")
        .arg(out)
        .args(args))?;
    Ok(out.to_path_buf())
}

/// Concatenates archives the way GRUB loads several initrds: each padded to 4 bytes.
pub(crate) fn concat_initrds(parts: &[&Path], out: &Path) -> Result<()> {
    let mut all = Vec::new();
    for p in parts {
        all.extend(fs::read(p)?);
        all.resize(all.len().next_multiple_of(4), 0);
    }
    fs::write(out, all)?;
    Ok(())
}

/// The fixtures' folder, and a work folder in it made afresh.
fn folders() -> Result<(PathBuf, PathBuf)> {
    let dir = crate::target().join("isoroot-tests");
    let work = dir.join("work");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    fs::create_dir_all(work.join("isos"))?;
    Ok((dir, work))
}

/// debian-live.iso in live-build's layout, with the loopback.cfg live-build writes; returns
/// its tree (other ISOs are made from it) and the ISO.
fn debian_live(work: &Path) -> Result<(PathBuf, PathBuf)> {
    let tree = work.join("tree-debian");
    layers(work, &tree.join("live"), &[("debian", true)])?;
    // live-build's names: one filesystem.squashfs, the kernel and initrd beside it.
    fs::rename(tree.join("live/debian.squashfs"), tree.join("live/filesystem.squashfs"))?;
    fs::write(tree.join("live/vmlinuz"), "not a kernel")?;
    fs::write(tree.join("live/initrd.img"), "not an initrd")?;
    // The ISO's own GRUB menu for loopback boots, as live-build writes one.
    fs::create_dir_all(tree.join("boot/grub"))?;
    fs::write(
        tree.join("boot/grub/loopback.cfg"),
        "menuentry \"Live system\" {\n    linux /live/vmlinuz boot=live components findiso=${iso_path}\n    initrd /live/initrd.img\n}\n",
    )?;
    let debian = work.join("isos/debian-live.iso");
    iso(&tree, "d-live 12.8.0 st amd64", &debian)?;
    Ok((tree, debian))
}

/// The ext4 disk that holds /isos/debian-live.iso and /isos/notiso.iso (made here too: 1 MiB
/// that is no ISO).
fn ext4_debian(work: &Path, dir: &Path, debian: &Path) -> Result<PathBuf> {
    let notiso = work.join("isos/notiso.iso");
    fs::write(&notiso, vec![0x5a; 1 << 20])?;
    let stage = work.join("stage-ext4");
    fs::create_dir_all(stage.join("isos"))?;
    fs::copy(debian, stage.join("isos/debian-live.iso"))?;
    fs::copy(&notiso, stage.join("isos/notiso.iso"))?;
    let img = dir.join("ext4-debian.img");
    ext4(&stage, EXT4_UUID, "isodisk", &img)?;
    Ok(img)
}

/// What `cargo xtask demo` boots, and nothing else: debian-live.iso on the ext4 disk, and
/// the standalone initramfs. The other fixtures' fields are empty.
pub fn demo(isoroot: &Path, init: &Path) -> Result<Fixtures> {
    let (dir, work) = folders()?;
    let (_, debian) = debian_live(&work)?;
    let disk = ext4_debian(&work, &dir, &debian)?;
    let (kernel, kver) = kernel()?;
    let plain = mkinitramfs(isoroot, init, &kver, &dir.join("initrd.img"), &[])?;
    let debian_sha256 = sha256sum(&debian)?;
    let isos = dir.join("isos");
    if isos.exists() {
        fs::remove_dir_all(&isos)?;
    }
    fs::rename(work.join("isos"), &isos)?;
    fs::remove_dir_all(&work)?;
    Ok(Fixtures {
        isos,
        dir,
        kernel,
        kver,
        initrds: BTreeMap::from([("plain", plain)]),
        disks: BTreeMap::from([("ext4-debian", disk)]),
        hints: HintWords::default(),
        ext3_hints: HintWords::default(),
        stale_hints: String::new(),
        debian_sha256,
    })
}

pub fn build(isoroot: &Path, init: &Path) -> Result<Fixtures> {
    let (dir, work) = folders()?;
    let isos = work.join("isos");
    let (tree, debian) = debian_live(&work)?;
    let debian_sha256 = sha256sum(&debian)?;
    // The same without Rock Ridge: Joliet names only, and plain ISO 9660 names only.
    for (file, joliet) in [("debian-joliet.iso", "on"), ("debian-plain.iso", "off")] {
        run(Command::new("xorriso")
            .args(["-report_about", "SORRY", "-outdev"])
            .arg(isos.join(file))
            .args(["-rockridge", "off", "-joliet", joliet, "-volid", "D_LIVE_PLAIN", "-map"])
            .arg(&tree)
            .arg("/"))?;
    }
    // 13 MiB: a block-mapped copy of it has extents away from its first and last 64 KiB.
    fs::write(tree.join("live/padding"), vec![0x33u8; 12 << 20])?;
    let debian_big = work.join("debian-live-big.iso");
    iso(&tree, "d-live 12.8.0 st amd64", &debian_big)?;

    // Ubuntu ≥ 23.10: a chain of layers beside language and secure-boot layers that must
    // not be mounted.
    let tree = work.join("tree-ubuntu");
    layers(
        &work,
        &tree.join("casper"),
        &[
            ("minimal", true),
            ("minimal.standard", false),
            ("minimal.standard.live", false),
            ("minimal.en", false),
            ("minimal.standard.en", false),
            ("minimal.enhanced-secureboot", false),
        ],
    )?;
    let ubuntu = isos.join("ubuntu.iso");
    iso(&tree, "Ubuntu 24.04.1 LTS amd64", &ubuntu)?;

    // Anything else: one squashfs at a well-known path.
    let tree = work.join("tree-generic");
    layers(&work, &tree.join("images"), &[("rootfs", true)])?;
    let generic = isos.join("generic.iso");
    iso(&tree, "GENERIC", &generic)?;

    // Broken media: a root image cut short (its superblock promises more than is there),
    // an ISO with no layout any profile knows, and cut and empty copies.
    let tree = work.join("tree-corrupt");
    let good = work.join("corrupt-src.squashfs");
    squashfs(&work.join("roots/debian"), &good)?;
    fs::create_dir_all(tree.join("live"))?;
    fs::write(tree.join("live/filesystem.squashfs"), &fs::read(&good)?[..8192])?;
    let corrupt = isos.join("corrupt-root.iso");
    iso(&tree, "CORRUPT", &corrupt)?;
    let tree = work.join("tree-unknown");
    fs::create_dir_all(tree.join("boot"))?;
    fs::write(tree.join("boot/readme.txt"), "no root image here\n")?;
    let unknown = isos.join("unknown.iso");
    iso(&tree, "UNKNOWN", &unknown)?;
    let bad_stage = work.join("stage-bad");
    fs::create_dir_all(bad_stage.join("isos/adir.iso"))?;
    fs::copy(&corrupt, bad_stage.join("isos/corrupt-root.iso"))?;
    fs::copy(&unknown, bad_stage.join("isos/unknown.iso"))?;
    fs::write(bad_stage.join("isos/truncated.iso"), &fs::read(&debian)?[..1 << 20])?;
    fs::write(bad_stage.join("isos/empty.iso"), b"")?;
    std::os::unix::fs::symlink("loop2", bad_stage.join("isos/loop1"))?;
    std::os::unix::fs::symlink("loop1", bad_stage.join("isos/loop2"))?;

    let mut disks = BTreeMap::new();
    disks.insert("ext4-debian", ext4_debian(&work, &dir, &debian)?);

    let stage = work.join("stage-empty");
    fs::create_dir_all(stage.join("other"))?;
    fs::write(stage.join("other/readme.txt"), "no ISO here\n")?;
    // The same label on a second filesystem (another UUID), as two sticks of one make.
    let img = dir.join("ext4-twin.img");
    fs::copy(dir.join("ext4-debian.img"), &img)?;
    run(Command::new("tune2fs").args(["-U", "88888888-9999-aaaa-bbbb-cccccccccccc"]).arg(&img))?;
    disks.insert("ext4-twin", img);

    // A 4Kn disk: 4096-byte blocks, and the ISO grown to an odd number of 2048-byte blocks
    // whose last is data (zeros would be a hole), so that the file's last block is half used
    // (ISO readers ignore what follows the volume).
    let stage = work.join("stage-4kn");
    fs::create_dir_all(stage.join("isos"))?;
    let mut iso = fs::read(&debian)?;
    let tail = if (iso.len() / 2048) % 2 == 0 { 2048 } else { 4096 };
    iso.resize(iso.len() + tail, 0x5a);
    fs::write(stage.join("isos/debian-live.iso"), iso)?;
    let img = dir.join("ext4-4kn.img");
    ext4_options(&stage, FOURK_UUID, "fourk", &img, &["-b", "4096"])?;
    disks.insert("ext4-4kn", img);

    let stage = work.join("stage-empty");
    let img = dir.join("ext4-empty.img");
    ext4(&stage, EMPTY_UUID, "empty", &img)?;
    disks.insert("ext4-empty", img);

    let img = dir.join("ext4-bad.img");
    ext4(&bad_stage, BAD_UUID, "broken", &img)?;
    disks.insert("ext4-bad", img);

    let img = dir.join("ext4-hints.img");
    let (hints, stale_hints, map) = hints_disk(isoroot, &debian, &generic, &img, &work)?;
    disks.insert("ext4-hints", img);

    let img = dir.join("ext3-hints.img");
    let ext3_hints = ext3_hints_disk(isoroot, &debian_big, &img, &work)?;
    disks.insert("ext3-hints", img);

    let img = dir.join("ext4-frag.img");
    let frag_map = ext4_fragmented(isoroot, &debian, &img, &work)?;
    disks.insert("ext4-frag", img);

    let img = dir.join("fat32-frag.img");
    fat32_fragmented(isoroot, &debian, &img, &work)?;
    disks.insert("fat32-frag", img);

    let img = dir.join("exfat-frag.img");
    exfat_fragmented(isoroot, &debian, &img, &work)?;
    disks.insert("exfat-frag", img);

    let img = dir.join("ext4-persist.img");
    persist_disk(&debian, &img, &work)?;
    disks.insert("ext4-persist", img);

    let img = dir.join("ntfs.img");
    ntfs(NTFS_LABEL, &[(NTFS_PATH, &debian)], &img)?;
    disks.insert("ntfs", img);

    let img = dir.join("ntfs-frag.img");
    ntfs_fragmented(isoroot, &debian, &img, &work)?;
    disks.insert("ntfs-frag", img);

    let img = dir.join("ntfs-dirty.img");
    ntfs(NTFS_DIRTY_LABEL, &[("/debian-live.iso", &debian)], &img)?;
    mark_ntfs_dirty(&img)?;
    disks.insert("ntfs-dirty", img);

    // ext4 whose journal says it needs recovery, as after a crash: isoroot's reader refuses
    // it, the loop path mounts it read-only without replaying the journal.
    let img = dir.join("ext4-recover.img");
    fs::copy(dir.join("ext4-debian.img"), &img)?;
    run(Command::new("tune2fs").args(["-U", RECOVER_UUID]).arg(&img))?;
    run(Command::new("debugfs").args(["-w", "-R", "feature needs_recovery"]).arg(&img))?;
    disks.insert("ext4-recover", img);

    let img = dir.join("fat32-ubuntu.img");
    fat32(&[("/isos/ubuntu.iso", &ubuntu)], FAT_LABEL, &img)?;
    disks.insert("fat32-ubuntu", img);

    let distro_isos = crate::distros::build(&work, &isos)?;
    let distro = |name: &str| &distro_isos.iter().find(|(n, _)| *n == name).expect("built").1;
    let img = dir.join("exfat-generic.img");
    exfat(
        &[
            (EXFAT_PATH, &generic),
            (EXFAT_DEBIAN, &debian),
            (EXFAT_FEDORA, distro("fedora.iso")),
            (EXFAT_UBUNTU, &ubuntu),
            (EXFAT_ARCH, distro("archlinux.iso")),
        ],
        EXFAT_LABEL,
        &img,
        &work,
    )?;
    disks.insert("exfat-generic", img);

    let stage = work.join("stage-distros");
    fs::create_dir_all(stage.join("isos"))?;
    for (name, path) in &distro_isos {
        fs::copy(path, stage.join("isos").join(name))?;
    }
    let img = dir.join("ext4-distros.img");
    ext4(&stage, DISTROS_UUID, "distros", &img)?;
    disks.insert("ext4-distros", img);

    let (kernel, kver) = kernel()?;
    let mk = |out: &Path, args: &[&str]| mkinitramfs(isoroot, init, &kver, out, args);
    let plain = mk(&dir.join("initrd.img"), &[])?;
    let mut initrds = BTreeMap::new();
    initrds.insert("rescue", mk(&dir.join("initrd-rescue.img"), &["--rescue-shell", "/bin/busybox"])?);
    initrds.insert("net", mk(&dir.join("initrd-net.img"), &["--network"])?);
    let appended = |name: &str, parts: &[&Path]| -> Result<PathBuf> {
        let out = dir.join(format!("initrd-{name}.img"));
        concat_initrds(parts, &out)?;
        Ok(out)
    };
    initrds.insert("map", appended("map", &[&plain, &map])?);
    initrds.insert("frag-map", appended("frag-map", &[&plain, &frag_map])?);
    let no_modules = mk(&work.join("isoroot-no-modules.img"), &["--no-modules"])?;
    for (name, distro) in crate::distros::third_party(&dir, &kver)? {
        initrds.insert(name, appended(name, &[&distro, &no_modules])?);
    }
    disks.extend(crate::bootloaders::build(isoroot, init, &kernel, &plain, &work, &dir)?);
    disks.extend(crate::sticks::build(
        isoroot,
        init,
        &kver,
        &work.join(crate::bootloaders::BOOT_ISOS),
        &work,
        &dir,
    )?);
    // A real, signed kernel (Debian's) for inspect's signature report.
    fs::copy(
        work.join(crate::bootloaders::BOOT_ISOS).join("debian live.iso"),
        isos.join("debian-signed.iso"),
    )?;
    let dracut = dir.join("initrd-dracut-isoroot.img");
    crate::distros::dracut_with_isoroot(init, &kver, &work, &dracut)?;
    initrds.insert("dracut-isoroot", dracut);
    initrds.insert("plain", plain);
    let kept = dir.join("isos");
    if kept.exists() {
        fs::remove_dir_all(&kept)?;
    }
    fs::rename(&isos, &kept)?;
    fs::remove_dir_all(&work)?;
    Ok(Fixtures {
        dir,
        kernel,
        kver,
        initrds,
        disks,
        hints,
        ext3_hints,
        stale_hints,
        isos: kept,
        debian_sha256,
    })
}
