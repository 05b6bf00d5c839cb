//! Paths inside a mounted tree, resolved as if that tree were `/`: a symlink on the boot
//! device or in the new root must not lead into the initramfs.

use std::io;
use std::path::{Component, Path, PathBuf};

const MAX_LINKS: usize = 40;

/// Resolves `path` (absolute, as seen from inside `root`) with every symlink followed within
/// `root`; returns the path on this side. A loop fails with ELOOP, like the kernel.
pub fn resolve_in(root: &Path, path: &str) -> io::Result<PathBuf> {
    let mut todo: Vec<String> = components(path);
    todo.reverse();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let here = root.join(done.iter().collect::<PathBuf>()).join(&c);
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = std::fs::read_link(&here)?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    done.clear();
                }
                todo.extend(components(&target).into_iter().rev());
            }
            Ok(_) => done.push(c),
            // The last component may not exist yet; anything before it must.
            Err(e) if todo.is_empty() && e.kind() == io::ErrorKind::NotFound => done.push(c),
            Err(e) => return Err(e),
        }
    }
    Ok(root.join(done.iter().collect::<PathBuf>()))
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
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

/// A listing cut to a readable length.
pub fn sample(names: &[String]) -> String {
    const MAX: usize = 20;
    if names.is_empty() {
        return "(empty)".into();
    }
    let mut s = names.iter().take(MAX).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > MAX {
        s.push_str(&format!(", … ({} more)", names.len() - MAX));
    }
    s
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

    #[test]
    fn sample_cuts_long_listings() {
        let names: Vec<String> = (0..25).map(|i| format!("f{i}")).collect();
        assert!(sample(&names).ends_with("f19, … (5 more)"));
        assert_eq!(sample(&[]), "(empty)");
    }
}
