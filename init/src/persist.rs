//! `iso.persist=`: an ext4 image file as the overlay's writable layer, so that changes
//! survive a reboot. Writing into a file on a filesystem that is not mounted is only safe
//! with an exact, current map of the file, so the map is always read at boot from the
//! filesystem itself (`scan`); hints given with `iso.persist.extents=` must agree with it.
//! And nothing is mounted writable before the image's own ext4 UUID matches
//! `iso.persist.uuid=`. Any doubt: boot without persistence and say why.

use crate::attach;
use crate::blockdev::BlockDev;
use crate::cmdline::{Cmdline, Extent, Location};
use crate::dm::Target;
use crate::locate::{self, Hardware};
use crate::mount::Linux;
use crate::scan;
use crate::superblock::{self, FsKind};
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;

const NAME: &str = "isoroot-persist";

/// The writable device that holds the persistence filesystem, or why there is none.
pub fn attach(
    sys: &mut Linux,
    c: &Cmdline,
    iso_source: Option<&BlockDev>,
    hw: &mut Hardware,
) -> Result<Option<PathBuf>> {
    let Some(loc) = &c.persist else { return Ok(None) };
    let Some(uuid) = &c.persist_uuid else {
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
    let targets = current_map(&source, loc, c.persist_extents.as_deref())?;
    let dev = sys.map_linear(NAME, &targets, true).context("creating the persistence device")?;
    // Read, never write, until the image proves to be the one named.
    let found =
        std::fs::File::open(&dev).map_err(anyhow::Error::from).and_then(|f| Ok(superblock::probe(&f)?));
    let found = match found {
        Ok(Some(fs)) if fs.kind == FsKind::Ext4 => fs.uuid.unwrap_or_default(),
        Ok(other) => {
            sys.unmap(NAME);
            bail!(
                "{loc} holds {}, not an ext4 filesystem",
                other.map_or("nothing isoroot knows", |f| f.kind.name())
            );
        }
        Err(e) => {
            sys.unmap(NAME);
            return Err(e.context(format!("reading {loc}")));
        }
    };
    if !found.eq_ignore_ascii_case(uuid) {
        sys.unmap(NAME);
        bail!("{loc} has ext4 UUID {found}, iso.persist.uuid= says {uuid}: not writing to it");
    }
    Ok(Some(dev))
}

/// The persistence file's map, read now from its filesystem.
fn current_map(source: &BlockDev, loc: &Location, hints: Option<&[Extent]>) -> Result<Vec<Target>> {
    let kind = source.fs.as_ref().map(|f| f.kind).ok_or_else(|| anyhow!("{source} has no filesystem"))?;
    let file =
        std::fs::File::open(&source.path).with_context(|| format!("opening {}", source.path.display()))?;
    let map = scan::map(&file, kind, &loc.path).map_err(|e| {
        anyhow!("{source}: {e} (isoroot maps persistence files on clean ext4, FAT, exFAT and NTFS only)")
    })?;
    let now = attach::sectors(&map.runs).ok_or_else(|| {
        anyhow!(
            "{} is sparse (or preallocated but unwritten): writes there would be lost to the host; copy it \
             densely: cp --sparse=never IMG NEW && mv NEW IMG",
            loc.path
        )
    })?;
    if let Some(hints) = hints {
        attach::same_sectors(hints, &now).with_context(|| {
            format!(
                "iso.persist.extents= is not where {} lies now: stale hints, and a stale map is never written \
                 to; run `isoroot extents` again",
                loc.path
            )
        })?;
    }
    let (major, minor) = attach::dev_numbers(source)?;
    attach::table(&now, major, minor, source.size / 512)
}
