//! The profiles' questions answered from an ISO image read with isoroot-fs, without
//! mounting it: what `isoroot inspect` and `isoroot menu` ask on the host, and what the
//! boot-time picker asks of every ISO it lists.

use crate::bootcfg::{self, OwnEntry};
use crate::{glob_match, Lookup, Profile};
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

/// The entries of the ISO's own boot menus ([`bootcfg`]).
pub fn own_entries<S: ReadAt + ?Sized>(iso: &IsoFs<'_, S>) -> Vec<OwnEntry> {
    let read = |path: &str| {
        let node = iso.lookup(path).ok()??;
        let text = iso.read_file(&node, bootcfg::MAX_FILE).ok()?;
        Some(String::from_utf8_lossy(&text).into_owned())
    };
    bootcfg::read(&read, &|dir| IsoFiles(iso).list(dir))
}

/// What an entry that boots the ISO's own kernel loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    pub kernel: String,
    /// Loaded in this order (microcode first, where the ISO's menu has it).
    pub initrds: Vec<String>,
    /// The arguments of the ISO's own entry for this kernel, when its menu has one.
    pub args: Vec<String>,
    /// Where they were found: the profile's patterns, or a file of the ISO's own menu.
    pub from: String,
}

/// The arguments of the ISO's own first entry for `kernel` (none when its menu has none).
pub fn own_args<'o>(own: &'o [OwnEntry], kernel: &str) -> &'o [String] {
    own.iter().find(|e| e.kernel == kernel).map_or(&[], |e| &e.args)
}

/// The kernel and initrds to boot: the first matches of the profile's patterns, else the
/// first entry of the ISO's own menu whose files are all in the ISO (a release that renamed
/// its kernel still boots); with the arguments of the ISO's first entry for that kernel.
pub fn boot_files(iso: &dyn Lookup, profile: &Profile, own: &[OwnEntry]) -> Option<BootFiles> {
    let (kernel, initrd) = (matching(iso, &profile.kernel), matching(iso, &profile.initrd));
    if let (Some(kernel), Some(initrd)) = (kernel.into_iter().next(), initrd.into_iter().next()) {
        let args = own_args(own, &kernel).to_vec();
        return Some(BootFiles {
            kernel,
            initrds: vec![initrd],
            args,
            from: format!("profile {}", profile.name),
        });
    }
    own.iter()
        .find(|e| iso.exists(&e.kernel) && !e.initrds.is_empty() && e.initrds.iter().all(|i| iso.exists(i)))
        .map(|e| BootFiles {
            kernel: e.kernel.clone(),
            initrds: e.initrds.clone(),
            args: e.args.clone(),
            from: e.from.clone(),
        })
}

/// `init=` as the ISO's own menu names it (NixOS names its generation's init only there):
/// printable ASCII without quotes or backslashes, so that the word goes into any boot
/// loader's file and command line as it is.
pub fn own_init(own: &[OwnEntry]) -> Option<String> {
    own.iter()
        .flat_map(|e| &e.args)
        .find(|w| {
            w.starts_with("init=/") && w.bytes().all(|b| b.is_ascii_graphic() && !b"\"\\'".contains(&b))
        })
        .cloned()
}
