//! Switching root (docs/architecture.md, step 7). `pivot_root` does not work on the
//! initramfs root, so this is what busybox's switch_root and booster do: move the API
//! filesystems into the new root, free the initramfs, move the new root onto `/`, chroot
//! and exec.

use crate::paths;
use anyhow::{bail, Context, Result};
use nix::mount::MsFlags;
use nix::sys::statfs::{statfs, FsType, TMPFS_MAGIC};
use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Checks, while the initramfs still exists to report from, that the new root has the
/// init it is about to run.
pub fn check_init(newroot: &Path, init: &str) -> Result<()> {
    let path =
        paths::resolve_in(newroot, init).with_context(|| format!("resolving {init} in the new root"))?;
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => bail!("{init} in the new root is not an executable file"),
        Err(_) => {
            let (dir, names) = paths::nearest_listing(newroot, init);
            bail!(
                "the new root has no {init} (set another with init=PATH)\n{dir} there holds: {}",
                isoroot_fs::pathwalk::sample(&names)
            )
        }
    }
}

/// Whether the new root's init is systemd (it resolves to a file named `systemd`), which
/// gets the initrd's timestamps.
pub fn is_systemd(newroot: &Path, init: &str) -> bool {
    paths::resolve_in(newroot, init).is_ok_and(|p| p.file_name().is_some_and(|n| n == "systemd"))
}

/// Removes the initramfs' files (they would hold RAM for the whole session), never
/// crossing into another filesystem.
fn free_initramfs(keep: &Path) {
    // <linux/magic.h>; neither nix nor libc names it.
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    let on_ramfs =
        statfs("/").is_ok_and(|s| s.filesystem_type() == RAMFS_MAGIC || s.filesystem_type() == TMPFS_MAGIC);
    let Ok(root_dev) = std::fs::metadata("/").map(|m| m.dev()) else { return };
    if !on_ramfs {
        crate::warn!("/ is not the initramfs; leaving its files alone");
        return;
    }
    fn remove(dir: &Path, dev: u64, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(m) = std::fs::symlink_metadata(&path) else { continue };
            if path == keep || m.dev() != dev {
                continue;
            }
            if m.is_dir() {
                remove(&path, dev, keep);
                let _ = std::fs::remove_dir(&path);
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    remove(Path::new("/"), root_dev, keep);
}

pub fn switch_root(newroot: &Path, init: &str, args: &[String]) -> Result<Infallible> {
    for api in ["/dev", "/proc", "/sys", "/run"] {
        let target = newroot.join(&api[1..]);
        std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
        nix::mount::mount(Some(api), &target, None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .with_context(|| format!("moving {api} to {}", target.display()))?;
    }
    free_initramfs(newroot);
    std::env::set_current_dir(newroot).context("entering the new root")?;
    nix::mount::mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .context("moving the new root onto /")?;
    nix::unistd::chroot(".").context("chroot into the new root")?;
    std::env::set_current_dir("/").context("chdir / in the new root")?;
    let argv: Vec<CString> = std::iter::once(init)
        .chain(args.iter().map(String::as_str))
        .map(|a| CString::new(a).context("an init argument holds a NUL byte"))
        .collect::<Result<_>>()?;
    let err = nix::unistd::execv(&argv[0], &argv).unwrap_err();
    bail!("executing {init} in the new root: {err}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn init_must_exist_and_be_executable_inside_the_root() {
        let root = std::env::temp_dir().join(format!("isoroot-sw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sbin")).unwrap();
        std::fs::create_dir_all(root.join("lib/systemd")).unwrap();
        std::fs::write(root.join("lib/systemd/systemd"), b"").unwrap();
        std::fs::set_permissions(root.join("lib/systemd/systemd"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        symlink("/lib/systemd/systemd", root.join("sbin/init")).unwrap();
        std::fs::write(root.join("sbin/plain"), b"").unwrap();
        check_init(&root, "/sbin/init").unwrap();
        assert!(is_systemd(&root, "/sbin/init"));
        assert!(!is_systemd(&root, "/sbin/plain"));
        let e = check_init(&root, "/sbin/plain").unwrap_err().to_string();
        assert!(e.contains("not an executable"), "{e}");
        let e = check_init(&root, "/sbin/nope").unwrap_err().to_string();
        assert!(
            e.contains("the new root has no /sbin/nope") && e.contains("/sbin there holds: init, plain"),
            "{e}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
