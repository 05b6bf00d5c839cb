//! Step 5: make the ISO a block device. With extent hints (`iso.extents=` or `iso.map=`)
//! and a fingerprint, a read-only dm-linear device over the boot device, without mounting
//! its filesystem; when the hints cannot be proven, or without them, a read-only loop
//! device on the file in the read-only mounted filesystem.

use crate::blockdev::BlockDev;
use crate::cmdline::{Attach, Cmdline, Extent, Location};
use crate::dm::Linear;
use crate::iso9660::{self, IsoInfo};
use crate::locate::{self, Hardware};
use crate::loopdev::Window;
use crate::mount::{Linux, Sys};
use crate::verify;
use anyhow::{anyhow, bail, Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};

pub struct Attached {
    /// The ISO as a block device.
    pub dev: PathBuf,
    pub iso: IsoInfo,
    /// The device that holds the file.
    pub source: BlockDev,
    pub how: &'static str,
}

/// The dm device's name: the ISO's file name, without what a device name cannot hold.
fn dm_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.strip_suffix(".iso").unwrap_or(file);
    let name: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .take(100)
        .collect();
    if name.is_empty() {
        "isoroot".into()
    } else {
        name
    }
}

/// The linear table for `extents` on a device of `dev_sectors` sectors.
fn table(extents: &[Extent], major: u32, minor: u32, dev_sectors: u64) -> Result<Vec<Linear>> {
    extents
        .iter()
        .map(|e| {
            if e.start + e.sectors > dev_sectors {
                bail!(
                    "the extent {}+{} ends past the device's {} sectors: the hints are for another device",
                    e.start,
                    e.sectors,
                    dev_sectors
                );
            }
            Ok(Linear { major, minor, start: e.start, sectors: e.sectors })
        })
        .collect()
}

fn dev_numbers(dev: &BlockDev) -> Result<(u32, u32)> {
    let text = std::fs::read_to_string(Path::new("/sys/class/block").join(&dev.name).join("dev"))
        .with_context(|| format!("reading the device number of {}", dev.path.display()))?;
    let (ma, mi) = text.trim().split_once(':').ok_or_else(|| anyhow!("odd device number {text:?}"))?;
    Ok((ma.parse()?, mi.parse()?))
}

/// What every way of attaching checks: a whole ISO, and its sha256 when one was given.
fn check_image(file: &File, len: u64, c: &Cmdline, name: &str) -> Result<IsoInfo> {
    let iso = iso9660::check(file, len, name)?;
    if let Some(want) = &c.sha256 {
        verify::sha256(file, len, want, name)?;
    }
    Ok(iso)
}

/// Maps the file by its extents and proves the mapping: fingerprint, then the ISO's own
/// volume descriptor and size.
fn by_hints(sys: &mut Linux, c: &Cmdline, loc: &Location, hw: &mut Hardware) -> Result<Attached> {
    let extents = c.extents.as_deref().unwrap_or_default();
    let Some(src) = &loc.source else {
        bail!("extent hints need a SOURCE in iso= (which device do the sectors belong to?)");
    };
    let Some(want) = c.fingerprint else {
        bail!(
            "iso.extents= without iso.fingerprint= cannot be checked, and an unchecked map is never trusted"
        );
    };
    let source = locate::wait_for_device(src, c.timeout, hw)?;
    let (major, minor) = dev_numbers(&source)?;
    let targets = table(extents, major, minor, source.size / 512)?;
    let name = dm_name(&loc.path);
    let dev =
        sys.map_linear(&name, &targets).with_context(|| format!("creating the dm-linear device {name}"))?;
    let checked = (|| {
        let file = File::open(&dev).with_context(|| format!("opening {}", dev.display()))?;
        let len: u64 = extents.iter().map(|e| e.sectors * 512).sum();
        let got = verify::fingerprint(&file, len).with_context(|| format!("reading {}", dev.display()))?;
        if got != want {
            bail!(
                "the mapped sectors have fingerprint sha256:{}, iso.fingerprint= says sha256:{}: the file moved or \
                 changed since the hints were made (run `isoroot extents` again)",
                verify::hex(&got),
                verify::hex(&want)
            );
        }
        check_image(&file, len, c, &loc.to_string())
    })();
    match checked {
        Ok(iso) => Ok(Attached { dev, iso, source, how: "dm-linear from extent hints" }),
        Err(e) => {
            sys.unmap(&name);
            Err(e)
        }
    }
}

/// The file in the read-only mounted filesystem, on a read-only loop device.
fn by_loop(sys: &mut Linux, c: &Cmdline, loc: &Location, hw: &mut Hardware) -> Result<Attached> {
    let found = locate::locate(sys, loc, c.timeout, hw)?;
    let name = loc.to_string();
    let file = File::open(&found.file).with_context(|| format!("opening {name}"))?;
    let len = file.metadata().with_context(|| format!("reading the size of {name}"))?.len();
    let iso = check_image(&file, len, c, &name)?;
    let dev = sys
        .attach_loop(&found.file, Window::default())
        .with_context(|| format!("attaching {name} to a loop device"))?;
    Ok(Attached { dev, iso, source: found.dev, how: "loop device on the read-only mounted file" })
}

pub fn attach(sys: &mut Linux, c: &Cmdline, loc: &Location, hw: &mut Hardware) -> Result<Attached> {
    match c.attach {
        Some(Attach::Loop) => {}
        Some(Attach::Hints) => return by_hints(sys, c, loc, hw).context("iso.attach=hints"),
        Some(Attach::Scan) | None => {}
    }
    if c.extents.is_some() {
        match by_hints(sys, c, loc, hw) {
            Ok(a) => return Ok(a),
            Err(e) => crate::warn!(
                "extent hints not used: {e:#}\nfalling back to a loop device on the mounted file"
            ),
        }
    }
    by_loop(sys, c, loc, hw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_names_come_from_the_file_name() {
        assert_eq!(dm_name("/isos/debian-live-12.iso"), "debian-live-12");
        assert_eq!(dm_name("/my isos/a b:c.iso"), "a_b_c");
        assert_eq!(dm_name("/.iso"), "isoroot");
    }

    #[test]
    fn extents_past_the_device_are_refused() {
        let e = [Extent { start: 100, sectors: 50 }];
        assert_eq!(
            table(&e, 254, 1, 150).unwrap(),
            [Linear { major: 254, minor: 1, start: 100, sectors: 50 }]
        );
        let err = table(&e, 254, 1, 149).unwrap_err().to_string();
        assert!(err.contains("ends past the device's 149 sectors"), "{err}");
    }
}
