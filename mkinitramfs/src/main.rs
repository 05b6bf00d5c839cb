//! `isoroot`: the host side of isoroot.

mod cpio;
mod extents;
mod initramfs;
mod inspect;
mod isofs;
mod kmods;
mod pathwalk;
mod squashfs;

use anyhow::{anyhow, Result};
use clap::{Parser, Subcommand};
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
    Mkinitramfs {
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
    },
    /// Print the kernel command-line words that describe FILE's place on its block device
    /// (iso=UUID=…:/path iso.extents=… iso.fingerprint=…), for a dm-linear boot that never
    /// mounts the filesystem holding FILE.
    Extents {
        /// Write the words as a map file in a small newc archive, to load as an extra
        /// initrd, and print the iso.map= word instead.
        #[arg(long, value_name = "OUT")]
        cpio: Option<PathBuf>,
        /// Read FILE (a path inside the filesystem on DEV) from DEV's on-disk allocation
        /// (ext4, FAT, exFAT) instead of asking the mounted filesystem: no mount needed.
        #[arg(long, value_name = "DEV")]
        device: Option<PathBuf>,
        file: PathBuf,
    },
    /// Say what isoroot makes of an ISO (profile, distro, kernel, root images), read without
    /// mounting it.
    Inspect {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// A profile (YAML) to add; it overrides a built-in one of the same name.
        #[arg(long = "profile", value_name = "FILE")]
        profiles: Vec<PathBuf>,
        iso: PathBuf,
    },
}

fn running_kernel() -> Result<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    Ok(release.trim().to_string())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Mkinitramfs {
            output,
            kver,
            modules_dir,
            no_modules,
            compress,
            init,
            rescue_shell,
            profiles,
            add_modules,
        } => {
            let kver = match kver {
                Some(k) => k,
                None => running_kernel()?,
            };
            let modules_dir = modules_dir.unwrap_or_else(|| PathBuf::from("/lib/modules").join(&kver));
            let init = init.or_else(initramfs::default_init).ok_or_else(|| {
                anyhow!(
                    "no isoroot-init binary found: build it with `cargo xtask build` or name it with --init"
                )
            })?;
            initramfs::build(&initramfs::Options {
                out: output,
                kver,
                modules_dir,
                no_modules,
                compress,
                init,
                rescue_shell,
                profiles,
                add_modules,
            })
        }
        Cmd::Extents { cpio, device, file } => extents::run(&file, device.as_deref(), cpio.as_deref()),
        Cmd::Inspect { json, profiles, iso } => {
            let report = inspect::inspect(&iso, &inspect::profiles(&profiles)?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.text());
            }
            Ok(())
        }
    }
}
