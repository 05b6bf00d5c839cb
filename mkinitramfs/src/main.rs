//! `isoroot`: the host side of isoroot.

mod authenticode;
mod bootmenu;
mod cpio;
mod extents;
mod initramfs;
mod inspect;
mod install;
mod kmods;
mod menu;
mod verify;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Parser, Subcommand};
use initramfs::Compress;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "isoroot", version, about = "Boot live-distro ISO files kept as plain files on a disk")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build an initramfs whose /init is isoroot (or, with --no-modules, the small archive
    /// to append to a distro's own initrd).
    Mkinitramfs(MkinitramfsArgs),
    /// Print the kernel command-line words that describe FILE's place on its block device
    /// (iso=UUID=…:/path iso.extents=… iso.fingerprint=…), for a dm-linear boot that never
    /// mounts the filesystem holding FILE.
    Extents(ExtentsArgs),
    /// Boot entries for every ISO under a folder: a grub.cfg (--grub DIR) or systemd-boot
    /// entries with the kernels and initrds copied into the ESP (--bls DIR --esp ESP).
    Menu(MenuArgs),
    /// Check an ISO against the distro's published checksum file and its signature (gpgv).
    Verify(VerifyArgs),
    /// Say what isoroot makes of an ISO (profile, distro, kernel, root images), read without
    /// mounting it.
    Inspect(InspectArgs),
    /// Make a whole disk or a disk image into a multiboot stick: GRUB for UEFI and BIOS,
    /// isoroot and a kernel on an ESP, and a data partition to copy ISO files onto, which
    /// the boot menu lists at every boot. Writes nothing without --yes.
    Install(InstallArgs),
}

#[derive(Args)]
struct MkinitramfsArgs {
    /// Where to write the archive.
    #[arg(short, long)]
    output: PathBuf,
    /// Kernel version whose modules to include [default: the running kernel's].
    #[arg(short = 'k', long = "kver")]
    kver: Option<String>,
    /// Module tree [default: /lib/modules/KVER].
    #[arg(long)]
    modules_dir: Option<PathBuf>,
    /// Leave modules out: the archive to append to a distro's initrd.
    #[arg(long)]
    no_modules: bool,
    #[arg(long, value_enum, default_value = "zstd")]
    compress: Compress,
    /// The isoroot-init binary [default: beside this program, or where `cargo xtask
    /// build` puts it].
    #[arg(long)]
    init: Option<PathBuf>,
    /// A static busybox to offer as a rescue shell when a boot fails.
    #[arg(long, value_name = "BUSYBOX")]
    rescue_shell: Option<PathBuf>,
    /// A profile (YAML) to add; it overrides a built-in one of the same name.
    #[arg(long = "profile", value_name = "FILE")]
    profiles: Vec<PathBuf>,
    /// One more module (or alias) to load at every boot.
    #[arg(long = "add-module", value_name = "NAME")]
    add_modules: Vec<String>,
    /// Add NIC drivers and nbd, for iso=http(s)://… and iso=nbd://… (network boot).
    #[arg(long)]
    network: bool,
    /// Carry this `--no-modules` archive, for the boot-time picker (`iso=ask`): it boots a
    /// chosen ISO's own kernel with the ISO's initrd and this archive (`isoroot install`
    /// puts the ESP's addon here).
    #[arg(long, value_name = "FILE")]
    addon: Option<PathBuf>,
}

#[derive(Args)]
struct ExtentsArgs {
    /// Write the words as a map file in a small newc archive, to load as an extra
    /// initrd, and print the iso.map= word instead.
    #[arg(long, value_name = "OUT")]
    cpio: Option<PathBuf>,
    /// Read FILE (a path inside the filesystem on DEV) from DEV's on-disk allocation
    /// (ext4, FAT, exFAT) instead of asking the mounted filesystem: no mount needed.
    #[arg(long, value_name = "DEV")]
    device: Option<PathBuf>,
    file: PathBuf,
}

#[derive(Args)]
struct MenuArgs {
    #[arg(long, value_name = "DIR", required_unless_present_any = ["bls", "ipxe"], conflicts_with_all = ["bls", "ipxe"])]
    grub: Option<PathBuf>,
    #[arg(long, value_name = "DIR", requires = "esp", conflicts_with = "ipxe")]
    bls: Option<PathBuf>,
    /// An iPXE script for network boot: every ISO under DIR, which the web server serves
    /// at --url, beside the kernel (vmlinuz) and `mkinitramfs --network` (isoroot-net.img).
    #[arg(long, value_name = "DIR", requires = "url")]
    ipxe: Option<PathBuf>,
    /// Where the web server serves the --ipxe folder, e.g. http://192.168.1.2/live.
    #[arg(long)]
    url: Option<String>,
    /// With --ipxe: boot over NBD from this server (HOST[:PORT]), one export per ISO
    /// named after its file (nbdkit file dir=…), instead of downloading into RAM.
    #[arg(long, value_name = "HOST[:PORT]")]
    nbd: Option<String>,
    /// The mounted EFI system partition (with --bls).
    #[arg(long)]
    esp: Option<PathBuf>,
    /// isoroot's `mkinitramfs --no-modules` archive; with --grub it must be on the ISOs'
    /// filesystem, with --bls it is copied into the ESP.
    #[arg(long, required_unless_present = "ipxe")]
    addon: Option<PathBuf>,
    /// Where to write grub.cfg or the iPXE script [default: standard output].
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// GRUB on the serial console too (headless machines, VMs).
    #[arg(long)]
    serial: bool,
    #[arg(long, default_value_t = 10)]
    timeout: u32,
    /// The entry GRUB boots when the timeout runs out (0 is the first).
    #[arg(long, default_value_t = 0)]
    default: usize,
    /// No extent hints (the boot then scans the filesystem for the ISO).
    #[arg(long)]
    no_hints: bool,
    /// Put each ISO's sha256 in its entry (iso.sha256=): checked at every boot.
    #[arg(long)]
    pin_sha256: bool,
    /// More kernel command line words for every entry, e.g. "console=ttyS0 quiet".
    #[arg(long, value_name = "WORDS", default_value = "")]
    append: String,
    /// A profile (YAML) to add; it overrides a built-in one of the same name.
    #[arg(long = "profile", value_name = "FILE")]
    profiles: Vec<PathBuf>,
}

#[derive(Args)]
struct VerifyArgs {
    /// SHA256SUMS (GNU or BSD format) that lists the ISO.
    #[arg(long)]
    sums: Option<PathBuf>,
    /// Detached OpenPGP signature of the sums file (or of the ISO, without --sums).
    #[arg(long)]
    signature: Option<PathBuf>,
    /// Keyring with the distro's signing key [default: gpgv's, ~/.gnupg/trustedkeys.kbx].
    #[arg(long)]
    keyring: Option<PathBuf>,
    /// The fingerprint of the key that must have made the signature (its primary key's, or
    /// the signing subkey's); another key in the keyring is then refused.
    #[arg(long, value_name = "FINGERPRINT")]
    signer: Option<String>,
    /// The expected sha256 in hex.
    #[arg(long)]
    sha256: Option<String>,
    iso: PathBuf,
}

#[derive(Args)]
struct InspectArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// A profile (YAML) to add; it overrides a built-in one of the same name.
    #[arg(long = "profile", value_name = "FILE")]
    profiles: Vec<PathBuf>,
    iso: PathBuf,
}

#[derive(Args)]
struct InstallArgs {
    /// The whole disk (/dev/sdX, /dev/nvme0n1) or disk image file to write.
    target: PathBuf,
    /// Write it; without this only the plan is printed.
    #[arg(long)]
    yes: bool,
    /// Print the plan and write nothing, even with --yes.
    #[arg(long)]
    dry_run: bool,
    /// The data partition's filesystem.
    #[arg(long, value_enum, default_value = "exfat")]
    fs: install::DataFs,
    /// The data partition's label.
    #[arg(long, default_value = "ISOROOT")]
    label: String,
    /// Kernel version for the ESP's kernel and isoroot's standalone initramfs [default: the
    /// running kernel's]; its image is /boot/vmlinuz-KVER.
    #[arg(short = 'k', long = "kver")]
    kver: Option<String>,
    /// Create the image file with this many MiB when TARGET does not exist.
    #[arg(long, value_name = "MIB")]
    size: Option<u64>,
    /// GRUB on the serial console too, and console=ttyS0 for every kernel.
    #[arg(long)]
    serial: bool,
    /// Kernel command line words added to every boot of an ISO.
    #[arg(long, value_name = "WORDS", default_value = "")]
    append: String,
    /// Seconds before the first entry boots.
    #[arg(long, default_value_t = 10)]
    timeout: u32,
    /// Rewrite only the ESP (GRUB, isoroot, the kernel): never the partition table or the
    /// data partition.
    #[arg(long)]
    update: bool,
    /// The isoroot-init binary [default: as for mkinitramfs].
    #[arg(long)]
    init: Option<PathBuf>,
    /// A profile (YAML) to add; it overrides a built-in one of the same name.
    #[arg(long = "profile", value_name = "FILE")]
    profiles: Vec<PathBuf>,
    /// Boot with Secure Boot on: shim (signed by Microsoft) and Debian's signed GRUB for
    /// UEFI, from the packages shim-signed, shim-helpers-amd64-signed and
    /// grub-efi-amd64-signed; the data partition must then be FAT32 or ext4.
    #[arg(long)]
    secure_boot: bool,
    /// With --secure-boot: take those packages' files from this root (an unpacked package
    /// tree) instead of /.
    #[arg(long, value_name = "ROOT", requires = "secure_boot", default_value = "/")]
    signed_from: PathBuf,
}

fn running_kernel() -> Result<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    Ok(release.trim().to_string())
}

impl MkinitramfsArgs {
    fn run(self) -> Result<()> {
        let kver = match self.kver {
            Some(k) => k,
            None => running_kernel()?,
        };
        let modules_dir = self.modules_dir.unwrap_or_else(|| PathBuf::from("/lib/modules").join(&kver));
        let init = init_binary(self.init)?;
        initramfs::build(&initramfs::Options {
            out: self.output,
            kver,
            modules_dir,
            no_modules: self.no_modules,
            compress: self.compress,
            init,
            rescue_shell: self.rescue_shell,
            profiles: self.profiles,
            add_modules: self.add_modules,
            network: self.network,
            addon: self.addon,
        })
    }
}

/// The isoroot-init binary named, or the default one.
fn init_binary(named: Option<PathBuf>) -> Result<PathBuf> {
    named.or_else(initramfs::default_init).ok_or_else(|| {
        anyhow!("no isoroot-init binary found: build it with `cargo xtask build` or name it with --init")
    })
}

impl InstallArgs {
    fn run(self) -> Result<()> {
        let kver = match self.kver {
            Some(k) => k,
            None => running_kernel()?,
        };
        install::run_install(&install::Options {
            target: self.target,
            size: self.size.map(|mib| mib.checked_mul(1 << 20).context("--size is too large")).transpose()?,
            fs: self.fs,
            label: self.label,
            modules_dir: PathBuf::from("/lib/modules").join(&kver),
            kernel: PathBuf::from(format!("/boot/vmlinuz-{kver}")),
            kver,
            init: init_binary(self.init)?,
            yes: self.yes,
            dry_run: self.dry_run,
            serial: self.serial,
            append: self.append.split_whitespace().map(String::from).collect(),
            timeout: self.timeout,
            update: self.update,
            profiles: self.profiles,
            secure_boot: self.secure_boot.then_some(self.signed_from),
        })
    }
}

impl ExtentsArgs {
    fn run(self) -> Result<()> {
        extents::run(&self.file, self.device.as_deref(), self.cpio.as_deref())
    }
}

impl MenuArgs {
    fn run(self) -> Result<()> {
        let MenuArgs {
            grub,
            bls,
            ipxe,
            url,
            nbd,
            esp,
            addon,
            output,
            serial,
            timeout,
            default,
            no_hints,
            pin_sha256,
            append,
            profiles,
        } = self;
        let profiles = inspect::profiles(&profiles)?;
        let append: Vec<String> = append.split_whitespace().map(String::from).collect();
        let options = |dir: PathBuf| -> Result<menu::Options> {
            let addon = addon.ok_or_else(|| anyhow!("--grub and --bls need --addon"))?;
            Ok(menu::Options {
                dir,
                addon,
                profiles: profiles.clone(),
                hints: !no_hints,
                pin_sha256,
                append: append.clone(),
            })
        };
        let write = |text: String| match &output {
            Some(out) => std::fs::write(out, text).with_context(|| format!("writing {}", out.display())),
            None => {
                print!("{text}");
                Ok(())
            }
        };
        match (grub, bls, esp, ipxe) {
            (_, _, _, Some(dir)) => {
                let url = url.ok_or_else(|| anyhow!("--ipxe needs --url"))?;
                write(menu::ipxe(&dir, &profiles, &append, &menu::Ipxe { url, nbd, timeout, default })?)
            }
            (Some(dir), _, _, _) => {
                write(menu::grub(&options(dir)?, &menu::Grub { serial, timeout, default })?)
            }
            (None, Some(dir), Some(esp), _) => {
                for entry in menu::bls(&options(dir)?, &esp)? {
                    println!("{}", entry.display());
                }
                Ok(())
            }
            _ => Err(anyhow!("name --grub DIR, --bls DIR with --esp ESP, or --ipxe DIR with --url URL")),
        }
    }
}

impl VerifyArgs {
    fn run(self) -> Result<()> {
        let VerifyArgs { sums, signature, keyring, signer, sha256, iso } = self;
        println!("{}", verify::run(&verify::Options { iso, sums, signature, keyring, signer, sha256 })?);
        Ok(())
    }
}

impl InspectArgs {
    fn run(self) -> Result<()> {
        let InspectArgs { json, profiles, iso } = self;
        let report = inspect::inspect(&iso, &inspect::profiles(&profiles)?)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", report.text());
        }
        Ok(())
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Mkinitramfs(args) => args.run(),
        Cmd::Extents(args) => args.run(),
        Cmd::Menu(args) => args.run(),
        Cmd::Verify(args) => args.run(),
        Cmd::Inspect(args) => args.run(),
        Cmd::Install(args) => args.run(),
    }
}
