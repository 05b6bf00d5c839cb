//! The profiles' questions answered from an ISO image read with isoroot-fs, without
//! mounting it: what `isoroot inspect` and `isoroot menu` ask on the host, and what the
//! boot-time picker asks of every ISO it lists.

use crate::{glob_match, Lookup};
use isoroot_fs::iso9660::IsoFs;
use isoroot_fs::ReadAt;

/// An ISO as the profiles' rules ask about it.
pub struct IsoFiles<'a, 'f, S: ReadAt + ?Sized>(pub &'a IsoFs<'f, S>);

impl<S: ReadAt + ?Sized> Lookup for IsoFiles<'_, '_, S> {
    fn exists(&self, path: &str) -> bool {
        self.0.lookup(path).is_ok_and(|n| n.is_some())
    }
    fn list(&self, dir: &str) -> Vec<String> {
        match self.0.lookup(dir) {
            Ok(Some(d)) if d.dir => {
                self.0.read_dir(&d).map(|v| v.into_iter().map(|n| n.name).collect()).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }
    // A boot entry's command line and the distro initrd are not there to ask: the rules
    // that need them are skipped, as on a boot without them.
    fn cmdline(&self, _key: &str) -> Option<String> {
        None
    }
    fn initrd_var(&self, _file: &str, _var: &str) -> Option<String> {
        None
    }
    fn label(&self) -> Option<String> {
        Some(self.0.label.clone())
    }
}

/// The paths matching a profile's patterns (at most one `*`, in the last component):
/// pattern by pattern, each one's matches in name order. The first is the one a boot
/// entry takes.
pub fn matching(iso: &dyn Lookup, patterns: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for p in patterns {
        let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
        if !name.contains('*') {
            if iso.exists(p) {
                out.push(p.clone());
            }
            continue;
        }
        let mut names: Vec<String> = iso
            .list(if dir.is_empty() { "/" } else { dir })
            .into_iter()
            .filter(|n| glob_match(name, n))
            .collect();
        names.sort();
        out.extend(names.into_iter().map(|n| format!("{dir}/{n}")));
    }
    out
}
