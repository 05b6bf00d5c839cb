//! Attaching the ISO (docs/architecture.md, step 4): make it a block device, never
//! mounting the filesystem that holds it when that can be avoided. In order:
//! (a) extent hints (`iso.extents=` or `iso.map=`), used only when they are the file's
//!     allocation now (or, on filesystems isoroot cannot read, their fingerprint samples
//!     every extent), and checked by their fingerprint;
//! (b) the file's allocation read from the filesystem in user space (`scan`), checked by
//!     the ISO's volume descriptor and size;
//! (c) the filesystem mounted read-only and the file on a read-only loop device.
//! (a) and (b) give a read-only dm-linear device. A step that cannot prove its result says
//! why and the next one is tried; `iso.attach=` forces one.

use crate::blockdev::BlockDev;
use crate::cmdline::{Attach, Cmdline};
use crate::devices::Hardware;
use crate::dm::{self, Target};
use crate::locate;
use crate::loopdev::Window;
use crate::mount::Sys;
use crate::verify;
use anyhow::{anyhow, bail, Context, Result};
use isoroot_fs::extents::{self, Covers, Extent, Fingerprint};
use isoroot_fs::filemap::{self, ScanError};
use isoroot_fs::iso9660::{self, IsoInfo};
use isoroot_fs::location::Location;
use isoroot_fs::superblock::FsKind;
use std::fs::File;
use std::path::PathBuf;

pub struct Attached {
    /// The ISO as a block device.
    pub dev: PathBuf,
    pub iso: IsoInfo,
    /// The device that holds the file; None for an ISO from the network.
    pub source: Option<BlockDev>,
    /// Whether `source` is left unmounted (a dm-linear map of the file): the live system
    /// can then have the whole device too ([`dm::DATA_DEVICE`]).
    pub source_unmounted: bool,
    pub how: String,
}

/// What every way of attaching checks: a whole ISO, and its sha256 when one was given, unless
/// `iso.toram` will hash it while it copies (one read, and the copy is what was checked).
pub(crate) fn check_image(file: &File, len: u64, c: &Cmdline, name: &str) -> Result<IsoInfo> {
    let iso = iso9660::check(file, len, name)?;
    check_sum(file, len, c, name)?;
    Ok(iso)
}

/// The sha256 part of [`check_image`].
fn check_sum(file: &File, len: u64, c: &Cmdline, name: &str) -> Result<()> {
    match (&c.sha256, c.toram) {
        (Some(want), false) => verify::sha256(file, len, want, name),
        _ => Ok(()),
    }
}

/// Why [`map_checked`] failed: the device could not be made (a kernel without the target),
/// or it was made and did not hold the ISO.
enum MapError {
    Create(anyhow::Error),
    Check(anyhow::Error),
}

impl From<MapError> for anyhow::Error {
    fn from(e: MapError) -> Self {
        match e {
            MapError::Create(e) | MapError::Check(e) => e,
        }
    }
}

/// Creates the dm device, runs `check` on it, and removes it again when the check fails.
fn map_checked(
    sys: &mut dyn Sys,
    name: &str,
    targets: &[Target],
    check: impl FnOnce(&File) -> Result<IsoInfo>,
) -> Result<(PathBuf, IsoInfo), MapError> {
    let dev = sys.map_linear(name, targets, false).map_err(|e| {
        let holes = targets.iter().any(|t| matches!(t, Target::Zero { .. }));
        let hint = if holes { " (the file has holes: is dm-zero in the initrd?)" } else { "" };
        MapError::Create(anyhow!("creating the dm-linear device {name}: {e}{hint}"))
    })?;
    let checked =
        File::open(&dev).with_context(|| format!("opening {}", dev.display())).and_then(|f| check(&f));
    match checked {
        Ok(iso) => Ok((dev, iso)),
        Err(e) => {
            sys.unmap(name);
            Err(MapError::Check(e))
        }
    }
}

/// Why hints can be trusted to name the file's own sectors, said before anything is mapped.
/// A copied-then-deleted file keeps its contents on freed sectors until another file takes
/// them, so no fingerprint of the ends can tell stale hints from good ones: where isoroot
/// reads the file's allocation, the hints must be that allocation now; elsewhere (block-mapped
/// ext2/ext3 files, unclean filesystems, filesystems isoroot does not read) only a
/// fingerprint that samples every extent is accepted.
fn trust_hints(source: &BlockDev, path: &str, hints: &[Extent], print: &Fingerprint) -> Result<String> {
    let kind = source.fs.as_ref().map(|f| f.kind);
    let unreadable = match kind {
        Some(kind @ (FsKind::Ext4 | FsKind::Vfat | FsKind::Exfat | FsKind::Ntfs)) => {
            let fs = kind.name();
            let dev =
                File::open(&source.path).with_context(|| format!("opening {}", source.path.display()))?;
            match filemap::map(&dev, kind, path) {
                Ok(map) => {
                    let now = dm::sectors(&map.runs)
                        .ok_or_else(|| anyhow!("{path} on {source} has holes now, and hints have none"))?;
                    dm::same_sectors(hints, &now).with_context(|| {
                        format!(
                            "iso.extents= is not where {path} lies in the {fs} allocation on {source}: the file \
                             was moved, copied or rewritten since the hints were made, and the sectors they name \
                             may belong to another file now (run `isoroot extents` again)"
                        )
                    })?;
                    return Ok(format!("they match the {fs} allocation"));
                }
                // What the reader cannot follow, or will not trust for a map of its own (a
                // journal to replay, a dirty flag): the hints' own fingerprint must do.
                Err(e @ ScanError::Unclean(_)) => e.to_string(),
                Err(ScanError::Unsupported(why)) => why,
                Err(e) => bail!("they cannot be checked against the {fs} allocation on {source}: {e}"),
            }
        }
        _ => format!("isoroot does not read the allocation of the filesystem on {source}"),
    };
    match print.covers {
        Covers::Extents => Ok(format!("its fingerprint samples every extent: {unreadable}")),
        Covers::Ends => bail!(
            "{unreadable}, and iso.fingerprint=sha256: covers only the file's ends, which a deleted copy leaves \
             on freed sectors; run `isoroot extents` again for a sha256-extents: fingerprint"
        ),
    }
}

/// (a): maps the file by its extents once [`trust_hints`] says they are its own, and proves
/// the mapping: fingerprint, then the ISO's own volume descriptor and size.
fn by_hints(sys: &mut dyn Sys, c: &Cmdline, loc: &Location, hw: &mut Hardware) -> Result<Attached> {
    let Some(extents) = c.extents.as_deref() else {
        bail!(
            "no extent hints on the command line: iso.extents= and iso.fingerprint= (as `isoroot extents FILE` \
             prints them), or iso.map="
        );
    };
    let Some(src) = &loc.source else {
        bail!("extent hints need a SOURCE in iso= (which device do the sectors belong to?)");
    };
    let Some(want) = c.fingerprint else {
        bail!(
            "iso.extents= without iso.fingerprint= cannot be checked, and an unchecked map is never trusted"
        );
    };
    let source = locate::wait_for_device(src, c.timeout, hw)?;
    let why = trust_hints(&source, &loc.path, extents, &want)?;
    let under = source.under()?;
    let targets = dm::table(extents, &under)?;
    let lens: Vec<u64> = extents.iter().map(|e| e.sectors * 512).collect();
    let len: u64 = lens.iter().sum();
    let dm_name = dm::name_for(&loc.path);
    let (dev, iso) = map_checked(sys, &dm_name, &targets, |file| {
        let got = extents::fingerprint(file, len, want.covers, &lens).context("reading the mapped device")?;
        if got != want {
            bail!(
                "the mapped sectors have fingerprint {got}, iso.fingerprint= says {want}: the file moved or \
                 changed since the hints were made (run `isoroot extents` again)"
            );
        }
        check_image(file, len, c, &loc.to_string())
    })?;
    let how = format!("dm-linear from extent hints ({why})");
    let (dev, how) = for_isofs(sys, (&dm_name, dev), len, under.block, how)?;
    Ok(Attached { dev, iso, source: Some(source), source_unmounted: true, how })
}

/// Why a scan cannot help, and whether the loop path could (a missing file is missing
/// either way).
enum ScanFailure {
    Final(anyhow::Error),
    TryLoop(anyhow::Error),
}

/// (b): reads the file's allocation from the filesystem on the device.
fn by_scan(
    sys: &mut dyn Sys,
    c: &Cmdline,
    loc: &Location,
    hw: &mut Hardware,
) -> Result<Attached, ScanFailure> {
    use ScanFailure::{Final, TryLoop};
    let Some(src) = &loc.source else {
        return Err(TryLoop(anyhow!("without a SOURCE every filesystem is searched by mounting it")));
    };
    let source = locate::wait_for_device(src, c.timeout, hw).map_err(Final)?;
    let kind = source.fs.as_ref().map(|f| f.kind);
    let Some(kind @ (FsKind::Ext4 | FsKind::Vfat | FsKind::Exfat | FsKind::Ntfs)) = kind else {
        return Err(TryLoop(anyhow!(
            "{source}: isoroot reads the allocation of ext4, FAT, exFAT and NTFS only"
        )));
    };
    let file =
        File::open(&source.path).map_err(|e| TryLoop(anyhow!("opening {}: {e}", source.path.display())))?;
    let map = match filemap::map(&file, kind, &loc.path) {
        Ok(map) => map,
        Err(e @ ScanError::NotFound { .. }) => return Err(Final(anyhow!("{source} has {e}"))),
        Err(ScanError::NotAFile(p)) => {
            return Err(Final(anyhow!("{p} on {source} is a directory, not an ISO file")))
        }
        Err(e) => return Err(TryLoop(anyhow!("{source}: {e}"))),
    };
    let name = loc.to_string();
    iso9660::check_len(map.size, &name).map_err(Final)?;
    let under = source.under().map_err(TryLoop)?;
    let targets = dm::scan_table(&map.runs, &under).map_err(TryLoop)?;
    // A map that holds no ISO may be a misreading of this filesystem (a feature the reader
    // does not know it should refuse): the kernel's driver gets to read the file too. A sum
    // that differs is the file's own and final.
    let dm_name = dm::name_for(&loc.path);
    let (dev, iso) = map_checked(sys, &dm_name, &targets, |f| iso9660::check(f, map.size, &name)).map_err(
        |e| match e {
            MapError::Create(e) => TryLoop(e),
            MapError::Check(e) => TryLoop(e.context(format!(
                "what the {} scan mapped for {} is no ISO (isoroot's reader may have misread the filesystem)",
                kind.name(),
                loc.path
            ))),
        },
    )?;
    let summed = File::open(&dev)
        .with_context(|| format!("opening {}", dev.display()))
        .and_then(|f| check_sum(&f, map.size, c, &name));
    if let Err(e) = summed {
        sys.unmap(&dm_name);
        return Err(Final(e));
    }
    let how = format!("dm-linear from a scan of {} ({} runs)", kind.name(), map.runs.len());
    let (dev, how) = for_isofs(sys, (&dm_name, dev), map.size, under.block, how).map_err(TryLoop)?;
    Ok(Attached { dev, iso, source: Some(source), source_unmounted: true, how })
}

/// On a device whose sectors (`block` bytes) are larger than 512 bytes (a 4Kn disk) the dm
/// device may end past the ISO (its last sector whole, see [`dm::table`]), and isofs refuses sectors
/// larger than its 2048-byte blocks: there the ISO is read through a loop device of exactly
/// `len` bytes and 512-byte sectors over the dm device `mapped` (name, node), which goes
/// again if that fails.
fn for_isofs(
    sys: &mut dyn Sys,
    mapped: (&str, PathBuf),
    len: u64,
    block: u64,
    how: String,
) -> Result<(PathBuf, String)> {
    let (name, dev) = mapped;
    if block <= 512 {
        return Ok((dev, how));
    }
    match sys.attach_loop(&dev, Window { offset: 0, size: len }) {
        Ok(looped) => Ok((looped, format!("{how}, read through a loop device ({block}-byte sectors)"))),
        Err(e) => {
            sys.unmap(name);
            Err(anyhow!(e).context(format!("attaching {} to a loop device", dev.display())))
        }
    }
}

/// (c): the file in the read-only mounted filesystem, on a read-only loop device.
fn by_loop(sys: &mut dyn Sys, c: &Cmdline, loc: &Location, hw: &mut Hardware) -> Result<Attached> {
    let found = locate::locate(sys, loc, c.timeout, hw)?;
    let name = loc.to_string();
    let file = File::open(&found.file).with_context(|| format!("opening {name}"))?;
    let len = file.metadata().with_context(|| format!("reading the size of {name}"))?.len();
    let iso = check_image(&file, len, c, &name)?;
    let dev = sys
        .attach_loop(&found.file, Window::default())
        .with_context(|| format!("attaching {name} to a loop device"))?;
    Ok(Attached {
        dev,
        iso,
        source: Some(found.dev),
        source_unmounted: false,
        how: "loop device on the read-only mounted file".into(),
    })
}

pub fn attach(sys: &mut dyn Sys, c: &Cmdline, loc: &Location, hw: &mut Hardware) -> Result<Attached> {
    match c.attach {
        Some(Attach::Loop) => return by_loop(sys, c, loc, hw),
        Some(Attach::Hints) => return by_hints(sys, c, loc, hw).context("iso.attach=hints"),
        Some(Attach::Scan) => {
            return by_scan(sys, c, loc, hw)
                .map_err(|(ScanFailure::Final(e) | ScanFailure::TryLoop(e))| e.context("iso.attach=scan"))
        }
        None => {}
    }
    if c.extents.is_some() {
        match by_hints(sys, c, loc, hw) {
            Ok(a) => return Ok(a),
            Err(e) => crate::warn!("extent hints not used: {e:#}\nfalling back to a scan of the filesystem"),
        }
    }
    match by_scan(sys, c, loc, hw) {
        Ok(a) => return Ok(a),
        Err(ScanFailure::Final(e)) => return Err(e),
        Err(ScanFailure::TryLoop(e)) => {
            crate::info!("no dm-linear map: {e:#}; mounting it read-only instead")
        }
    }
    by_loop(sys, c, loc, hw)
}
