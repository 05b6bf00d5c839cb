//! Wait for the device that holds the ISO, mount its filesystem read-only and find the file
//! on it (the loop path of `attach`, and the boot-time search when `iso=` names no device).

use crate::blockdev::{BlockDev, Devices};
use crate::devices::{self, Hardware};
use crate::mount::Sys;
use crate::paths;
use anyhow::{anyhow, bail, Context, Result};
use isoroot_fs::location::{Location, Source};
use isoroot_fs::superblock::FsKind;
use nix::mount::MsFlags;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the filesystem that holds the ISO is mounted (read-only).
pub const HOST: &str = "/run/isoroot/host";
/// Where other candidates are checked while searching, so that HOST keeps the first hit.
const PROBE: &str = "/run/isoroot/probe";

pub struct Found {
    pub dev: BlockDev,
    /// The ISO file, as reachable in the initramfs.
    pub file: PathBuf,
}

fn matches(src: &Source, d: &BlockDev) -> bool {
    let fs = d.fs.as_ref();
    match src {
        Source::Uuid(u) => fs.and_then(|f| f.uuid.as_ref()).is_some_and(|v| v.eq_ignore_ascii_case(u)),
        Source::Label(l) => fs.and_then(|f| f.label.as_ref()) == Some(l),
        Source::PartUuid(u) => d.partuuid.as_ref().is_some_and(|v| v.eq_ignore_ascii_case(u)),
        Source::PartLabel(l) => d.partlabel.as_ref() == Some(l),
        Source::Dev(p) => d.path == Path::new(p),
    }
}

/// A label that differs only in case (FAT keeps labels in upper case): worth a hint.
fn near_miss<'a>(src: &Source, devices: &'a Devices) -> Option<&'a BlockDev> {
    let Source::Label(l) = src else { return None };
    devices
        .known
        .values()
        .find(|d| d.fs.as_ref().and_then(|f| f.label.as_ref()).is_some_and(|v| v.eq_ignore_ascii_case(l)))
}

/// The filesystem types isoroot can read a file from, with read-only options that really
/// write nothing: ext4 would replay its journal even when mounted read-only, `noload`
/// stops that.
fn mount_args(dev: &BlockDev) -> Result<(&'static str, &'static str)> {
    let Some(fs) = &dev.fs else {
        bail!("{dev}: no filesystem that isoroot recognises");
    };
    Ok(match fs.kind {
        FsKind::Ext4 => ("ext4", "noload"),
        FsKind::Vfat => ("vfat", ""),
        FsKind::Exfat => ("exfat", ""),
        FsKind::Iso9660 => ("iso9660", ""),
        FsKind::Udf => ("udf", ""),
        FsKind::Ntfs => bail!(
            "{dev} is NTFS, which Debian's kernel cannot mount: isoroot reads NTFS itself, which needs the \
             device named in iso= (UUID=, LABEL=, …) and a clean volume"
        ),
        FsKind::Squashfs | FsKind::Erofs => bail!("{dev} holds a root image, not files"),
    })
}

fn mount_ro(sys: &mut dyn Sys, dev: &BlockDev, at: &Path) -> Result<()> {
    let (fstype, data) = mount_args(dev)?;
    if dev.fs.as_ref().is_some_and(|f| f.needs_recovery) {
        crate::warn!("{dev} was not cleanly unmounted; reading it without replaying its journal");
    }
    sys.mkdir_all(at).with_context(|| format!("creating {}", at.display()))?;
    let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    sys.mount(&dev.path.to_string_lossy(), at, fstype, flags, data)
        .with_context(|| format!("mounting {dev} read-only on {at} as {fstype}", at = at.display()))
}

/// Mounts `dev` at `at` and looks for `path`; unmounts again when the file is not there.
fn open_on(sys: &mut dyn Sys, dev: &BlockDev, path: &str, at: &Path) -> Result<PathBuf> {
    mount_ro(sys, dev, at)?;
    let missing = || {
        let (dir, names) = paths::nearest_listing(at, path);
        anyhow!("{dev} has no file {path}\n{dir} on it holds: {}", isoroot_fs::pathwalk::sample(&names))
    };
    let found = match paths::resolve_in(at, path) {
        Ok(file) => match std::fs::metadata(&file) {
            Ok(m) if m.is_file() => Ok(file),
            Ok(_) => Err(anyhow!("{path} on {dev} is a directory, not an ISO file")),
            Err(_) => Err(missing()),
        },
        // A directory on the way is missing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
        Err(e) => Err(anyhow!(e).context(format!("resolving {path} on {dev}"))),
    };
    if found.is_err() {
        let _ = sys.umount(at);
    }
    found
}

/// Waits up to `timeout` for the device `src` names. Several matches are a warning.
pub fn wait_for_device(src: &Source, timeout: Duration, hw: &mut Hardware) -> Result<BlockDev> {
    let what = format!("the block device {src}");
    let dev = devices::poll(timeout, &what, hw, |devices| {
        devices.refresh();
        let hits: Vec<&BlockDev> = devices.known.values().filter(|d| matches(src, d)).collect();
        if hits.len() > 1 {
            let all: Vec<String> = hits.iter().map(|d| d.to_string()).collect();
            crate::warn!("{} devices match {src}, using the first:\n  {}", hits.len(), all.join("\n  "));
        }
        Ok(hits.first().map(|d| (*d).clone()))
    })?;
    crate::timings::mark("device wait");
    hw.settle();
    crate::timings::mark("modules, rest");
    let loc = Location { source: Some(src.clone()), path: String::new() };
    dev.ok_or_else(|| not_found(&loc, timeout, &hw.devices, &[]))
}

/// Waits for the location's device, mounts it read-only on [`HOST`] and returns the ISO
/// file. Without a SOURCE every filesystem is searched, and more than one hit is a warning.
pub fn locate(sys: &mut dyn Sys, loc: &Location, timeout: Duration, hw: &mut Hardware) -> Result<Found> {
    let host = Path::new(HOST);
    if let Some(src) = &loc.source {
        let dev = wait_for_device(src, timeout, hw)?;
        let file = open_on(sys, &dev, &loc.path, host)?;
        return Ok(Found { dev, file });
    }
    // Every filesystem is mounted to look: its driver must be there first.
    hw.settle();
    let mut searched: Vec<String> = Vec::new();
    let what = format!("a block device that holds {}", loc.path);
    let found = devices::poll(timeout, &what, hw, |devices| {
        for name in devices.refresh() {
            let dev = devices.known[&name].clone();
            if mount_args(&dev).is_err() {
                continue;
            }
            match open_on(sys, &dev, &loc.path, host) {
                Ok(file) => {
                    warn_other_hits(sys, devices, &dev, &loc.path);
                    return Ok(Some(Found { dev, file }));
                }
                Err(e) => searched.push(format!("  {e:#}").replace('\n', "\n    ")),
            }
        }
        Ok(None)
    })?;
    found.ok_or_else(|| not_found(loc, timeout, &hw.devices, &searched))
}

/// Checks the devices not yet looked at for a second copy of the file.
fn warn_other_hits(sys: &mut dyn Sys, devices: &Devices, used: &BlockDev, path: &str) {
    let others: Vec<String> = devices
        .known
        .values()
        .filter(|d| d.name != used.name && mount_args(d).is_ok())
        .filter(|d| {
            let hit = open_on(sys, d, path, Path::new(PROBE)).is_ok();
            if hit {
                let _ = sys.umount(Path::new(PROBE));
            }
            hit
        })
        .map(|d| d.to_string())
        .collect();
    if !others.is_empty() {
        crate::warn!(
            "{path} is on more than one device; using {used}\nalso on:\n  {}\nname the device (iso=UUID=…:{path}) to choose",
            others.join("\n  ")
        );
    }
}

fn not_found(loc: &Location, timeout: Duration, devices: &Devices, searched: &[String]) -> anyhow::Error {
    let secs = timeout.as_secs();
    let mut msg = match &loc.source {
        Some(src) => {
            let mut m = format!("no block device with {src} appeared within {secs} s");
            if let Some(d) = near_miss(src, devices) {
                m.push_str(&format!("\nhint: {d} differs only in case; labels are case-sensitive"));
            }
            m
        }
        None => format!("no filesystem holds {} (searched for {secs} s)", loc.path),
    };
    if !searched.is_empty() {
        msg.push_str(&format!("\nsearched:\n{}", searched.join("\n")));
    }
    msg.push_str(&format!("\nblock devices seen:\n{}", devices.listing()));
    anyhow!(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use isoroot_fs::superblock::FsInfo;

    fn dev(name: &str, kind: FsKind, uuid: &str, label: &str) -> BlockDev {
        BlockDev {
            name: name.into(),
            path: format!("/dev/{name}").into(),
            size: 1 << 30,
            fs: Some(FsInfo {
                kind,
                uuid: Some(uuid.into()),
                label: Some(label.into()),
                needs_recovery: false,
            }),
            partuuid: Some("abcd-01".into()),
            partlabel: Some("data".into()),
            error: None,
        }
    }

    #[test]
    fn sources_match_like_blkid() {
        let d = dev("vda1", FsKind::Vfat, "12AB-34CD", "MY USB");
        assert!(matches(&Source::Uuid("12ab-34cd".into()), &d));
        assert!(matches(&Source::Label("MY USB".into()), &d));
        assert!(!matches(&Source::Label("my usb".into()), &d));
        assert!(matches(&Source::PartUuid("ABCD-01".into()), &d));
        assert!(matches(&Source::PartLabel("data".into()), &d));
        assert!(matches(&Source::Dev("/dev/vda1".into()), &d));
        assert!(!matches(&Source::Dev("/dev/vda".into()), &d));
    }

    #[test]
    fn timeout_message_lists_devices_and_hints_at_case() {
        let mut devices = Devices::default();
        devices.known.insert("vda".into(), dev("vda", FsKind::Vfat, "1234-5678", "ISOSTICK"));
        let loc = Location { source: Some(Source::Label("isostick".into())), path: "/a.iso".into() };
        let msg = not_found(&loc, Duration::from_secs(3), &devices, &[]).to_string();
        assert!(msg.starts_with("no block device with LABEL=isostick appeared within 3 s"), "{msg}");
        assert!(msg.contains("hint: /dev/vda"), "{msg}");
        assert!(
            msg.contains("block devices seen:\n  /dev/vda (1.0 GiB) vfat UUID=1234-5678 LABEL=\"ISOSTICK\""),
            "{msg}"
        );
    }

    #[test]
    fn ntfs_and_root_images_are_refused_with_a_reason() {
        let e = mount_args(&dev("sda1", FsKind::Ntfs, "A", "W")).unwrap_err().to_string();
        assert!(e.contains("cannot mount: isoroot reads NTFS itself"), "{e}");
        assert_eq!(mount_args(&dev("sda1", FsKind::Ext4, "A", "W")).unwrap(), ("ext4", "noload"));
    }
}
