//! The handoff strategy (design: shared/distros.md): for families whose root depends on
//! their own initramfs (casper makes the live user there), isoroot only finds and attaches
//! the ISO, exposes it as `/dev/mapper/isoroot` — an ISO 9660 block device, as a CD would be
//! — and execs the distro's `/init`, whose own command line tokens
//! (`live-media=/dev/mapper/isoroot`, `root=live:/dev/mapper/isoroot`) point at it.

use crate::attach::Attached;
use crate::dm::{self, Target};
use crate::liveroot::MEDIUM;
use crate::mount::Sys;
use anyhow::{anyhow, bail, Context, Result};
use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const DISTRO_INIT: &str = "/init";

/// Whether a distro's own `/init` is in the initramfs (the combined boot, isoroot started
/// by `rdinit=/isoroot/init`), rather than isoroot's standalone `/init` link to itself.
pub fn distro_init_present() -> bool {
    let canon = |p: &str| std::fs::canonicalize(p).ok();
    match (canon(DISTRO_INIT), std::env::current_exe().ok().and_then(|e| std::fs::canonicalize(e).ok())) {
        (Some(init), Some(me)) => init != me,
        _ => false,
    }
}

/// Maps the attached ISO as `/dev/mapper/isoroot`, puts the API filesystems back the way the
/// kernel left them (but /dev, which holds the node: there is no udev yet to make it) and
/// execs the distro's `/init` with isoroot's own arguments.
pub fn hand_off(sys: &mut dyn Sys, attached: &Attached, profile: &str) -> Result<Infallible> {
    sys.umount(Path::new(MEDIUM)).with_context(|| format!("unmounting {MEDIUM}"))?;
    let meta =
        std::fs::metadata(&attached.dev).with_context(|| format!("reading {}", attached.dev.display()))?;
    let (major, minor) =
        (nix::sys::stat::major(meta.rdev()) as u32, nix::sys::stat::minor(meta.rdev()) as u32);
    let size = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/size"))
        .with_context(|| format!("reading the size of {}", attached.dev.display()))?;
    let sectors: u64 =
        size.trim().parse().map_err(|_| anyhow!("odd size {size:?} of {}", attached.dev.display()))?;
    let node = sys
        .map_linear(dm::HANDOFF_DEVICE, &[Target::Linear { major, minor, start: 0, sectors }], false)
        .with_context(|| {
            format!("creating /dev/mapper/{} over {}", dm::HANDOFF_DEVICE, attached.dev.display())
        })?;
    sys.keep();
    if let Err(e) = dm::udev_record(&node) {
        crate::warn!("{}: no udev record ({e}); a udev-based initrd may not see the device", node.display());
    }
    crate::info!("profile {profile}: handing {} to the distro's {DISTRO_INIT}", node.display());
    // The kernel's default, which the distro's init expects to find.
    let _ = nix::sys::reboot::set_cad_enabled(true);
    for api in ["/proc", "/sys"] {
        let _ = nix::mount::umount2(api, nix::mount::MntFlags::MNT_DETACH);
    }
    let argv: Vec<CString> = std::iter::once(DISTRO_INIT.to_string())
        .chain(std::env::args().skip(1))
        .map(|a| CString::new(a).context("an init argument holds a NUL byte"))
        .collect::<Result<_>>()?;
    let err = nix::unistd::execv(&argv[0], &argv).unwrap_err();
    bail!("executing the distro's {DISTRO_INIT}: {err}")
}
