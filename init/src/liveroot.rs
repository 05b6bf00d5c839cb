//! Steps 6 and 7: pick the profile for the mounted ISO, mount its root images and build
//! the overlay that becomes `/`.

use crate::cmdline::Cmdline;
use crate::loopdev::Window;
use crate::mount::Sys;
use crate::paths;
use crate::superblock::FsKind;
use anyhow::{anyhow, bail, Context, Result};
use isoroot_profiles::{Lookup, Profile};
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
    let mut tried = Vec::new();
    for p in profiles {
        if !p.detected(iso) {
            tried.push(format!("{} (needs {})", p.name, p.detect.join(", ")));
            continue;
        }
        match p.layers(iso).map_err(|e| anyhow!("profile {}: {e}", p.name))? {
            Some(layers) => return resolve(p, layers),
            None => tried.push(format!("{} (no root image in {})", p.name, p.dir)),
        }
    }
    bail!(
        "no profile matches this ISO\nits top level holds: {}\nprofiles tried: {}\n\
         force one with iso.profile=NAME, or add a profile to the initramfs (profiles/README.md)",
        paths::sample(&iso.top_level()),
        tried.join("; ")
    )
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

/// Mounts each root image read-only, a tmpfs for the writable layer, the overlay on
/// [`NEWROOT`], and moves the medium where the profile exposes it.
pub fn mount_root(sys: &mut dyn Sys, plan: &Plan, iso_dev: &Path, upper_layer: &Upper) -> Result<()> {
    let p = &plan.profile;
    let mut lower = Vec::new();
    for file in &plan.layers {
        let kind = sys
            .probe(file)
            .with_context(|| format!("reading {}", file.display()))?
            .map(|f| f.kind)
            .filter(|k| matches!(k, FsKind::Squashfs | FsKind::Erofs | FsKind::Ext4))
            .ok_or_else(|| anyhow!("{} is not a squashfs, EROFS or ext4 image", file.display()))?;
        // A root image inside the ISO is one run of sectors: read it straight from the
        // ISO's device rather than through a second loop on a file in isofs.
        let (backing, window) = match sys.window_on_device(file) {
            Ok(Some(w)) => (iso_dev, w),
            Ok(None) | Err(_) => (file.as_path(), Window::default()),
        };
        let dev = sys
            .attach_loop(backing, window)
            .with_context(|| format!("attaching {} to a loop device", file.display()))?;
        let name = file.file_name().map(PathBuf::from).unwrap_or_else(|| "root".into());
        let target = Path::new(&p.layers_at).join(name);
        sys.mkdir_all(&target).with_context(|| format!("creating {}", target.display()))?;
        sys.mount(&dev.to_string_lossy(), &target, kind.name(), MsFlags::MS_RDONLY, "").with_context(
            || {
                format!(
                    "mounting {} ({}, {}) on {}; is the image corrupt?",
                    file.display(),
                    kind.name(),
                    dev.display(),
                    target.display()
                )
            },
        )?;
        lower.push(target);
    }
    let upper = Path::new(&p.overlay_at);
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
            .with_context(|| format!("mounting the tmpfs for the overlay on {}", upper.display()))?
        }
        Upper::Ext4(dev) => sys
            .mount(&dev.to_string_lossy(), upper, "ext4", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, "")
            .with_context(|| {
                format!("mounting the persistence image {} on {}", dev.display(), upper.display())
            })?,
    }
    let (rw, work) = (upper.join("rw"), upper.join("work"));
    for d in [&rw, &work] {
        sys.mkdir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // overlayfs stacks lowerdir left over right: the top layer comes first.
    let lowerdir: Vec<String> = lower.iter().rev().map(|l| escape(l)).collect();
    let data = format!("lowerdir={},upperdir={},workdir={}", lowerdir.join(":"), escape(&rw), escape(&work));
    let newroot = Path::new(NEWROOT);
    sys.mkdir_all(newroot).context("creating /newroot")?;
    sys.mount("overlay", newroot, "overlay", MsFlags::empty(), &data)
        .with_context(|| format!("mounting the overlay ({data}) on {NEWROOT}"))?;
    if p.medium != MEDIUM {
        // Paths under /run move into the new root with /run; others are made inside it.
        let target = if p.medium.starts_with("/run/") {
            PathBuf::from(&p.medium)
        } else {
            newroot.join(p.medium.trim_start_matches('/'))
        };
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
        mount_root(&mut sys, &plan, Path::new("/dev/mapper/debian"), &Upper::Tmpfs(None)).unwrap();
        assert_eq!(
            sys.calls,
            [
                "loop /dev/loop0 /dev/mapper/debian 1048576+4096",
                "mkdir /run/live/rootfs/filesystem.squashfs",
                "mount /dev/loop0 /run/live/rootfs/filesystem.squashfs squashfs ro",
                "mkdir /run/live/overlay",
                "mount tmpfs /run/live/overlay tmpfs mode=0755",
                "mkdir /run/live/overlay/rw",
                "mkdir /run/live/overlay/work",
                "mkdir /newroot",
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
        mount_root(&mut sys, &plan, Path::new("/dev/loop9"), &Upper::Tmpfs(Some("1G".into()))).unwrap();
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
        )
        .unwrap();
        // Not contiguous: the loop is on the file.
        assert_eq!(sys.calls[0], "loop /dev/loop0 /run/isoroot/medium/zisofs/a:b,c.squashfs 0+0");
        assert!(sys
            .calls
            .contains(&"mount /dev/mapper/isoroot-persist /run/isoroot/overlay ext4".to_string()));
        assert!(!sys.calls.iter().any(|c| c.starts_with("move")));
        let overlay = sys.calls.iter().find(|c| c.starts_with("mount overlay")).unwrap();
        assert!(overlay.contains("lowerdir=/run/isoroot/layers/a\\:b\\,c.squashfs,"), "{overlay}");
    }

    #[test]
    fn choose_reports_what_the_iso_holds() {
        let dir = std::env::temp_dir().join(format!("isoroot-choose-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("boot")).unwrap();
        std::fs::write(dir.join("README"), b"").unwrap();
        let cmdline = crate::cmdline::parse("").unwrap();
        let iso = MountedIso { root: &dir, cmdline: &cmdline };
        let e = choose(&crate::profile::builtin(), None, &iso).unwrap_err().to_string();
        assert!(e.contains("its top level holds: README, boot/"), "{e}");
        assert!(e.contains("debian-live (needs /live)"), "{e}");
        std::fs::create_dir_all(dir.join("live")).unwrap();
        std::fs::write(dir.join("live/filesystem.squashfs"), b"").unwrap();
        let plan = choose(&crate::profile::builtin(), None, &iso).unwrap();
        assert_eq!(plan.profile.name, "debian-live");
        assert_eq!(plan.layers, [dir.join("live/filesystem.squashfs")]);
        let e = choose(&crate::profile::builtin(), Some("nixos"), &iso).unwrap_err().to_string();
        assert!(e.starts_with("iso.profile=nixos: no such profile; known: debian-live"), "{e}");
        let forced = choose(&crate::profile::builtin(), Some("generic"), &iso).unwrap();
        assert_eq!(forced.profile.name, "generic");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
