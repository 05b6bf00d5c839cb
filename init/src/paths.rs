//! Paths inside a mounted tree, resolved as if that tree were `/`: a symlink on the boot
//! device or in the new root must not lead into the initramfs.

use isoroot_fs::pathwalk::Walk;
use std::io;
use std::path::{Path, PathBuf};

/// Resolves `path` (absolute, as seen from inside `root`) with every symlink followed within
/// `root`; returns the path on this side. A loop fails with ELOOP, like the kernel.
pub fn resolve_in(root: &Path, path: &str) -> io::Result<PathBuf> {
    let mut walk = Walk::new(path, root.to_path_buf());
    while let Some(name) = walk.next_name() {
        let here = walk.dir().join(&name);
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&here)?;
                walk.follow(&target.to_string_lossy())
                    .map_err(|_| io::Error::from_raw_os_error(libc::ELOOP))?;
            }
            Ok(_) => walk.enter(name, here),
            // The last component may not exist yet; anything before it must.
            Err(e) if walk.at_last() && e.kind() == io::ErrorKind::NotFound => walk.enter(name, here),
            Err(e) => return Err(e),
        }
    }
    Ok(walk.into_node())
}

/// What exists nearest to a missing path, for messages: the deepest existing directory on
/// the way and (a sample of) its entries.
pub fn nearest_listing(root: &Path, path: &str) -> (String, Vec<String>) {
    let mut dir = PathBuf::from(path);
    loop {
        dir = dir.parent().map(Path::to_path_buf).unwrap_or_else(|| "/".into());
        let on_host = root.join(dir.strip_prefix("/").unwrap_or(&dir));
        if let Ok(entries) = std::fs::read_dir(&on_host) {
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| {
                    let dir = e.file_type().is_ok_and(|t| t.is_dir());
                    format!("{}{}", e.file_name().to_string_lossy(), if dir { "/" } else { "" })
                })
                .collect();
            names.sort();
            return (dir.to_string_lossy().into_owned(), names);
        }
        if dir.as_os_str() == "/" {
            return ("/".into(), Vec::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let t = std::env::temp_dir().join(format!("isoroot-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        std::fs::create_dir_all(t.join("isos/real")).unwrap();
        std::fs::write(t.join("isos/real/a.iso"), b"x").unwrap();
        symlink("/isos/real", t.join("isos/abs")).unwrap();
        symlink("real/a.iso", t.join("isos/rel.iso")).unwrap();
        symlink("../../../../isos/real", t.join("isos/up")).unwrap();
        symlink("loop2", t.join("loop1")).unwrap();
        symlink("loop1", t.join("loop2")).unwrap();
        assert_eq!(resolve_in(&t, "/isos/abs/a.iso").unwrap(), t.join("isos/real/a.iso"));
        assert_eq!(resolve_in(&t, "/isos/rel.iso").unwrap(), t.join("isos/real/a.iso"));
        assert_eq!(resolve_in(&t, "/isos/up/a.iso").unwrap(), t.join("isos/real/a.iso"));
        assert_eq!(resolve_in(&t, "/isos/missing.iso").unwrap(), t.join("isos/missing.iso"));
        assert!(resolve_in(&t, "/nodir/x.iso").is_err());
        assert_eq!(resolve_in(&t, "/loop1").unwrap_err().raw_os_error(), Some(libc::ELOOP));
        let (dir, names) = nearest_listing(&t, "/isos/real/sub/b.iso");
        assert_eq!((dir.as_str(), names), ("/isos/real", vec!["a.iso".to_string()]));
        std::fs::remove_dir_all(&t).unwrap();
    }
}
