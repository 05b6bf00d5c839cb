//! `iso.toram`: copy the ISO into RAM, then let go of the boot device entirely (no mount,
//! no loop, no dm device on it), so that it can be pulled out once the system is up.

use crate::attach::Attached;
use crate::loopdev::Window;
use crate::meminfo;
use crate::mount::Sys;
use crate::verify;
use anyhow::{Context, Result};
use isoroot_fs::human_size;
use sha2::{Digest, Sha256};
use std::io::{Seek, SeekFrom, Write};

/// The copy, in /run (a tmpfs that moves into the new root, where it stays visible).
pub const COPY: &str = "/run/isoroot/ram.iso";
/// Left free after the copy, for the overlay and the system's first steps.
pub const MARGIN: u64 = 128 << 20;

/// Creates [`COPY`], ready to be written.
pub fn create_copy() -> Result<std::fs::File> {
    if let Some(dir) = std::path::Path::new(COPY).parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::File::create(COPY).with_context(|| format!("creating {COPY}"))
}

/// Copies the attached ISO to RAM and re-attaches it from there, checking `sha256` on the
/// way ([`crate::attach::check_image`] left it for this one read). When RAM is short it says
/// so, checks the sum on the device, and returns the ISO as it was: the boot goes on from
/// the device.
pub fn copy(
    sys: &mut dyn Sys,
    attached: Attached,
    name: &str,
    sha256: Option<&[u8; 32]>,
) -> Result<Attached> {
    let mut dev =
        std::fs::File::open(&attached.dev).with_context(|| format!("opening {}", attached.dev.display()))?;
    let len = dev.seek(SeekFrom::End(0))?;
    dev.seek(SeekFrom::Start(0))?;
    let free = meminfo::free_ram()?;
    if len.saturating_add(MARGIN) > free {
        crate::warn!(
            "iso.toram: {name} needs {} of RAM and {} more to run, {} is free: booting from the device instead",
            human_size(len),
            human_size(MARGIN),
            human_size(free)
        );
        if let Some(want) = sha256 {
            verify::sha256(&dev, len, want, name)?;
        }
        return Ok(attached);
    }
    let mut out = create_copy()?;
    let mut hasher = Sha256::new();
    let copied = crate::progress::stream(&dev, len, &format!("copying {name} to RAM"), |piece| {
        if sha256.is_some() {
            hasher.update(piece);
        }
        out.write_all(piece).with_context(|| format!("writing {COPY}"))
    });
    let checked = copied.and_then(|()| match sha256 {
        Some(want) => verify::expect(want, &hasher.finalize().into(), name),
        None => Ok(()),
    });
    if let Err(e) = checked {
        let _ = std::fs::remove_file(COPY);
        return Err(e);
    }
    drop(dev);
    // Everything this boot holds so far is on the boot device: the dm or loop device and,
    // on the loop path, the read-only mount.
    sys.undo();
    let ram = sys
        .attach_loop(std::path::Path::new(COPY), Window::default())
        .context("attaching the copy in RAM")?;
    match &attached.source {
        Some(dev) => crate::info!("{name} is in RAM; {} can be removed", dev.path.display()),
        None => crate::info!("{name} is in RAM"),
    }
    // The disk is let go of: nothing to offer the live system from it.
    Ok(Attached {
        dev: ram,
        how: format!("{}, copied to RAM", attached.how),
        source_unmounted: false,
        ..attached
    })
}
