//! `isoroot install TARGET`: makes a whole disk or a disk image into a multiboot stick.
//! GPT with a protective MBR; a BIOS boot partition for GRUB's i386-pc core; an ESP (FAT32)
//! with GRUB for UEFI and BIOS, isoroot's addon, a standalone isoroot initramfs and its
//! kernel; a data partition over the rest, where the user copies ISOs and GRUB finds them
//! at every boot ([`crate::bootmenu`]). Partitions are addressed by offset (a loop device
//! with an offset for `mkfs`), so it works where no partition device nodes appear (image
//! files, containers). Without `--yes` it only prints the plan.

use crate::bootmenu::{self, BootMenu, ADDON, ESP_DIR, HOST_INITRD, HOST_KERNEL};
use crate::extents::unescape;
use crate::initramfs::{self, Compress};
use crate::inspect;
use anyhow::{anyhow, bail, ensure, Context, Result};
use isoroot_fs::parttable::{self, kind, Partition};
use isoroot_fs::superblock::{self, FsKind};
use isoroot_fs::{human_size, Window};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const MIB: u64 = 1 << 20;
const BIOS_BOOT_AT: u64 = MIB;
const BIOS_BOOT_SIZE: u64 = MIB;
const ESP_AT: u64 = 2 * MIB;
/// Room for GRUB's modules for both platforms (6 MB), a kernel, isoroot's images and a
/// kernel twice that size after `--update`.
const ESP_SIZE: u64 = 128 * MIB;
const MIN_DATA: u64 = 64 * MIB;
/// The backup GPT at the end of the disk.
const GPT_TAIL: u64 = MIB;
const ESP_LABEL: &str = "ISOROOTEFI";
/// What `install` records on the ESP, for `--update` and for people.
const RECORD: &str = "/isoroot/install.txt";
const GRUB_BIOS: &str = "/usr/lib/grub/i386-pc";
const GRUB_EFI: &str = "/usr/lib/grub/x86_64-efi";
/// For `--secure-boot`, where Debian's packages put them (shim-signed,
/// shim-helpers-amd64-signed, grub-efi-amd64-signed), and where each goes on the ESP: shim
/// as the removable-media loader, which loads GRUB and MokManager from its own folder. No
/// fbx64.efi: shim would run it instead and write boot entries into the PC's NVRAM.
const SIGNED: [(&str, &str); 3] = [
    ("usr/lib/shim/shimx64.efi.signed", "EFI/BOOT/BOOTX64.EFI"),
    ("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", "EFI/BOOT/grubx64.efi"),
    ("usr/lib/shim/mmx64.efi.signed", "EFI/BOOT/mmx64.efi"),
];
/// The signed GRUB reads `$prefix/grub.cfg` with its prefix built in as `/EFI/debian` on the
/// partition it started from; without that folder it would search every disk for a Debian
/// medium instead.
const SIGNED_GRUB_CFG: &str = "EFI/debian/grub.cfg";
/// GRUB's boot.img: where it keeps the sector of core.img, and the jump that, when it is
/// made a no-op, makes it use drive 0x80 when the BIOS passes a floppy's number (USB
/// sticks on some BIOSes); grub-bios-setup does the same.
const BOOT_KERNEL_SECTOR: usize = 0x5c;
const BOOT_DRIVE_CHECK: usize = 0x66;
/// The first sector of core.img (diskboot.img) ends with the blocklist of the rest.
const CORE_BLOCKLIST_START: usize = 0x1f4;
/// boot.img's code: the MBR up to the disk signature and partition table.
const MBR_CODE: usize = 440;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DataFs {
    Exfat,
    Ext4,
    Ntfs,
    Fat32,
}

impl DataFs {
    fn name(self) -> &'static str {
        match self {
            DataFs::Exfat => "exFAT",
            DataFs::Ext4 => "ext4",
            DataFs::Ntfs => "NTFS",
            DataFs::Fat32 => "FAT32",
        }
    }

    fn part_kind(self) -> &'static str {
        match self {
            DataFs::Ext4 => kind::LINUX,
            _ => kind::BASIC_DATA,
        }
    }

    /// Why `label` cannot be this filesystem's label (its length, or characters that its
    /// mkfs or the partition table would refuse or misread), checked before anything is
    /// written.
    fn bad_label(self, label: &str) -> Option<String> {
        let (max, units) = match self {
            DataFs::Exfat | DataFs::Fat32 => (11, label.chars().count()),
            DataFs::Ext4 => (16, label.len()),
            DataFs::Ntfs => (32, label.chars().count()),
        };
        if label.is_empty() || units > max {
            return Some(format!("a {} label has 1 to {max} characters", self.name()));
        }
        let plain = |c: char| match self {
            DataFs::Fat32 => c.is_ascii_alphanumeric() || " -_".contains(c),
            _ => !c.is_control() && !"\"\\/".contains(c),
        };
        (!label.chars().all(plain)).then(|| match self {
            DataFs::Fat32 => "a FAT32 label takes ASCII letters, digits, spaces, - and _".to_string(),
            _ => "a label cannot hold control characters, quotes, slashes or backslashes".to_string(),
        })
    }

    fn mkfs(self, label: &str, dev: &Path) -> Command {
        let (prog, args): (&str, Vec<&str>) = match self {
            DataFs::Exfat => ("mkfs.exfat", vec!["-L", label]),
            DataFs::Ext4 => ("mkfs.ext4", vec!["-q", "-F", "-L", label]),
            DataFs::Ntfs => ("mkfs.ntfs", vec!["-Q", "-F", "-q", "-L", label]),
            DataFs::Fat32 => ("mkfs.vfat", vec!["-F", "32", "-n", label]),
        };
        let mut c = Command::new(prog);
        c.args(args).arg(dev);
        c
    }
}

pub struct Options {
    pub target: PathBuf,
    /// Create the image file with this size when it does not exist.
    pub size: Option<u64>,
    pub fs: DataFs,
    pub label: String,
    pub kver: String,
    pub modules_dir: PathBuf,
    pub kernel: PathBuf,
    pub init: PathBuf,
    pub yes: bool,
    pub dry_run: bool,
    pub serial: bool,
    pub append: Vec<String>,
    pub timeout: u32,
    pub update: bool,
    pub profiles: Vec<PathBuf>,
    /// shim and Debian's signed GRUB for UEFI, from the packages installed under this root
    /// (`/`, or an unpacked package tree).
    pub secure_boot: Option<PathBuf>,
}

impl Options {
    fn writes(&self) -> bool {
        self.yes && !self.dry_run
    }
}

/// The disk or image being written.
struct Target {
    path: PathBuf,
    size: u64,
    /// "SanDisk Cruzer Blade (sdb)", or "disk image".
    what: String,
}

fn sys(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Major and minor numbers in /proc and /sys's `MAJ:MIN` form.
fn dev_numbers(rdev: u64) -> String {
    format!("{}:{}", nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev))
}

impl Target {
    fn open(path: &Path, size: Option<u64>, create: bool) -> Result<Target> {
        if !path.exists() {
            // A device node that is not there (the stick not plugged in yet) must not
            // become a file that hides it when it comes.
            if path.starts_with("/dev") {
                bail!("{} does not exist: is the disk plugged in?", path.display());
            }
            match size {
                Some(size) if create => File::create(path)
                    .and_then(|f| f.set_len(size))
                    .with_context(|| format!("creating {}", path.display()))?,
                Some(size) => return Ok(Target { path: path.into(), size, what: "new disk image".into() }),
                None => bail!(
                    "{} does not exist (name a disk, or an image file with --size to create it)",
                    path.display()
                ),
            }
        }
        let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let size = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0))
            .with_context(|| format!("reading the size of {}", path.display()))?;
        let what = if meta.file_type().is_block_device() {
            let name = block_name(meta.rdev())?;
            let class = Path::new("/sys/class/block").join(&name);
            let sector = sys(class.join("queue/logical_block_size")).unwrap_or_default();
            if sector != "512" {
                bail!("{name} has {sector}-byte sectors: isoroot install writes 512-byte-sector disks only");
            }
            let model = [sys(class.join("device/vendor")), sys(class.join("device/model"))]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            format!("{model} ({name})").trim().to_string()
        } else if meta.is_file() {
            "disk image".into()
        } else {
            bail!("{} is neither a block device nor a file", path.display());
        };
        Ok(Target { path: path.into(), size, what })
    }

    fn read(&self) -> Result<File> {
        File::open(&self.path).with_context(|| format!("opening {}", self.path.display()))
    }

    fn write(&self) -> Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .with_context(|| format!("opening {} for writing", self.path.display()))
    }
}

/// The kernel's name of a block device (`sdb`), from its numbers.
fn block_name(rdev: u64) -> Result<String> {
    let link = format!("/sys/dev/block/{}", dev_numbers(rdev));
    let real = std::fs::canonicalize(&link).with_context(|| format!("reading {link}"))?;
    Ok(real.file_name().unwrap_or_default().to_string_lossy().into_owned())
}

/// Why an image file must not be written: a loop device is attached to it.
fn file_in_use(path: &Path) -> Result<Option<String>> {
    let me = std::fs::canonicalize(path).with_context(|| format!("reading {}", path.display()))?;
    for e in std::fs::read_dir("/sys/block").into_iter().flatten().flatten() {
        let backing = sys(e.path().join("loop/backing_file"));
        if backing.is_some_and(|b| Path::new(&b) == me) {
            return Ok(Some(format!(
                "it is attached to /dev/{} (detach it with losetup -d first)",
                e.file_name().to_string_lossy()
            )));
        }
    }
    Ok(None)
}

/// Why a disk must not be written: it is a partition, read-only, or it or one of its
/// partitions is mounted, a swap, or held by another device; and, for what these miss
/// (a mount in another namespace, btrfs's anonymous device numbers), the kernel's refusal
/// of an exclusive open.
fn disk_in_use(path: &Path, rdev: u64) -> Result<Option<String>> {
    let name = block_name(rdev)?;
    let class = Path::new("/sys/class/block").join(&name);
    if class.join("partition").exists() {
        return Ok(Some(format!("{name} is a partition: name the whole disk")));
    }
    if sys(class.join("ro")).as_deref() == Some("1") {
        return Ok(Some(format!("{name} is read-only")));
    }
    let mut devs = vec![(name.clone(), sys(class.join("dev")).unwrap_or_default())];
    for e in std::fs::read_dir(&class).with_context(|| format!("reading {}", class.display()))?.flatten() {
        if e.path().join("partition").exists() {
            devs.push((
                e.file_name().to_string_lossy().into_owned(),
                sys(e.path().join("dev")).unwrap_or_default(),
            ));
        }
    }
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    for (dev, numbers) in &devs {
        for line in mountinfo.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            if f.get(2) == Some(&numbers.as_str()) {
                let at = unescape(f.get(4).copied().unwrap_or("?"));
                let what = match at.as_str() {
                    "/" => "/, the running system's root".to_string(),
                    _ => at,
                };
                return Ok(Some(format!("/dev/{dev} is mounted on {what}")));
            }
        }
        for line in swaps.lines().skip(1) {
            let swap = line.split_whitespace().next().unwrap_or_default();
            if std::fs::metadata(swap)
                .is_ok_and(|m| m.file_type().is_block_device() && dev_numbers(m.rdev()) == *numbers)
            {
                return Ok(Some(format!("/dev/{dev} is a swap in use")));
            }
        }
        let holders = Path::new("/sys/class/block").join(dev).join("holders");
        if let Some(h) = std::fs::read_dir(holders).into_iter().flatten().flatten().next() {
            return Ok(Some(format!("/dev/{dev} is in use by {}", h.file_name().to_string_lossy())));
        }
    }
    let exclusive =
        std::fs::OpenOptions::new().read(true).custom_flags(nix::fcntl::OFlag::O_EXCL.bits()).open(path);
    match exclusive {
        Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
            Ok(Some(format!("{name} is in use: the kernel refuses to open it exclusively")))
        }
        _ => Ok(None),
    }
}

/// Why the target must not be written.
fn in_use(path: &Path) -> Result<Option<String>> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        Ok(m) if m.file_type().is_block_device() => disk_in_use(path, m.rdev()),
        Ok(m) if m.is_file() => file_in_use(path),
        Ok(_) => bail!("{} is neither a block device nor a file", path.display()),
    }
}

/// What is on the target now, one line per partition.
fn describe(t: &Target) -> Result<Vec<String>> {
    if !t.path.exists() {
        return Ok(vec![]);
    }
    let f = t.read()?;
    let name = t.path.display();
    let mut out = Vec::new();
    let table =
        parttable::table(&f, 512).with_context(|| format!("reading the partition table of {name}"))?;
    if table.is_empty() {
        if let Some(fs) = superblock::probe(&f).with_context(|| format!("reading {name}"))? {
            out.push(format!("the whole disk: {}{}", fs.kind.name(), label_text(&fs.label)));
        }
    }
    for p in table {
        let fs = superblock::probe(&Window { dev: &f, offset: p.start })
            .with_context(|| format!("reading partition {} of {name}", p.number))?;
        let (kind, label) = fs.map(|fs| (fs.kind.name(), fs.label)).unwrap_or(("no filesystem", None));
        let name = p.label.map(|l| format!(" \"{l}\"")).unwrap_or_default();
        out.push(format!(
            "partition {}{name}: {}, {kind}{}",
            p.number,
            human_size(p.size),
            label_text(&label)
        ));
    }
    Ok(out)
}

fn label_text(label: &Option<String>) -> String {
    label.as_ref().map(|l| format!(" labelled \"{l}\"")).unwrap_or_default()
}

fn run(c: &mut Command) -> Result<String> {
    let out = c.stderr(Stdio::inherit()).output().with_context(|| format!("starting {c:?}"))?;
    ensure!(out.status.success(), "{c:?} failed ({})", out.status);
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A loop device over part of the target, detached when dropped.
struct Loop(String);

impl Loop {
    fn attach(target: &Path, offset: u64, size: u64) -> Result<Loop> {
        let dev = run(Command::new("losetup")
            .args(["--find", "--show", "--offset", &offset.to_string(), "--sizelimit", &size.to_string()])
            .arg(target))
        .context("attaching a loop device over the data partition (losetup)")?;
        Ok(Loop(dev.trim().to_string()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// A scratch directory only this process can have made, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let template = std::env::temp_dir().join("isoroot-install-XXXXXX");
        let dir =
            nix::unistd::mkdtemp(&template).with_context(|| format!("creating {}", template.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn random_u32() -> Result<u32> {
    let mut b = [0u8; 4];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).context("reading /dev/urandom")?;
    Ok(u32::from_le_bytes(b))
}

/// The partition table, written with sfdisk (which also writes the protective MBR and the
/// backup table at the end).
fn partition(t: &Target, fs: DataFs, label: &str) -> Result<()> {
    let s = |bytes: u64| bytes / 512;
    let script = format!(
        "label: gpt\nunit: sectors\n\
         start={}, size={}, type={}, name=\"BIOS boot\"\n\
         start={}, size={}, type={}, name=\"isoroot EFI\"\n\
         start={}, type={}, name=\"{label}\"\n",
        s(BIOS_BOOT_AT),
        s(BIOS_BOOT_SIZE),
        kind::BIOS_BOOT,
        s(ESP_AT),
        s(ESP_SIZE),
        kind::ESP,
        s(ESP_AT + ESP_SIZE),
        fs.part_kind(),
    );
    let mut child = Command::new("sfdisk")
        .args(["--quiet", "--wipe", "always", "--wipe-partitions", "always"])
        .arg(&t.path)
        .stdin(Stdio::piped())
        .spawn()
        .context("starting sfdisk (package fdisk)")?;
    child.stdin.take().context("sfdisk's input")?.write_all(script.as_bytes())?;
    ensure!(child.wait()?.success(), "sfdisk could not write the partition table on {}", t.path.display());
    Ok(())
}

/// The three partitions `install` made, read back from the table.
struct Layout {
    bios: Partition,
    esp: Partition,
    data: Partition,
}

fn layout(t: &Target) -> Result<Layout> {
    let name = t.path.display();
    let table = parttable::table(&t.read()?, 512)
        .with_context(|| format!("reading the partition table of {name}"))?;
    let find = |n: u32, want: &[&str], what: &str| -> Result<Partition> {
        table.iter().find(|p| p.number == n && want.contains(&p.kind.as_str())).cloned().with_context(|| {
            format!("{name} has no {what} as partition {n}: it was not made by isoroot install")
        })
    };
    Ok(Layout {
        bios: find(1, &[kind::BIOS_BOOT], "BIOS boot partition")?,
        esp: find(2, &[kind::ESP], "EFI system partition")?,
        data: find(3, &[kind::BASIC_DATA, kind::LINUX], "data partition")?,
    })
}

/// Formats the data partition; returns its filesystem as blkid names it, and its UUID.
fn format_data(t: &Target, data: &Partition, fs: DataFs, label: &str) -> Result<(&'static str, String)> {
    let dev = Loop::attach(&t.path, data.start, data.size)?;
    run(&mut fs.mkfs(label, Path::new(&dev.0)))
        .with_context(|| format!("making the {} data partition", fs.name()))?;
    let info = superblock::probe(&File::open(&dev.0).with_context(|| format!("opening {}", dev.0))?)
        .with_context(|| format!("reading {}", dev.0))?
        .with_context(|| format!("no filesystem on {} after mkfs", dev.0))?;
    let uuid = info.uuid.with_context(|| format!("the new {} filesystem has no UUID", fs.name()))?;
    Ok((info.kind.name(), uuid))
}

fn grub_mkimage(platform: &str, dir: &str, out: &Path, early: &Path, modules: &[&str]) -> Result<()> {
    run(Command::new("grub-mkimage")
        .args(["-O", platform, "-d", dir, "-p", "/boot/grub", "-c"])
        .arg(early)
        .arg("-o")
        .arg(out)
        .args(modules))
    .with_context(|| {
        format!("grub-mkimage for {platform} (packages grub-pc-bin, grub-efi-amd64-bin, grub-common)")
    })?;
    Ok(())
}

/// Copies GRUB's modules for a platform into the ESP tree, where the prefix points.
fn grub_modules(from: &str, tree: &Path, platform: &str) -> Result<()> {
    let to = tree.join("boot/grub").join(platform);
    std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
    for e in std::fs::read_dir(from).with_context(|| format!("reading {from}"))? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "mod" || x == "lst") {
            std::fs::copy(&p, to.join(p.file_name().unwrap_or_default()))
                .with_context(|| format!("copying {}", p.display()))?;
        }
    }
    Ok(())
}

/// The ESP's files, made before anything is written to the target: GRUB for both
/// firmwares (each finding the ESP by its serial), GRUB's modules, the kernel and isoroot's
/// two images. Only the menu waits for the data partition's UUID ([`Esp::image`]).
struct Esp {
    tree: PathBuf,
    core: PathBuf,
    serial: u32,
}

impl Esp {
    fn prepare(o: &Options, scratch: &Path) -> Result<Esp> {
        let serial = random_u32()?;
        let tree = scratch.join("esp");
        let in_esp = |p: &str| tree.join(p.trim_start_matches('/'));
        for dir in ["EFI/BOOT", ESP_DIR] {
            std::fs::create_dir_all(in_esp(dir))
                .with_context(|| format!("creating {}", in_esp(dir).display()))?;
        }
        let early = scratch.join("early.cfg");
        std::fs::write(
            &early,
            format!(
                "search --no-floppy --fs-uuid --set=root {:04x}-{:04x}\nset prefix=($root)/boot/grub\n",
                serial >> 16,
                serial & 0xffff
            ),
        )
        .with_context(|| format!("writing {}", early.display()))?;
        match &o.secure_boot {
            // Secure Boot allows no module but those built into the signed image.
            Some(root) => {
                for (from, to) in SIGNED {
                    let from = root.join(from);
                    std::fs::copy(&from, in_esp(to)).with_context(|| {
                        format!(
                            "copying {} (packages shim-signed, shim-helpers-amd64-signed, grub-efi-amd64-signed)",
                            from.display()
                        )
                    })?;
                }
                std::fs::create_dir_all(in_esp("EFI/debian"))?;
                std::fs::write(in_esp(SIGNED_GRUB_CFG), "source /boot/grub/grub.cfg\n")
                    .with_context(|| format!("writing {}", in_esp(SIGNED_GRUB_CFG).display()))?;
            }
            None => {
                let efi = &["part_gpt", "part_msdos", "fat", "search"];
                grub_mkimage("x86_64-efi", GRUB_EFI, &in_esp("EFI/BOOT/BOOTX64.EFI"), &early, efi)?;
                grub_modules(GRUB_EFI, &tree, "x86_64-efi")?;
            }
        }
        let core = scratch.join("core.img");
        let bios = &["biosdisk", "part_gpt", "part_msdos", "fat", "search"];
        grub_mkimage("i386-pc", GRUB_BIOS, &core, &early, bios)?;
        grub_modules(GRUB_BIOS, &tree, "i386-pc")?;
        std::fs::copy(&o.kernel, in_esp(HOST_KERNEL))
            .with_context(|| format!("copying {}", o.kernel.display()))?;
        // The addon first: the standalone initramfs carries it for the picker (iso=ask).
        for (out, no_modules) in [(ADDON, true), (HOST_INITRD, false)] {
            initramfs::build(&initramfs::Options {
                out: in_esp(out),
                kver: o.kver.clone(),
                modules_dir: o.modules_dir.clone(),
                no_modules,
                compress: Compress::Zstd,
                init: o.init.clone(),
                rescue_shell: None,
                profiles: o.profiles.clone(),
                add_modules: vec![],
                network: false,
                addon: (!no_modules).then(|| in_esp(ADDON)),
            })?;
        }
        Ok(Esp { tree, core, serial })
    }

    /// The menu for the data partition (`kind` as blkid names it, `uuid`), then the ESP as
    /// a FAT32 image in `scratch`.
    fn image(&self, o: &Options, (kind, uuid): (&str, &str), scratch: &Path) -> Result<PathBuf> {
        let profiles = inspect::profiles(&o.profiles)?;
        let cfg = bootmenu::grub_cfg(&BootMenu {
            profiles: &profiles,
            data_uuid: uuid,
            serial: o.serial,
            timeout: o.timeout,
            append: &o.append,
        });
        let write = |rel: &str, text: String| {
            let path = self.tree.join(rel.trim_start_matches('/'));
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
        };
        write("/boot/grub/grub.cfg", cfg)?;
        let secure_boot = if o.secure_boot.is_some() { "shim and Debian's signed GRUB" } else { "no" };
        write(
            RECORD,
            format!(
                "isoroot {}\nkernel {}\ndata {kind} {uuid}\nsecure-boot {secure_boot}\n",
                env!("CARGO_PKG_VERSION"),
                o.kver
            ),
        )?;
        let img = scratch.join("esp.img");
        run(Command::new("mkfs.vfat")
            .args(["-F", "32", "-n", ESP_LABEL, "-i", &format!("{:08x}", self.serial), "-C"])
            .arg(&img)
            .arg((ESP_SIZE / 1024).to_string()))
        .context("making the ESP (package dosfstools)")?;
        for e in std::fs::read_dir(&self.tree).with_context(|| format!("reading {}", self.tree.display()))? {
            run(Command::new("mcopy").args(["-s", "-i"]).arg(&img).arg(e?.path()).arg("::/"))
                .context("copying files into the ESP (package mtools)")?;
        }
        Ok(img)
    }
}

/// Copies `from` into the target at `offset`.
fn write_at(target: &File, name: &Path, from: &Path, offset: u64) -> Result<()> {
    let mut src = File::open(from).with_context(|| format!("opening {}", from.display()))?;
    let mut buf = vec![0u8; 4 * MIB as usize];
    let mut at = offset;
    loop {
        let n = src.read(&mut buf).with_context(|| format!("reading {}", from.display()))?;
        if n == 0 {
            return Ok(());
        }
        target
            .write_all_at(&buf[..n], at)
            .with_context(|| format!("writing {} at byte {at}", name.display()))?;
        at += n as u64;
    }
}

/// GRUB for BIOS: core.img in the BIOS boot partition, boot.img's code in the MBR, each
/// told where the other is, as grub-bios-setup does.
fn write_bios(target: &File, name: &Path, l: &Layout, core: &Path) -> Result<()> {
    let mut core = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    ensure!(
        core.len() as u64 <= l.bios.size,
        "GRUB's core.img ({} bytes) does not fit the BIOS boot partition",
        core.len()
    );
    let first = l.bios.start / 512;
    core[CORE_BLOCKLIST_START..CORE_BLOCKLIST_START + 8].copy_from_slice(&(first + 1).to_le_bytes());
    let boot_img = Path::new(GRUB_BIOS).join("boot.img");
    let mut boot = std::fs::read(&boot_img).with_context(|| format!("reading {}", boot_img.display()))?;
    ensure!(boot.len() == 512, "{} is not one sector", boot_img.display());
    boot[BOOT_KERNEL_SECTOR..BOOT_KERNEL_SECTOR + 8].copy_from_slice(&first.to_le_bytes());
    boot[BOOT_DRIVE_CHECK..BOOT_DRIVE_CHECK + 2].copy_from_slice(&[0x90, 0x90]);
    target
        .write_all_at(&core, l.bios.start)
        .with_context(|| format!("writing GRUB's core.img to {}", name.display()))?;
    target
        .write_all_at(&boot[..MBR_CODE], 0)
        .with_context(|| format!("writing GRUB's boot code to {}", name.display()))?;
    Ok(())
}

/// What an earlier `install` recorded on the ESP (mtools reads it at its offset: no mount).
fn recorded(t: &Target, esp: &Partition) -> Option<String> {
    let image = format!("{}@@{}", t.path.display(), esp.start);
    let out = Command::new("mtype").args(["-i", &image, &format!("::{RECORD}")]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().replace('\n', ", "))
}

/// Why `--secure-boot` cannot go with a data partition of filesystem `fs`.
fn no_signed_reader(fs: &str) -> String {
    format!(
        "--secure-boot needs --fs fat32 or --fs ext4: Debian's signed GRUB has no {fs} reader built in, and \
         Secure Boot lets it load no other"
    )
}

fn nothing_written(o: &Options) {
    println!(
        "nothing was written{}",
        if o.dry_run { " (--dry-run)" } else { ": run again with --yes to write it" }
    );
}

pub fn run_install(o: &Options) -> Result<()> {
    if let Some(why) = in_use(&o.target)? {
        bail!("refusing to write {}: {why}", o.target.display());
    }
    if o.update {
        return update(o, &Target::open(&o.target, None, false)?);
    }
    if let Some(why) = o.fs.bad_label(&o.label) {
        bail!("--label {:?}: {why}", o.label);
    }
    if o.secure_boot.is_some() && matches!(o.fs, DataFs::Exfat | DataFs::Ntfs) {
        bail!(no_signed_reader(o.fs.name()));
    }
    let need = ESP_AT + ESP_SIZE + MIN_DATA + GPT_TAIL;
    let too_small = |size: u64, what: &str| {
        anyhow!(
            "{} is too small: {} ({what}), and isoroot needs at least {}",
            o.target.display(),
            human_size(size),
            human_size(need)
        )
    };
    if let Some(size) = o.size.filter(|&s| s < need && !o.target.exists()) {
        return Err(too_small(size, "--size"));
    }
    let t = Target::open(&o.target, o.size, o.writes())?;
    if t.size < need {
        return Err(too_small(t.size, &t.what));
    }
    println!("isoroot install: {}: {}, {}", t.path.display(), t.what, human_size(t.size));
    let now = describe(&t)?;
    if now.is_empty() {
        println!("  now: no partition table or filesystem found");
    } else {
        println!("  now (all of it will be erased):");
        for line in now {
            println!("    {line}");
        }
    }
    let data_size = t.size - (ESP_AT + ESP_SIZE) - GPT_TAIL;
    println!("  will be written:");
    println!("    partition 1: BIOS boot, {} (GRUB for BIOS)", human_size(BIOS_BOOT_SIZE));
    println!(
        "    partition 2: EFI system, {}, FAT32 \"{ESP_LABEL}\": {} for UEFI, isoroot, kernel {}",
        human_size(ESP_SIZE),
        if o.secure_boot.is_some() { "shim and Debian's signed GRUB" } else { "GRUB" },
        o.kver
    );
    println!(
        "    partition 3: data, about {}, {} \"{}\": copy ISO files here",
        human_size(data_size),
        o.fs.name(),
        o.label
    );
    if !o.writes() {
        nothing_written(o);
        return Ok(());
    }
    let scratch = Scratch::new()?;
    let esp = Esp::prepare(o, &scratch.0)?;
    // From here on the disk changes: a failure says so.
    let data = write_new(o, &t, &esp, &scratch.0)
        .with_context(|| format!("{} is half-written: run isoroot install again", t.path.display()))?;
    println!(
        "done: copy ISO files onto partition 3 ({} \"{}\", UUID {}); the menu lists them at every boot",
        o.fs.name(),
        o.label,
        data.1
    );
    Ok(())
}

/// The table, the data partition, the ESP and GRUB for BIOS; returns the data partition's
/// filesystem and UUID.
fn write_new(o: &Options, t: &Target, esp: &Esp, scratch: &Path) -> Result<(&'static str, String)> {
    partition(t, o.fs, &o.label)?;
    let l = layout(t)?;
    let target = t.write()?;
    // Old signatures at the starts of the new partitions must not outlive them.
    let zero = vec![0u8; MIB as usize];
    for p in [&l.bios, &l.esp, &l.data] {
        target.write_all_at(&zero, p.start).with_context(|| format!("writing {}", t.path.display()))?;
    }
    target.sync_all().with_context(|| format!("flushing {}", t.path.display()))?;
    let data = format_data(t, &l.data, o.fs, &o.label)?;
    let img = esp.image(o, (data.0, &data.1), scratch)?;
    write_at(&target, &t.path, &img, l.esp.start)?;
    write_bios(&target, &t.path, &l, &esp.core)?;
    target.sync_all().with_context(|| format!("flushing {}", t.path.display()))?;
    Ok(data)
}

/// `--update`: new GRUB, isoroot and kernel on the ESP of a disk `install` made; the
/// partition table and the data partition are not written.
fn update(o: &Options, t: &Target) -> Result<()> {
    let name = t.path.display();
    let l = layout(t)?;
    let f = t.read()?;
    let probe = |p: &Partition| {
        superblock::probe(&Window { dev: &f, offset: p.start })
            .with_context(|| format!("reading partition {} of {name}", p.number))
    };
    // The partition types alone fit many hand-made disks: the ESP must be isoroot's.
    let esp_label = probe(&l.esp)?.and_then(|fs| fs.label);
    let before = recorded(t, &l.esp);
    let Some(before) = before.filter(|_| esp_label.as_deref() == Some(ESP_LABEL)) else {
        bail!(
            "{name}: partition 2 is not the ESP of isoroot install (no \"{ESP_LABEL}\" label with {RECORD})"
        );
    };
    // An update without the flag would put an unsigned GRUB where shim was: a PC with
    // Secure Boot on would no longer start the stick.
    if before.contains("secure-boot shim") && o.secure_boot.is_none() {
        bail!("{name} was made with --secure-boot: run the update with --secure-boot too");
    }
    let fs = probe(&l.data)?.with_context(|| format!("no filesystem on the data partition of {name}"))?;
    if o.secure_boot.is_some() && matches!(fs.kind, FsKind::Exfat | FsKind::Ntfs) {
        bail!(no_signed_reader(fs.kind.name()));
    }
    let uuid = fs.uuid.with_context(|| format!("the data partition of {name} has no filesystem UUID"))?;
    println!(
        "isoroot install --update: {name}: replaces {before} with isoroot {}, kernel {}; the data partition ({} UUID {uuid}) stays as it is",
        env!("CARGO_PKG_VERSION"),
        o.kver,
        fs.kind.name()
    );
    if !o.writes() {
        nothing_written(o);
        return Ok(());
    }
    let scratch = Scratch::new()?;
    let esp = Esp::prepare(o, &scratch.0)?;
    let img = esp.image(o, (fs.kind.name(), &uuid), &scratch.0)?;
    let target = t.write()?;
    write_at(&target, &t.path, &img, l.esp.start)
        .and_then(|()| write_bios(&target, &t.path, &l, &esp.core))
        .and_then(|()| target.sync_all().with_context(|| format!("flushing {name}")))
        .with_context(|| format!("the ESP of {name} is half-written: run isoroot install --update again"))?;
    println!("done");
    Ok(())
}
