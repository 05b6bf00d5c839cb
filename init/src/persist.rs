//! `iso.persist=`: an ext4 image file as the overlay's writable layer, so that changes
//! survive a reboot. Writing into a file on a filesystem that is not mounted is only safe
//! with an exact, current map of the file, so the map is always read at boot from the
//! filesystem itself (`scan`); hints given with `iso.persist.extents=` must agree with it.
//! And nothing is mounted writable before the image's own ext4 UUID matches
//! `iso.persist.uuid=`. Any doubt: boot without persistence and say why.

use crate::blockdev::BlockDev;
use crate::cmdline::Cmdline;
use crate::devices::Hardware;
use crate::dm;
use crate::dm::Target;
use crate::locate;
use crate::mount::Sys;
use anyhow::{anyhow, bail, Context, Result};
use isoroot_fs::extents::Extent;
use isoroot_fs::filemap;
use isoroot_fs::human_size;
use isoroot_fs::location::Location;
use isoroot_fs::superblock::{self, FsKind, EXT4_INCOMPAT_64BIT};
use isoroot_fs::{le16, le32, ReadAt};
use std::path::PathBuf;

const COMPAT_SPARSE_SUPER2: u32 = 0x200;

/// The writable device that holds the persistence filesystem, or why there is none.
pub fn attach(
    sys: &mut dyn Sys,
    c: &Cmdline,
    iso_source: Option<&BlockDev>,
    hw: &mut Hardware,
) -> Result<Option<PathBuf>> {
    let Some(persist) = &c.persist else { return Ok(None) };
    let loc = &persist.image;
    let Some(uuid) = &persist.uuid else {
        bail!(
            "iso.persist= needs iso.persist.uuid= (the image's ext4 UUID, from `blkid IMAGE`): without it isoroot \
             cannot tell the image from whatever else might be at those sectors"
        );
    };
    let source = match &loc.source {
        Some(src) => locate::wait_for_device(src, c.timeout, hw)?,
        None => iso_source.cloned().ok_or_else(|| {
            anyhow!("iso.persist={loc} names no device, and the ISO comes over the network: say which, e.g. UUID=…:{loc}")
        })?,
    };
    if let Some(at) = mounted_at(&source)? {
        bail!(
            "{source} is mounted read-only on {at} (where the ISO was found, since it could not be mapped \
             without mounting), and the kernel puts no writable map over a mounted device; persistence on it \
             needs the ISO mapped from hints or a scan (a clean ext4, FAT, exFAT or NTFS named in iso=)"
        );
    }
    let (targets, len) = current_map(&source, loc, persist.extents.as_deref())?;
    let dev =
        sys.map_linear(dm::PERSIST_DEVICE, &targets, true).context("creating the persistence device")?;
    // Read, never write, until the image proves to be the one named, whole.
    let proved = std::fs::File::open(&dev)
        .with_context(|| format!("opening {}", dev.display()))
        .and_then(|f| prove(&f, len, loc, uuid));
    if let Err(e) = proved {
        sys.unmap(dm::PERSIST_DEVICE);
        return Err(e);
    }
    Ok(Some(dev))
}

/// Where `dev` is mounted, if it is: its major:minor in /proc/self/mountinfo.
fn mounted_at(dev: &BlockDev) -> Result<Option<String>> {
    let (major, minor) = dev.numbers()?;
    let want = format!("{major}:{minor}");
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(2) == Some(&want.as_str())).then(|| f.get(4).unwrap_or(&"?").to_string())
    }))
}

/// The image behind the map is the ext4 filesystem `iso.persist.uuid=` names, and the map
/// holds all of it: its block count fits the file, and a backup superblock read through
/// the map (a group away from the first) is the same filesystem's, which a map wrong
/// past its first blocks would not show.
fn prove(dev: &(impl ReadAt + ?Sized), len: u64, loc: &Location, uuid: &str) -> Result<()> {
    let found = match superblock::probe(dev).with_context(|| format!("reading {loc}"))? {
        Some(fs) if fs.kind == FsKind::Ext4 => fs.uuid.unwrap_or_default(),
        other => bail!(
            "{loc} holds {}, not an ext4 filesystem",
            other.map_or("nothing isoroot knows", |f| f.kind.name())
        ),
    };
    if !found.eq_ignore_ascii_case(uuid) {
        bail!("{loc} has ext4 UUID {found}, iso.persist.uuid= says {uuid}: not writing to it");
    }
    geometry(dev, len).with_context(|| format!("{loc}: not writing to it"))
}

/// The image's ext4 geometry against the `len` bytes of the file it lies in; see [`prove`].
fn geometry(dev: &(impl ReadAt + ?Sized), len: u64) -> Result<()> {
    let mut sb = [0u8; 1024];
    dev.read_at(1024, &mut sb)?;
    let log = le32(&sb, 0x18);
    let per_group = u64::from(le32(&sb, 0x20));
    if log > 6 || per_group == 0 {
        bail!("its ext4 superblock has an impossible geometry");
    }
    let block = 1024u64 << log;
    let mut blocks = u64::from(le32(&sb, 0x4));
    if le32(&sb, 0x60) & EXT4_INCOMPAT_64BIT != 0 {
        blocks |= u64::from(le32(&sb, 0x150)) << 32;
    }
    let fs_len = blocks.saturating_mul(block);
    if fs_len > len {
        bail!(
            "its ext4 filesystem is {} ({blocks} blocks of {block} bytes) and the file {}: writes past the \
             file's end would fail; shrink the filesystem with resize2fs or grow the file",
            human_size(fs_len),
            human_size(len)
        );
    }
    let first = u64::from(le32(&sb, 0x14));
    let groups = blocks.saturating_sub(first).div_ceil(per_group);
    // sparse_super2 names its (at most two) backup groups; otherwise group 1 has one.
    let backups = if le32(&sb, 0x5C) & COMPAT_SPARSE_SUPER2 != 0 {
        vec![u64::from(le32(&sb, 0x24C)), u64::from(le32(&sb, 0x250))]
    } else {
        vec![1]
    };
    for g in backups.into_iter().filter(|&g| g > 0 && g < groups) {
        let at = (first + g * per_group) * block;
        let mut copy = [0u8; 1024];
        dev.read_at(at, &mut copy)?;
        if le16(&copy, 0x38) != 0xEF53 || copy[0x68..0x78] != sb[0x68..0x78] {
            bail!(
                "the backup superblock of block group {g} (byte {at} of the image) is not this filesystem's: \
                 the file's map is wrong past its start"
            );
        }
    }
    Ok(())
}

/// The persistence file's map, read now from its filesystem, and the file's size.
fn current_map(source: &BlockDev, loc: &Location, hints: Option<&[Extent]>) -> Result<(Vec<Target>, u64)> {
    let kind = source.fs.as_ref().map(|f| f.kind).ok_or_else(|| anyhow!("{source} has no filesystem"))?;
    let file =
        std::fs::File::open(&source.path).with_context(|| format!("opening {}", source.path.display()))?;
    let map = filemap::map(&file, kind, &loc.path).map_err(|e| {
        anyhow!("{source}: {e} (isoroot maps persistence files on clean ext4, FAT, exFAT and NTFS only)")
    })?;
    let now = dm::sectors(&map.runs).ok_or_else(|| {
        anyhow!(
            "{} is sparse (or preallocated but unwritten): writes there would be lost to the host; copy it \
             densely: cp --sparse=never IMG NEW && mv NEW IMG",
            loc.path
        )
    })?;
    if let Some(hints) = hints {
        dm::same_sectors(hints, &now).with_context(|| {
            format!(
                "iso.persist.extents= is not where {} lies now: stale hints, and a stale map is never written \
                 to; run `isoroot extents` again",
                loc.path
            )
        })?;
    }
    Ok((dm::table(&now, &source.under()?)?, map.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16 MiB ext4 image of 1 KiB blocks (two block groups), made by mkfs.ext4.
    fn image() -> Vec<u8> {
        let path = std::env::temp_dir().join(format!("isoroot-persist-{}.img", std::process::id()));
        std::fs::File::create(&path).unwrap().set_len(16 << 20).unwrap();
        let ok = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "1024", "-U", "77777777-8888-9999-aaaa-bbbbbbbbbbbb"])
            .arg(&path)
            .status()
            .expect("mkfs.ext4 (package e2fsprogs)");
        assert!(ok.success());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(path).unwrap();
        bytes
    }

    #[test]
    fn the_whole_image_is_proved_before_it_is_written() {
        let img = image();
        let loc = Location { source: None, path: "/persist.img".into() };
        let uuid = "77777777-8888-9999-aaaa-bbbbbbbbbbbb";
        prove(&img[..], img.len() as u64, &loc, uuid).unwrap();
        let e = prove(&img[..], img.len() as u64, &loc, "77777777-0000-0000-0000-000000000000").unwrap_err();
        assert!(e.to_string().contains("not writing to it"), "{e}");
        // A file shorter than its filesystem.
        let e = format!("{:#}", prove(&img[..], 8 << 20, &loc, uuid).unwrap_err());
        assert!(e.contains("16.0 MiB (16384 blocks of 1024 bytes) and the file 8.0 MiB"), "{e}");
        // A map that is right for the first block group and wrong after it: group 1's
        // backup superblock (block 8193) reads as something else.
        let mut wrong = img.clone();
        wrong.copy_within((2 << 20)..(3 << 20), 8 << 20);
        let e = format!("{:#}", prove(&wrong[..], img.len() as u64, &loc, uuid).unwrap_err());
        assert!(e.contains("backup superblock of block group 1 (byte 8389632"), "{e}");
    }
}
