//! Distro profiles: how isoroot recognises a live ISO and assembles its root.
//!
//! Profiles are written as YAML (one file per distro family, see `profiles/README.md`).
//! The init never parses YAML: the build and `isoroot mkinitramfs` turn profiles into the
//! *compact form*, `key value` lines with every field spelled out, which this crate also
//! reads without any dependency.

pub mod bootcfg;
mod compact;
pub mod iso;
mod layers;
#[cfg(feature = "yaml")]
mod yaml;

pub use compact::{parse_compact, to_compact};
pub use layers::{chain, find, glob_match, Lookup, Match};
#[cfg(feature = "yaml")]
pub use yaml::from_yaml;

/// Where the host tool puts, and the init finds, what isoroot adds to an initramfs.
pub mod layout {
    /// `*.profile` files in the compact form, overriding or adding to the built-in profiles.
    pub const PROFILE_DIR: &str = "/etc/isoroot/profiles";
    /// Kernel modules the init loads at every boot, one name per line.
    pub const MODULE_LIST: &str = "/etc/isoroot/modules.load";
    /// isoroot's `--no-modules` archive inside a standalone initramfs, which the boot-time
    /// picker appends to a chosen ISO's own initrd when it boots the ISO's kernel.
    pub const ADDON: &str = "/isoroot/addon.img";
}

/// The profiles in this crate's folder: (file name, YAML).
#[cfg(feature = "yaml")]
const BUILTIN: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// The built-in profiles, read from the YAML files built into this crate; an invalid one
/// is named with its file.
#[cfg(feature = "yaml")]
pub fn builtin() -> Result<Vec<Profile>, String> {
    BUILTIN.iter().map(|(file, text)| from_yaml(text).map_err(|e| format!("profiles/{file}: {e}"))).collect()
}

/// One distro family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// Profiles are tried in ascending priority; the first whose detection paths exist and
    /// whose image rules find images wins.
    pub priority: u32,
    /// Absolute paths inside the ISO that must all exist; `a|b` is either.
    pub detect: Vec<String>,
    /// A pattern with at most one `*` that the ISO's volume label must match.
    pub label: Option<String>,
    /// The family cannot boot this way: stop with this explanation when it is detected.
    pub unsupported: Option<String>,
    pub strategy: Strategy,
    /// Kernel command line tokens the boot entry carries for this family (`boot=live`;
    /// for handoff, the tokens that point the distro's initrd at `/dev/mapper/isoroot`).
    pub cmdline: String,
    /// Where the ISO keeps the kernel and the initrd (patterns with at most one `*`).
    pub kernel: Vec<String>,
    pub initrd: Vec<String>,
    /// Directory inside the ISO that holds the root images.
    pub dir: String,
    /// Image rules, tried in order; the first that finds images gives the layers.
    pub select: Vec<Select>,
    /// Paths inside a root image that, when present, are the real root (an ext4 image in a
    /// squashfs, as dracut's LiveOS layout has); the first one found is used.
    pub nested: Vec<String>,
    /// Where an image that holds a nested one is mounted; `{name}` is its file name.
    pub outer_at: String,
    /// Where the ISO's filesystem is exposed in the booted system.
    pub medium: String,
    /// Where each root image is mounted; `{name}` is its file name (required when there
    /// can be more than one layer).
    pub layers_at: String,
    /// The tmpfs that holds the overlay's `rw` and `work` directories.
    pub overlay_at: String,
    /// Where the overlay goes in the new root: `/`, or a directory (NixOS's `/nix/store`),
    /// in which case the new root is a tmpfs.
    pub overlay_on: String,
    /// The init to exec in the new root unless `init=` says otherwise; `None`: `init=` is
    /// required (NixOS names its generation's init there).
    pub init: Option<String>,
}

/// How a profile boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// isoroot mounts the root and switches to it; the distro's initrd never runs.
    SwitchRoot,
    /// isoroot attaches the ISO as `/dev/mapper/isoroot` and execs the distro's own `/init`.
    Handoff,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::SwitchRoot => "switch-root",
            Strategy::Handoff => "handoff",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        [Strategy::SwitchRoot, Strategy::Handoff].into_iter().find(|k| k.name() == s)
    }
}

/// A rule that names the root image(s) inside [`Profile::dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Select {
    /// casper's `layerfs-path=`: the top layer's file name comes from this cmdline key.
    CmdlineChain(String),
    /// The top layer's file name is `VAR=` in this file of the initramfs (casper's
    /// `conf/conf.d/default-layer.conf`), present when isoroot runs in the distro's initrd.
    InitrdChain { file: String, var: String },
    /// A fixed top layer; see [`chain`] for how the lower layers are named.
    Chain(String),
    /// One image with this name.
    File(String),
    /// Every image matching a pattern with at most one `*`, in name order, last on top.
    Glob(String),
    /// These images, bottom first; an optional one (`name?`) is skipped when absent, and
    /// the rule finds nothing when a required one is absent (Manjaro's miso layers).
    Stack(Vec<Layer>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub name: String,
    pub optional: bool,
}

impl Layer {
    /// `name` or `name?`.
    pub fn parse(s: &str) -> Layer {
        match s.strip_suffix('?') {
            Some(name) => Layer { name: name.into(), optional: true },
            None => Layer { name: s.into(), optional: false },
        }
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.name, if self.optional { "?" } else { "" })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    #[error("profile {profile:?}: {msg}")]
    Invalid { profile: String, msg: String },
    #[error("compact profiles, line {line}: {msg}")]
    Compact { line: usize, msg: String },
    #[cfg(feature = "yaml")]
    #[error("YAML: {0}")]
    Yaml(String),
}

fn one_line(s: &str) -> bool {
    !s.contains('\n')
}

impl Profile {
    /// Checks what the schema cannot express; every way of making a profile ends here.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let bad = |msg: String| Err(ProfileError::Invalid { profile: self.name.clone(), msg });
        let name_ok = !self.name.is_empty()
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return bad("the name must be lowercase letters, digits and '-'".into());
        }
        if self.select.is_empty() && self.unsupported.is_none() {
            return bad("`images.select` names no rule".into());
        }
        let detect = self.detect.iter().flat_map(|d| d.split('|'));
        let paths = detect
            .chain(self.kernel.iter().map(String::as_str))
            .chain(self.initrd.iter().map(String::as_str))
            .chain(
                [
                    &self.dir,
                    &self.outer_at,
                    &self.medium,
                    &self.layers_at,
                    &self.overlay_at,
                    &self.overlay_on,
                ]
                .into_iter()
                .chain(&self.init)
                .map(String::as_str),
            );
        for p in paths {
            if !p.starts_with('/') || p.split('/').any(|c| c == "..") || !one_line(p) {
                return bad(format!("{p:?} must be an absolute path without '..'"));
            }
        }
        if self.overlay_on == "/" {
            let hidden = [&self.layers_at, &self.overlay_at, &self.outer_at]
                .into_iter()
                .find(|p| !p.starts_with("/run/"));
            if let Some(p) = hidden {
                return bad(format!("{p:?} must be under /run/ when the overlay is the root"));
            }
        }
        let texts =
            [&self.description, &self.cmdline].into_iter().chain(&self.label).chain(&self.unsupported);
        if let Some(t) = texts.into_iter().find(|t| !one_line(t)) {
            return bad(format!("{t:?} must be one line"));
        }
        let patterns = self.label.iter().chain(&self.kernel).chain(&self.initrd);
        if let Some(p) = patterns.into_iter().find(|p| p.matches('*').count() > 1) {
            return bad(format!("pattern {p:?} has more than one '*'"));
        }
        for rule in &self.select {
            let names: Vec<&str> = match rule {
                Select::CmdlineChain(key) => vec![key],
                Select::InitrdChain { file, .. } => vec![file],
                Select::Chain(n) | Select::File(n) => vec![n],
                Select::Glob(g) if g.matches('*').count() > 1 => {
                    return bad(format!("glob {g:?} has more than one '*'"))
                }
                Select::Glob(g) => vec![g],
                Select::Stack(layers) if layers.is_empty() => return bad("an empty stack".into()),
                Select::Stack(layers) => layers.iter().map(|l| l.name.as_str()).collect(),
            };
            if let Some(name) = names.iter().find(|n| n.is_empty() || !one_line(n)) {
                return bad(format!("an image rule has an empty or multi-line value: {name:?}"));
            }
            if matches!(rule, Select::Stack(_)) && names.iter().any(|n| n.contains(' ')) {
                return bad("stack layer names cannot contain spaces".into());
            }
            let single = matches!(rule, Select::File(_));
            if !single && !self.layers_at.contains("{name}") {
                return bad(format!(
                    "layers-at {:?} needs {{name}}: this rule can find several images",
                    self.layers_at
                ));
            }
        }
        Ok(())
    }

    /// Where one root image is mounted.
    pub fn layer_mount(&self, file_name: &str) -> String {
        self.layers_at.replace("{name}", file_name)
    }

    /// Where an image holding a nested root image is mounted.
    pub fn outer_mount(&self, file_name: &str) -> String {
        self.outer_at.replace("{name}", file_name)
    }
}

/// Sorts profiles into the order in which they are tried; a later profile with the same name
/// replaces an earlier one (files added to the initramfs override built-in profiles).
pub fn merge(profiles: impl IntoIterator<Item = Profile>) -> Vec<Profile> {
    let mut out: Vec<Profile> = Vec::new();
    for p in profiles {
        match out.iter_mut().find(|q| q.name == p.name) {
            Some(q) => *q = p,
            None => out.push(p),
        }
    }
    out.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.name.cmp(&b.name)));
    out
}

#[cfg(test)]
pub(crate) fn sample() -> Profile {
    Profile {
        name: "debian-live".into(),
        description: "Debian Live (live-boot)".into(),
        priority: 10,
        detect: vec!["/live".into()],
        label: None,
        unsupported: None,
        strategy: Strategy::SwitchRoot,
        cmdline: "boot=live".into(),
        kernel: vec!["/live/vmlinuz*".into()],
        initrd: vec!["/live/initrd.img*".into()],
        dir: "/live".into(),
        select: vec![
            Select::CmdlineChain("layerfs-path".into()),
            Select::InitrdChain {
                file: "/conf/conf.d/default-layer.conf".into(),
                var: "LAYERFS_PATH".into(),
            },
            Select::Chain("a.b.squashfs".into()),
            Select::File("filesystem.squashfs".into()),
            Select::Glob("*.squashfs".into()),
            Select::Stack(vec![Layer::parse("rootfs.sfs"), Layer::parse("livefs.sfs?")]),
        ],
        nested: vec!["/LiveOS/rootfs.img".into()],
        outer_at: "/run/isoroot/outer/{name}".into(),
        medium: "/run/live/medium".into(),
        layers_at: "/run/live/rootfs/{name}".into(),
        overlay_at: "/run/live/overlay".into(),
        overlay_on: "/".into(),
        init: Some("/sbin/init".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_relative_and_dotdot_paths() {
        let mut p = sample();
        p.medium = "run/x".into();
        assert!(p.validate().is_err());
        p.medium = "/run/../x".into();
        assert!(p.validate().is_err());
        assert!(sample().validate().is_ok());
    }

    #[test]
    fn validate_rejects_bad_names_and_globs() {
        let mut p = sample();
        p.name = "Debian Live".into();
        assert!(p.validate().is_err());
        let mut p = sample();
        p.select = vec![Select::Glob("*a*".into())];
        assert!(p.validate().is_err());
        p.select.clear();
        assert!(p.validate().is_err());
        let mut p = sample();
        p.layers_at = "/run/x".into();
        assert!(p.validate().is_err(), "several layers need {{name}}");
        p.select = vec![Select::File("nix-store.squashfs".into())];
        assert!(p.validate().is_ok());
        p.layers_at = "/nix/.ro-store".into();
        assert!(p.validate().is_err(), "hidden under the overlay");
        p.overlay_on = "/nix/store".into();
        assert!(p.validate().is_ok());
        p.label = Some("*a*".into());
        assert!(p.validate().is_err());
    }

    #[test]
    fn merge_overrides_by_name_and_sorts_by_priority() {
        let mut generic = sample();
        generic.name = "generic".into();
        generic.priority = 90;
        let mut custom = sample();
        custom.description = "mine".into();
        let merged = merge([generic, sample(), custom]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].name, "debian-live");
        assert_eq!(merged[0].description, "mine");
    }
}
