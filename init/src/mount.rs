//! The privileged operations that assemble a root, behind a trait so that the assembly can
//! be unit-tested without root (youki's `Syscall` pattern); [`Linux`] does them for real
//! and remembers its mounts so that a failed attempt can be undone before a retry.

use crate::dm::Target;
use crate::loopdev::{self, Window};
use isoroot_fs::superblock::{self, FsInfo};
use nix::mount::{MntFlags, MsFlags};
use std::io;
use std::path::{Path, PathBuf};

pub trait Sys {
    fn mount(&mut self, src: &str, target: &Path, fstype: &str, flags: MsFlags, data: &str)
        -> io::Result<()>;
    /// Moves a mount (MS_MOVE).
    fn move_mount(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Unmounts (lazily: nothing here keeps files open that matter).
    fn umount(&mut self, target: &Path) -> io::Result<()>;
    fn mkdir_all(&mut self, path: &Path) -> io::Result<()>;
    /// A read-only loop device on (a window of) a file.
    fn attach_loop(&mut self, file: &Path, window: Window) -> io::Result<PathBuf>;
    fn probe(&mut self, path: &Path) -> io::Result<Option<FsInfo>>;
    /// Where a file in a mounted ISO lies on the ISO's device, when it is contiguous.
    fn window_on_device(&mut self, file: &Path) -> io::Result<Option<Window>>;
    /// A dm-linear device (read-only unless `writable`), removed again by [`Sys::undo`].
    fn map_linear(&mut self, name: &str, targets: &[Target], writable: bool) -> io::Result<PathBuf>;
    /// Removes a device-mapper device made by this attempt (a warning if it cannot).
    fn unmap(&mut self, name: &str);
    /// Unmounts, newest first, everything this boot attempt mounted; loop devices go with
    /// their mounts (autoclear), device-mapper devices are removed.
    fn undo(&mut self);
    /// Forgets mounts and devices that now belong to the new root.
    fn keep(&mut self);
}

mod ioctl {
    // <linux/fs.h>: FIBMAP maps a file block to a device block, FIGETBSZ gives the size.
    nix::ioctl_readwrite_bad!(fibmap, 1, nix::libc::c_int);
    nix::ioctl_read_bad!(figetbsz, 2, nix::libc::c_int);
}

/// The real thing.
#[derive(Default)]
pub struct Linux {
    mounted: Vec<PathBuf>,
    /// Loop devices stay open until their mounts hold them (see [`loopdev::LoopDevice`]).
    loops: Vec<loopdev::LoopDevice>,
    /// Device-mapper devices made by this attempt, by name.
    mapped: Vec<String>,
}

impl Sys for Linux {
    fn mount(
        &mut self,
        src: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: &str,
    ) -> io::Result<()> {
        let data = (!data.is_empty()).then_some(data);
        nix::mount::mount(Some(src), target, Some(fstype), flags, data)?;
        self.mounted.push(target.to_path_buf());
        Ok(())
    }

    fn move_mount(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let moved = nix::mount::mount(Some(from), to, None::<&str>, MsFlags::MS_MOVE, None::<&str>);
        if moved == Err(nix::errno::Errno::EINVAL) {
            // A mount under a shared parent cannot be moved (systemd makes / shared, as in
            // dracut's initramfs): bind it where it goes and detach it from where it was.
            nix::mount::mount(
                Some(from),
                to,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            nix::mount::umount2(from, MntFlags::MNT_DETACH)?;
        } else {
            moved?;
        }
        // Mounts below `from` moved with it.
        for m in &mut self.mounted {
            if let Ok(rest) = m.strip_prefix(from) {
                *m = to.join(rest);
            }
        }
        Ok(())
    }

    fn umount(&mut self, target: &Path) -> io::Result<()> {
        nix::mount::umount2(target, MntFlags::MNT_DETACH)?;
        self.mounted.retain(|m| m != target);
        Ok(())
    }

    fn mkdir_all(&mut self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn attach_loop(&mut self, file: &Path, window: Window) -> io::Result<PathBuf> {
        let dev = loopdev::attach(file, window)?;
        let path = dev.path.clone();
        self.loops.push(dev);
        Ok(path)
    }

    fn probe(&mut self, path: &Path) -> io::Result<Option<FsInfo>> {
        superblock::probe(&std::fs::File::open(path)?)
    }

    fn window_on_device(&mut self, file: &Path) -> io::Result<Option<Window>> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(file)?;
        let size = f.metadata()?.len();
        let fd = f.as_raw_fd();
        let mut bsz: nix::libc::c_int = 0;
        // SAFETY: FIGETBSZ writes one int.
        unsafe { ioctl::figetbsz(fd, &mut bsz) }?;
        let bsz = u64::try_from(bsz).unwrap_or(0);
        if bsz == 0 || size == 0 {
            return Ok(None);
        }
        let blocks = size.div_ceil(bsz);
        let map = |b: u64| -> io::Result<u64> {
            let mut n =
                nix::libc::c_int::try_from(b).map_err(|_| io::Error::other("file too large for FIBMAP"))?;
            // SAFETY: FIBMAP reads and writes one int.
            unsafe { ioctl::fibmap(fd, &mut n) }?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        // ISO 9660 stores a file in one extent; zisofs and UDF need not, and FIBMAP says
        // 0 (a hole) or fails there. Checking both ends and the middle catches a split.
        let first = map(0)?;
        let contiguous = first != 0
            && [blocks / 2, blocks - 1]
                .iter()
                .try_fold(true, |ok, &b| Ok::<_, io::Error>(ok && map(b)? == first + b))?;
        Ok(contiguous.then_some(Window { offset: first * bsz, size }))
    }

    fn map_linear(&mut self, name: &str, targets: &[Target], writable: bool) -> io::Result<PathBuf> {
        let node = crate::dm::create(name, targets, writable)?;
        self.mapped.push(name.to_string());
        Ok(node)
    }

    fn unmap(&mut self, name: &str) {
        if let Err(e) = crate::dm::remove(name) {
            crate::warn!("removing device-mapper device {name}: {e}");
        }
        self.mapped.retain(|n| n != name);
    }

    fn undo(&mut self) {
        while let Some(m) = self.mounted.pop() {
            if let Err(e) = nix::mount::umount2(&m, MntFlags::MNT_DETACH) {
                crate::debug!("unmounting {}: {e}", m.display());
            }
        }
        self.loops.clear();
        while let Some(name) = self.mapped.pop() {
            if let Err(e) = crate::dm::remove(&name) {
                crate::debug!("removing device-mapper device {name}: {e}");
            }
        }
    }

    fn keep(&mut self) {
        self.mounted.clear();
        self.loops.clear();
        self.mapped.clear();
    }
}

#[cfg(test)]
pub mod recording {
    //! A [`Sys`] that records calls and succeeds, for tests.
    use super::*;
    use isoroot_fs::superblock::FsKind;

    #[derive(Debug, Default)]
    pub struct Recorder {
        pub calls: Vec<String>,
        pub loops: usize,
        /// Files that do not exist (by path suffix); every other file probes as an image.
        pub absent: Vec<&'static str>,
    }

    impl Sys for Recorder {
        fn mount(
            &mut self,
            src: &str,
            target: &Path,
            fstype: &str,
            flags: MsFlags,
            data: &str,
        ) -> io::Result<()> {
            let ro = if flags.contains(MsFlags::MS_RDONLY) { " ro" } else { "" };
            self.calls
                .push(format!("mount {src} {} {fstype}{ro} {data}", target.display()).trim_end().into());
            Ok(())
        }
        fn move_mount(&mut self, from: &Path, to: &Path) -> io::Result<()> {
            self.calls.push(format!("move {} {}", from.display(), to.display()));
            Ok(())
        }
        fn umount(&mut self, target: &Path) -> io::Result<()> {
            self.calls.push(format!("umount {}", target.display()));
            Ok(())
        }
        fn mkdir_all(&mut self, path: &Path) -> io::Result<()> {
            self.calls.push(format!("mkdir {}", path.display()));
            Ok(())
        }
        fn attach_loop(&mut self, file: &Path, window: Window) -> io::Result<PathBuf> {
            let dev = format!("/dev/loop{}", self.loops);
            self.loops += 1;
            self.calls.push(format!("loop {dev} {} {}+{}", file.display(), window.offset, window.size));
            Ok(dev.into())
        }
        fn window_on_device(&mut self, file: &Path) -> io::Result<Option<Window>> {
            // Contiguous unless the test names it otherwise.
            let split = file.to_string_lossy().contains("zisofs");
            Ok((!split).then_some(Window { offset: 1 << 20, size: 4096 }))
        }
        fn probe(&mut self, path: &Path) -> io::Result<Option<FsInfo>> {
            let path = path.to_string_lossy();
            if self.absent.iter().any(|a| path.ends_with(a)) {
                return Err(io::ErrorKind::NotFound.into());
            }
            let kind = match path.rsplit('.').next() {
                Some("erofs") => FsKind::Erofs,
                Some("img") if path.contains("/LiveOS/") && !path.ends_with("squashfs.img") => FsKind::Ext4,
                _ => FsKind::Squashfs,
            };
            Ok(Some(FsInfo { kind, uuid: None, label: None, needs_recovery: false }))
        }
        fn map_linear(&mut self, name: &str, targets: &[Target], writable: bool) -> io::Result<PathBuf> {
            let rw = if writable { "rw" } else { "ro" };
            self.calls.push(format!("dm {name} {rw} {} targets", targets.len()));
            Ok(PathBuf::from("/dev/mapper").join(name))
        }
        fn unmap(&mut self, name: &str) {
            self.calls.push(format!("unmap {name}"));
        }
        fn undo(&mut self) {
            self.calls.push("undo".into());
        }
        fn keep(&mut self) {
            self.calls.push("keep".into());
        }
    }
}
