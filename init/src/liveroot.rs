//! The live root (docs/architecture.md, step 6): pick the profile for the mounted ISO,
//! mount its root images and build the overlay that becomes `/`.

use crate::cmdline::Cmdline;
use crate::loopdev::Window;
use crate::mount::Sys;
use crate::paths;
use anyhow::{anyhow, bail, Context, Result};
use isoroot_fs::superblock::FsKind;
use isoroot_profiles::{Lookup, Match, Profile};
use nix::mount::MsFlags;
use std::path::{Path, PathBuf};

/// Where the ISO's filesystem is mounted first.
pub const MEDIUM: &str = "/run/isoroot/medium";
/// The new root; outside /run because /run is moved into it.
pub const NEWROOT: &str = "/newroot";

/// The chosen profile and its root images (files in the mounted ISO, bottom layer first).
#[derive(Debug)]
pub struct Plan {
    pub profile: Profile,
    pub layers: Vec<PathBuf>,
}

/// The mounted ISO as the profile rules see it.
pub struct MountedIso<'a> {
    pub root: &'a Path,
    pub cmdline: &'a Cmdline,
    pub label: Option<&'a str>,
}

impl MountedIso<'_> {
    fn host(&self, path: &str) -> Option<PathBuf> {
        paths::resolve_in(self.root, path).ok()
    }

    /// The ISO's top level, for the message when no profile matches.
    pub fn top_level(&self) -> Vec<String> {
        paths::nearest_listing(self.root, "/x").1
    }
}

impl Lookup for MountedIso<'_> {
    fn exists(&self, path: &str) -> bool {
        self.host(path).is_some_and(|p| p.exists())
    }
    fn list(&self, dir: &str) -> Vec<String> {
        let Some(dir) = self.host(dir) else { return Vec::new() };
        std::fs::read_dir(dir)
            .map(|it| it.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }
    fn cmdline(&self, key: &str) -> Option<String> {
        self.cmdline.get(key).map(String::from)
    }
    fn initrd_var(&self, file: &str, var: &str) -> Option<String> {
        let text = std::fs::read_to_string(file).ok()?;
        text.lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix(var)?.strip_prefix('='))
            .map(|v| v.trim_matches(['"', '\'']).to_string())
    }
    fn label(&self) -> Option<String> {
        self.label.map(String::from)
    }
}

/// Picks the forced or the first matching profile and resolves its layers.
pub fn choose(profiles: &[Profile], forced: Option<&str>, iso: &MountedIso) -> Result<Plan> {
    let resolve = |p: &Profile, layers: Vec<String>| -> Result<Plan> {
        let layers = layers
            .iter()
            .map(|l| paths::resolve_in(iso.root, l).with_context(|| format!("resolving {l} in the ISO")))
            .collect::<Result<_>>()?;
        Ok(Plan { profile: p.clone(), layers })
    };
    if let Some(name) = forced {
        let p = profiles.iter().find(|p| p.name == name).ok_or_else(|| {
            let known: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
            anyhow!("iso.profile={name}: no such profile; known: {}", known.join(", "))
        })?;
        return match p.layers(iso).map_err(|e| anyhow!("profile {name}: {e}"))? {
            Some(layers) => resolve(p, layers),
            None => {
                bail!("profile {name} (forced by iso.profile=) finds no root image in {} of this ISO", p.dir)
            }
        };
    }
    match isoroot_profiles::find(profiles, iso).map_err(|e| anyhow!(e))? {
        Match::Found(p, layers) => resolve(p, layers),
        Match::Unsupported(p) => bail!(
            "this ISO looks like {} (profile {}): {}",
            p.description,
            p.name,
            p.unsupported.as_deref().unwrap_or_default()
        ),
        Match::Nothing(tried) => bail!(
            "no profile matches this ISO\nits top level holds: {}\nprofiles tried: {}\n\
             force one with iso.profile=NAME, or add a profile to the initramfs (profiles/README.md)",
            isoroot_fs::pathwalk::sample(&iso.top_level()),
            tried.join("; ")
        ),
    }
}

/// The overlay's writable layer.
pub enum Upper {
    /// A tmpfs, of this size if given: changes last until power-off.
    Tmpfs(Option<String>),
    /// An ext4 filesystem on this device (persistence).
    Ext4(PathBuf),
}

/// Overlay options separate with `,` and `:`; a backslash escapes them.
fn escape(p: &Path) -> String {
    let mut s = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s
}

/// Attaches a root image to a loop device: at its offset on the ISO's device when it is
/// one run of sectors there, else on the file. Returns the device and the image's type.
fn attach_image(sys: &mut dyn Sys, file: &Path, iso_dev: Option<&Path>) -> Result<(PathBuf, FsKind)> {
    let kind = sys
        .probe(file)
        .with_context(|| format!("reading {}", file.display()))?
        .map(|f| f.kind)
        .filter(|k| matches!(k, FsKind::Squashfs | FsKind::Erofs | FsKind::Ext4))
        .ok_or_else(|| anyhow!("{} is not a squashfs, EROFS or ext4 image", file.display()))?;
    // A root image inside the ISO is one run of sectors: read it straight from the ISO's
    // device rather than through a second loop on a file in isofs.
    let on_device = iso_dev.and_then(|dev| sys.window_on_device(file).ok().flatten().map(|w| (dev, w)));
    let (backing, window) = on_device.unwrap_or((file, Window::default()));
    let dev = sys
        .attach_loop(backing, window)
        .with_context(|| format!("attaching {} to a loop device", file.display()))?;
    Ok((dev, kind))
}

fn mount_image(sys: &mut dyn Sys, file: &Path, dev: &Path, kind: FsKind, target: &Path) -> Result<()> {
    sys.mkdir_all(target).with_context(|| format!("creating {}", target.display()))?;
    // An ext4/ext3 root image is read-only here: never replay its journal.
    let data = if kind == FsKind::Ext4 { "noload" } else { "" };
    sys.mount(&dev.to_string_lossy(), target, kind.name(), MsFlags::MS_RDONLY, data).with_context(|| {
        format!(
            "mounting {} ({}, {}) on {}; is the image corrupt?",
            file.display(),
            kind.name(),
            dev.display(),
            target.display()
        )
    })
}

/// Where a profile's path goes: paths under /run move into the new root with /run; others
/// are made inside it.
fn place(newroot: &Path, path: &str) -> PathBuf {
    if path.starts_with("/run/") {
        PathBuf::from(path)
    } else {
        newroot.join(path.trim_start_matches('/'))
    }
}

/// Mounts one root image read-only where the profile puts it (or the image nested in it, or
/// the outer image itself when it nests none) and returns that place.
fn mount_layer(
    sys: &mut dyn Sys,
    p: &Profile,
    file: &Path,
    iso_dev: &Path,
    newroot: &Path,
) -> Result<PathBuf> {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "root".into());
    let (dev, kind) = attach_image(sys, file, Some(iso_dev))?;
    let target = place(newroot, &p.layer_mount(&name));
    if p.nested.is_empty() {
        mount_image(sys, file, &dev, kind, &target)?;
        return Ok(target);
    }
    let outer = place(newroot, &p.outer_mount(&name));
    mount_image(sys, file, &dev, kind, &outer)?;
    let nested = p.nested.iter().find_map(|n| {
        let f = paths::resolve_in(&outer, n).unwrap_or_else(|_| outer.join(n.trim_start_matches('/')));
        matches!(sys.probe(&f), Ok(Some(_))).then_some(f)
    });
    match nested {
        Some(inner) => {
            crate::debug!("{} holds the root image {}", file.display(), inner.display());
            let (dev, kind) = attach_image(sys, &inner, None)?;
            mount_image(sys, &inner, &dev, kind, &target)?;
        }
        None => {
            sys.mkdir_all(&target).with_context(|| format!("creating {}", target.display()))?;
            sys.move_mount(&outer, &target)
                .with_context(|| format!("moving {} to {}", outer.display(), target.display()))?;
        }
    }
    Ok(target)
}

/// The overlay's writable layer on `upper`: a tmpfs, or the persistence image.
fn mount_upper(sys: &mut dyn Sys, upper_layer: &Upper, upper: &Path) -> Result<()> {
    sys.mkdir_all(upper).with_context(|| format!("creating {}", upper.display()))?;
    match upper_layer {
        Upper::Tmpfs(size) => {
            let size = size.as_ref().map(|s| format!(",size={s}")).unwrap_or_default();
            sys.mount(
                "tmpfs",
                upper,
                "tmpfs",
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                &format!("mode=0755{size}"),
            )
            .with_context(|| format!("mounting the tmpfs for the overlay on {}", upper.display()))
        }
        Upper::Ext4(dev) => sys
            .mount(&dev.to_string_lossy(), upper, "ext4", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, "")
            .with_context(|| {
                format!("mounting the persistence image {} on {}", dev.display(), upper.display())
            }),
    }
}

/// Mounts each root image read-only (or the image nested in it), a tmpfs for the writable
/// layer, the overlay on `newroot` (or, for a tmpfs root, where the profile puts it), and
/// moves the medium where the profile exposes it.
pub fn mount_root(
    sys: &mut dyn Sys,
    plan: &Plan,
    iso_dev: &Path,
    upper_layer: &Upper,
    newroot: &Path,
) -> Result<()> {
    let p = &plan.profile;
    sys.mkdir_all(newroot).with_context(|| format!("creating {}", newroot.display()))?;
    let tmpfs_root = p.overlay_on != "/";
    if tmpfs_root {
        sys.mount("tmpfs", newroot, "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, "mode=0755")
            .with_context(|| format!("mounting the tmpfs root on {}", newroot.display()))?;
    }
    let mut lower = Vec::new();
    for file in &plan.layers {
        lower.push(mount_layer(sys, p, file, iso_dev, newroot)?);
    }
    let upper = place(newroot, &p.overlay_at);
    mount_upper(sys, upper_layer, &upper)?;
    let (rw, work) = (upper.join("rw"), upper.join("work"));
    for d in [&rw, &work] {
        sys.mkdir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // overlayfs stacks lowerdir left over right: the top layer comes first.
    let lowerdir: Vec<String> = lower.iter().rev().map(|l| escape(l)).collect();
    let data = format!("lowerdir={},upperdir={},workdir={}", lowerdir.join(":"), escape(&rw), escape(&work));
    let on = if tmpfs_root { place(newroot, &p.overlay_on) } else { newroot.to_path_buf() };
    if tmpfs_root {
        sys.mkdir_all(&on).with_context(|| format!("creating {}", on.display()))?;
    }
    sys.mount("overlay", &on, "overlay", MsFlags::empty(), &data)
        .with_context(|| format!("mounting the overlay ({data}) on {}", on.display()))?;
    if p.medium != MEDIUM {
        let target = place(newroot, &p.medium);
        sys.mkdir_all(&target).with_context(|| format!("creating {}", target.display()))?;
        sys.move_mount(Path::new(MEDIUM), &target)
            .with_context(|| format!("moving the medium to {}", target.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::recording::Recorder;

    fn builtin(name: &str) -> Profile {
        crate::profile::builtin().into_iter().find(|p| p.name == name).unwrap()
    }

    #[test]
    fn debian_live_mounts_like_live_boot() {
        let plan = Plan {
            profile: builtin("debian-live"),
            layers: vec!["/run/isoroot/medium/live/filesystem.squashfs".into()],
        };
        let mut sys = Recorder::default();
        mount_root(&mut sys, &plan, Path::new("/dev/mapper/debian"), &Upper::Tmpfs(None), Path::new(NEWROOT))
            .unwrap();
        assert_eq!(
            sys.calls,
            [
                "mkdir /newroot",
                "loop /dev/loop0 /dev/mapper/debian 1048576+4096",
                "mkdir /run/live/rootfs/filesystem.squashfs",
                "mount /dev/loop0 /run/live/rootfs/filesystem.squashfs squashfs ro",
                "mkdir /run/live/overlay",
                "mount tmpfs /run/live/overlay tmpfs mode=0755",
                "mkdir /run/live/overlay/rw",
                "mkdir /run/live/overlay/work",
                "mount overlay /newroot overlay lowerdir=/run/live/rootfs/filesystem.squashfs,upperdir=/run/live/overlay/rw,workdir=/run/live/overlay/work",
                "mkdir /run/live/medium",
                "move /run/isoroot/medium /run/live/medium",
            ]
        );
    }

    #[test]
    fn casper_layers_stack_top_first_and_cdrom_is_in_the_new_root() {
        let plan = Plan {
            profile: builtin("ubuntu-casper"),
            layers: ["minimal", "minimal.standard", "minimal.standard.live"]
                .iter()
                .map(|l| PathBuf::from(format!("/run/isoroot/medium/casper/{l}.squashfs")))
                .collect(),
        };
        let mut sys = Recorder::default();
        mount_root(
            &mut sys,
            &plan,
            Path::new("/dev/loop9"),
            &Upper::Tmpfs(Some("1G".into())),
            Path::new(NEWROOT),
        )
        .unwrap();
        let overlay = sys.calls.iter().find(|c| c.starts_with("mount overlay")).unwrap();
        assert!(overlay.contains(
            "lowerdir=/run/casper/layers/minimal.standard.live.squashfs:/run/casper/layers/minimal.standard.squashfs:/run/casper/layers/minimal.squashfs,"
        ), "{overlay}");
        assert!(sys.calls.contains(&"mount tmpfs /run/casper/overlay tmpfs mode=0755,size=1G".to_string()));
        assert_eq!(sys.calls.last().unwrap(), "move /run/isoroot/medium /newroot/cdrom");
    }

    #[test]
    fn generic_keeps_the_medium_where_it_is_and_escapes_odd_names() {
        let plan = Plan {
            profile: builtin("generic"),
            layers: vec!["/run/isoroot/medium/zisofs/a:b,c.squashfs".into()],
        };
        let mut sys = Recorder::default();
        mount_root(
            &mut sys,
            &plan,
            Path::new("/dev/loop9"),
            &Upper::Ext4("/dev/mapper/isoroot-persist".into()),
            Path::new(NEWROOT),
        )
        .unwrap();
        // Not contiguous: the loop is on the file.
        assert_eq!(sys.calls[1], "loop /dev/loop0 /run/isoroot/medium/zisofs/a:b,c.squashfs 0+0");
        assert!(sys
            .calls
            .contains(&"mount /dev/mapper/isoroot-persist /run/isoroot/overlay ext4".to_string()));
        assert!(!sys.calls.iter().any(|c| c.starts_with("move")));
        let overlay = sys.calls.iter().find(|c| c.starts_with("mount overlay")).unwrap();
        assert!(overlay.contains("lowerdir=/run/isoroot/layers/a\\:b\\,c.squashfs,"), "{overlay}");
    }

    #[test]
    fn nixos_has_a_tmpfs_root_with_the_store_overlay_inside() {
        let plan =
            Plan { profile: builtin("nixos"), layers: vec!["/run/isoroot/medium/nix-store.squashfs".into()] };
        let mut sys = Recorder::default();
        mount_root(&mut sys, &plan, Path::new("/dev/mapper/nixos"), &Upper::Tmpfs(None), Path::new(NEWROOT))
            .unwrap();
        let want = [
            "mount tmpfs /newroot tmpfs mode=0755",
            "mount /dev/loop0 /newroot/nix/.ro-store squashfs ro",
            "mount tmpfs /newroot/nix/.rw-store tmpfs mode=0755",
            "mount overlay /newroot/nix/store overlay lowerdir=/newroot/nix/.ro-store,upperdir=/newroot/nix/.rw-store/rw,workdir=/newroot/nix/.rw-store/work",
            "move /run/isoroot/medium /newroot/iso",
        ];
        let mounts: Vec<&String> =
            sys.calls.iter().filter(|c| c.starts_with("mount") || c.starts_with("move")).collect();
        assert_eq!(mounts, want);
    }

    #[test]
    fn liveos_mounts_the_nested_image_or_moves_the_outer_one() {
        let plan = Plan {
            profile: builtin("fedora-liveos"),
            layers: vec!["/run/isoroot/medium/LiveOS/squashfs.img".into()],
        };
        let mut sys = Recorder::default();
        mount_root(&mut sys, &plan, Path::new("/dev/loop9"), &Upper::Tmpfs(None), Path::new(NEWROOT))
            .unwrap();
        let nested = [
            "mount /dev/loop0 /run/initramfs/squashfs squashfs ro",
            "loop /dev/loop1 /run/initramfs/squashfs/LiveOS/rootfs.img 0+0",
            "mkdir /run/rootfsbase",
            "mount /dev/loop1 /run/rootfsbase ext4 ro noload",
        ];
        let at = sys.calls.iter().position(|c| c == nested[0]).unwrap();
        assert_eq!(sys.calls[at..at + 4], nested);
        let mut sys = Recorder { absent: vec!["LiveOS/rootfs.img"], ..Recorder::default() };
        mount_root(&mut sys, &plan, Path::new("/dev/loop9"), &Upper::Tmpfs(None), Path::new(NEWROOT))
            .unwrap();
        assert!(sys.calls.contains(&"mount /dev/loop0 /run/initramfs/squashfs squashfs ro".to_string()));
        assert!(sys.calls.contains(&"move /run/initramfs/squashfs /run/rootfsbase".to_string()));
        assert!(sys
            .calls
            .iter()
            .any(|c| c.starts_with("mount overlay /newroot overlay lowerdir=/run/rootfsbase,")));
        assert_eq!(sys.calls.last().unwrap(), "move /run/isoroot/medium /run/initramfs/live");
    }

    #[test]
    fn choose_reports_what_the_iso_holds() {
        let dir = std::env::temp_dir().join(format!("isoroot-choose-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("boot")).unwrap();
        std::fs::write(dir.join("README"), b"").unwrap();
        let cmdline = crate::cmdline::parse("").unwrap();
        let iso = MountedIso { root: &dir, cmdline: &cmdline, label: None };
        let e = choose(&crate::profile::builtin(), None, &iso).unwrap_err().to_string();
        assert!(e.contains("its top level holds: README, boot/"), "{e}");
        assert!(e.contains("debian-live (needs /live)"), "{e}");
        std::fs::create_dir_all(dir.join("live")).unwrap();
        std::fs::write(dir.join("live/filesystem.squashfs"), b"").unwrap();
        let plan = choose(&crate::profile::builtin(), None, &iso).unwrap();
        assert_eq!(plan.profile.name, "debian-live");
        assert_eq!(plan.layers, [dir.join("live/filesystem.squashfs")]);
        let e = choose(&crate::profile::builtin(), Some("nope"), &iso).unwrap_err().to_string();
        assert!(
            e.starts_with("iso.profile=nope: no such profile; known: alpine, archiso, debian-live"),
            "{e}"
        );
        let forced = choose(&crate::profile::builtin(), Some("generic"), &iso).unwrap();
        assert_eq!(forced.profile.name, "generic");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
