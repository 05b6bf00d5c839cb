//! The boot flow (docs/architecture.md) as one function that either execs the new
//! root's init or returns why it could not.

use crate::attach::{self, Attached};
use crate::blockdev::{BlockDev, Devices};
use crate::cmdline::{self, Ask, Cmdline, Iso, Mode};
use crate::devices::Hardware;
use crate::dm::{self, Target};
use crate::liveroot::{self, MountedIso, Upper, MEDIUM, NEWROOT};
use crate::modules::Modules;
use crate::mount::{Linux, Sys};
use crate::{handoff, net, persist, picker, profile, rescue, switchroot, timings, toram};
use anyhow::{anyhow, bail, Context, Result};
use isoroot_profiles::layout::MODULE_LIST;
use isoroot_profiles::{Profile, Strategy};
use nix::mount::MsFlags;
use std::convert::Infallible;
use std::path::Path;

const STATE: &str = "/run/isoroot/state";

/// Where isoroot runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// PID 1 of the initramfs: it switches root (or hands off) itself.
    Pid1,
    /// A program in dracut's initramfs (dracut-module/90isoroot): it mounts the live root
    /// where dracut says, and dracut, which already runs the distro's initrd, switches root.
    Dracut,
}

/// What [`assemble`] got ready.
enum Assembled {
    /// The live root is mounted on the new root and has this init.
    Root { init: String, rescue: bool },
    /// The distro's initrd takes the attached ISO from here.
    HandOff { attached: Box<Attached>, profile: String },
}

/// Whether to hand the ISO to the distro's initrd: `iso.mode=` decides, else the profile,
/// as long as there is a distro initrd to hand it to.
fn hands_off(c: &Cmdline, profile: &Profile, role: Role) -> Result<bool> {
    if role == Role::Dracut {
        // Already inside the distro's initrd: its hooks run after the root is mounted.
        return Ok(false);
    }
    let present = handoff::distro_init_present();
    match c.mode {
        Some(Mode::SwitchRoot) => Ok(false),
        Some(Mode::Handoff) if present => Ok(true),
        Some(Mode::Handoff) => bail!(
            "iso.mode=handoff needs the distro's initrd, and this initramfs has only isoroot: load the \
             ISO's own initrd before isoroot's archive (isoroot mkinitramfs --no-modules) and boot with \
             rdinit=/isoroot/init"
        ),
        None if profile.strategy == Strategy::Handoff && !present => {
            crate::warn!(
                "profile {} hands off to the distro's own initrd, which this initramfs lacks; switching \
                 root instead, without the distro's initrd work (combined boot: README)",
                profile.name
            );
            Ok(false)
        }
        None => Ok(profile.strategy == Strategy::Handoff),
    }
}

/// Modules that failed to load are the likeliest reason a device never shows up.
fn with_module_failures(e: anyhow::Error, modules: &Modules) -> anyhow::Error {
    if modules.failed.is_empty() {
        return e;
    }
    anyhow!("{e:#}\nkernel modules that failed to load:\n  {}", modules.failed.join("\n  "))
}

/// What the command line says to boot.
enum Wanted {
    Iso(Iso),
    /// `iso=ask`: the picker asks.
    Ask(Ask),
}

/// The kernel command line with its map file applied, and the ISO it names (or `iso=ask`);
/// the console takes its verbosity from it.
fn read_cmdline() -> Result<(Cmdline, Wanted)> {
    let raw = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let mut cmdline = cmdline::parse(raw.trim_end())
        .map_err(|e| anyhow!("{e}\nthe command line was: {}", raw.trim_end()))?;
    if let Some(map) = cmdline.map.clone() {
        let text = std::fs::read_to_string(&map).with_context(|| {
            format!(
                "reading iso.map={map}: load the archive `isoroot extents --cpio` wrote as an extra initrd"
            )
        })?;
        cmdline.apply_map(&text).with_context(|| format!("in {map}"))?;
    }
    crate::console::configure(cmdline.debug, cmdline.quiet);
    for note in &cmdline.notes {
        crate::info!("{note}");
    }
    if let Some(ask) = cmdline.ask.clone() {
        return Ok((cmdline, Wanted::Ask(ask)));
    }
    let Some(iso) = cmdline.iso.clone() else {
        bail!(
            "no ISO named on the kernel command line: expected iso=[SOURCE:]/PATH or iso=http(s)://… or \
             iso=nbd://…, or iso=ask for a menu of the ISOs on every disk (or findiso=, iso-scan/filename=, \
             img_dev=+img_loop=, isofrom_device=+isofrom_system=)\n\
             the command line was: {}",
            raw.trim_end()
        );
    };
    Ok((cmdline, Wanted::Iso(iso)))
}

/// The ISO as a block device, from a disk or a server, copied to RAM when asked.
fn attach_iso(sys: &mut dyn Sys, cmdline: &Cmdline, iso: &Iso, hw: &mut Hardware) -> Result<Attached> {
    let name = iso.to_string();
    let attached = match iso {
        Iso::Remote(url) => net::attach(sys, cmdline, url, hw),
        Iso::File(loc) => attach::attach(sys, cmdline, loc, hw),
    };
    let mut attached = attached.map_err(|e| with_module_failures(e, &hw.modules))?;
    // An ISO from a web server is in RAM already; one from NBD or a disk is copied.
    let in_ram = matches!(iso, Iso::Remote(u) if u.scheme != net::url::Scheme::Nbd);
    if cmdline.toram && !in_ram {
        attached = toram::copy(sys, attached, &name, cmdline.sha256.as_ref())?;
    }
    match &attached.source {
        Some(dev) => crate::info!("found {name} on {dev}: {}", attached.how),
        None => crate::info!("found {name}: {}", attached.how),
    }
    Ok(attached)
}

/// `/dev/mapper/isoroot-data` ([`dm::DATA_DEVICE`]): the device that holds the ISO, whole and
/// read-only, so that the live system can mount it (the ISO's own map holds the device's
/// node: "device busy"). A failure here costs the live system that device, not the boot.
fn data_device(sys: &mut dyn Sys, dev: &BlockDev) {
    let made = dev.under().and_then(|u| {
        let whole = Target::Linear { major: u.major, minor: u.minor, start: 0, sectors: u.sectors };
        sys.map_linear(dm::DATA_DEVICE, &[whole], false)
            .with_context(|| format!("creating /dev/mapper/{} over {dev}", dm::DATA_DEVICE))
    });
    match made.and_then(|node| {
        dm::udev_record(&node).with_context(|| format!("recording {} for udev", node.display()))?;
        Ok(node)
    }) {
        Ok(node) => {
            crate::info!(
                "{} is {}, read-only, for the live system to mount",
                node.display(),
                dev.path.display()
            )
        }
        Err(e) => crate::warn!("{e:#}"),
    }
}

/// The overlay's writable layer: the persistence image when there is a good one, else tmpfs.
fn upper(sys: &mut dyn Sys, cmdline: &Cmdline, attached: &Attached, hw: &mut Hardware) -> Upper {
    match persist::attach(sys, cmdline, attached.source.as_ref(), hw) {
        Ok(Some(dev)) => {
            crate::info!("persistence: {}", dev.display());
            Upper::Ext4(dev)
        }
        Ok(None) => Upper::Tmpfs(cmdline.overlay_size.clone()),
        Err(e) => {
            crate::warn!("iso.persist: {e:#}\nbooting without persistence: changes stay in RAM");
            Upper::Tmpfs(cmdline.overlay_size.clone())
        }
    }
}

/// The boot up to the new root: attach the ISO, pick the profile, mount the live root on
/// `newroot` (or decide to hand off).
fn assemble(sys: &mut dyn Sys, newroot: &Path, role: Role) -> Result<Assembled> {
    timings::restart();
    let (mut cmdline, wanted) = read_cmdline()?;
    let profiles = profile::load()?;
    timings::mark("setup");

    let modules = Modules::open();
    crate::debug!("{} modules in the index", modules.count());
    // Filesystem and device-mapper modules load while the storage drivers find the disk.
    let loading = Some(modules.load_list_in_background(Path::new(MODULE_LIST)));
    let mut hw = Hardware { modules, devices: Devices::default(), loading };
    let iso = match wanted {
        Wanted::Iso(iso) => iso,
        Wanted::Ask(ask) => {
            let choice = picker::pick(&cmdline, &ask, &profiles, &mut hw)?;
            // Includes the time the person took to choose.
            timings::mark("picker");
            cmdline.init = cmdline.init.take().or(choice.init);
            Iso::File(choice.loc)
        }
    };
    let attached = attach_iso(sys, &cmdline, &iso, &mut hw)?;
    let name = iso.to_string();
    timings::mark("attach");

    let medium = Path::new(MEDIUM);
    sys.mkdir_all(medium).context("creating the medium mount point")?;
    let (fstype, dev) = (attached.iso.fstype, &attached.dev);
    sys.mount(&dev.to_string_lossy(), medium, fstype, MsFlags::MS_RDONLY, "")
        .with_context(|| format!("mounting {name} ({fstype}, {}) on {MEDIUM}", dev.display()))
        .map_err(|e| with_module_failures(e, &hw.modules))?;
    timings::mark("mount ISO");

    let plan = liveroot::choose(
        &profiles,
        cmdline.profile.as_deref(),
        &MountedIso { root: medium, cmdline: &cmdline, label: attached.iso.label.as_deref() },
    )?;
    let label = attached.iso.label.as_deref().unwrap_or("no label");
    crate::info!("{name} ({label}): profile {}, {} root image(s)", plan.profile.name, plan.layers.len());
    if hands_off(&cmdline, &plan.profile, role)? {
        timings::mark("profile");
        return Ok(Assembled::HandOff { attached: Box::new(attached), profile: plan.profile.name });
    }
    let init = match (&cmdline.init, &plan.profile.init) {
        (Some(init), _) | (None, Some(init)) => init.clone(),
        (None, None) => bail!(
            "profile {} takes the init from init= on the command line, and there is none: use the \
             ISO's own boot entry, which names it (NixOS: init=/nix/store/…-nixos-system-…/init)",
            plan.profile.name
        ),
    };
    let upper = upper(sys, &cmdline, &attached, &mut hw);
    liveroot::mount_root(sys, &plan, &attached.dev, &upper, newroot)
        .map_err(|e| with_module_failures(e, &hw.modules))?;
    write_state(&cmdline, &plan, &attached)?;
    // Only for a root isoroot builds: a distro's own initrd would find it on its search for
    // media and persistence files, which expects a device it may write.
    if let (Some(dev), true) = (&attached.source, attached.source_unmounted) {
        data_device(sys, dev);
    }
    switchroot::check_init(newroot, &init)?;
    sys.keep();
    timings::mark("mount root");
    Ok(Assembled::Root { init, rescue: cmdline.rescue })
}

fn write_timings() {
    if let Err(e) = timings::write() {
        crate::warn!("{e:#}");
    }
}

/// PID 1's boot: it ends in the live root's init or the distro's initrd, or returns why not.
pub fn boot(sys: &mut dyn Sys) -> Result<Infallible> {
    let newroot = Path::new(NEWROOT);
    let (init, rescue) = match assemble(sys, newroot, Role::Pid1)? {
        Assembled::HandOff { attached, profile } => {
            write_timings();
            return handoff::hand_off(sys, &attached, &profile);
        }
        Assembled::Root { init, rescue } => (init, rescue),
    };
    if rescue {
        rescue::shell(&format!("iso.rescue: the new root is ready at {NEWROOT}; `exit` goes on to {init}"));
    }
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if switchroot::is_systemd(newroot, &init) {
        args.extend(timings::systemd_args()?);
    }
    write_timings();
    crate::info!("starting {init}");
    switchroot::switch_root(newroot, &init, &args)
}

/// dracut's mount hook: the live root mounted on `newroot`, for dracut to switch to.
pub fn mount_only(newroot: &Path) -> Result<()> {
    let mut sys = Linux::default();
    match assemble(&mut sys, newroot, Role::Dracut) {
        Ok(Assembled::Root { init, .. }) => {
            write_timings();
            crate::info!("the live root is on {}; dracut goes on to {init}", newroot.display());
            Ok(())
        }
        // hands_off() says no in dracut's initramfs, whose distro initrd is already running.
        Ok(Assembled::HandOff { .. }) => {
            sys.undo();
            bail!("isoroot cannot hand off from inside dracut's initramfs")
        }
        Err(e) => {
            sys.undo();
            Err(e)
        }
    }
}

/// What isoroot did, for the booted system and for tests: `key=value` lines.
fn write_state(c: &Cmdline, plan: &liveroot::Plan, attached: &Attached) -> Result<()> {
    let layers: Vec<String> = plan
        .layers
        .iter()
        .filter_map(|l| l.file_name())
        .map(|n| plan.profile.layer_mount(&n.to_string_lossy()))
        .collect();
    let state = format!(
        "profile={}\niso={}\ndevice={}\nattach={}\nmedium={}\nlayers={}\n",
        plan.profile.name,
        c.iso_name().unwrap_or_default(),
        attached.source.as_ref().map(|s| s.path.display().to_string()).unwrap_or_default(),
        attached.dev.display(),
        plan.profile.medium,
        layers.join(":")
    );
    std::fs::write(STATE, state).with_context(|| format!("writing {STATE}"))
}
