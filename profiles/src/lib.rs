//! Distro profiles: how isoroot recognises a live ISO and assembles its root.
//!
//! Profiles are written as YAML (one file per distro family, see `profiles/README.md`).
//! The init never parses YAML: the build and `isoroot mkinitramfs` turn profiles into the
//! *compact form*, `key value` lines with every field spelled out, which this crate also
//! reads without any dependency.

mod compact;
mod layers;
#[cfg(feature = "yaml")]
mod yaml;

pub use compact::{parse_compact, to_compact};
pub use layers::{chain, Lookup};
#[cfg(feature = "yaml")]
pub use yaml::from_yaml;

/// One distro family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// Profiles are tried in ascending priority; the first whose detection paths exist and
    /// whose image rules find images wins.
    pub priority: u32,
    /// Absolute paths inside the ISO that must all exist.
    pub detect: Vec<String>,
    /// Directory inside the ISO that holds the root images.
    pub dir: String,
    /// Image rules, tried in order; the first that finds images gives the layers.
    pub select: Vec<Select>,
    /// Where the ISO's filesystem is exposed in the booted system.
    pub medium: String,
    /// Where each root image is mounted, in a directory named after the image file.
    pub layers_at: String,
    /// The tmpfs that holds the overlay's `rw` and `work` directories.
    pub overlay_at: String,
    /// The init to exec in the new root unless `init=` says otherwise.
    pub init: String,
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

impl Profile {
    /// Checks what the schema cannot express; every way of making a profile ends here.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let bad = |msg: String| Err(ProfileError::Invalid { profile: self.name.clone(), msg });
        let name_ok = !self.name.is_empty()
            && self.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return bad("the name must be lowercase letters, digits and '-'".into());
        }
        if self.select.is_empty() {
            return bad("`images.select` names no rule".into());
        }
        let paths = self.detect.iter().chain([
            &self.dir,
            &self.medium,
            &self.layers_at,
            &self.overlay_at,
            &self.init,
        ]);
        for p in paths {
            if !p.starts_with('/') || p.split('/').any(|c| c == "..") || p.contains('\n') {
                return bad(format!("{p:?} must be an absolute path without '..'"));
            }
        }
        for rule in &self.select {
            let name = match rule {
                Select::CmdlineChain(key) => key,
                Select::InitrdChain { file, .. } => file,
                Select::Chain(n) | Select::File(n) => n,
                Select::Glob(g) if g.matches('*').count() > 1 => {
                    return bad(format!("glob {g:?} has more than one '*'"))
                }
                Select::Glob(g) => g,
            };
            if name.is_empty() || name.contains('\n') {
                return bad(format!("an image rule has an empty or multi-line value: {name:?}"));
            }
        }
        Ok(())
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
        ],
        medium: "/run/live/medium".into(),
        layers_at: "/run/live/rootfs".into(),
        overlay_at: "/run/live/overlay".into(),
        init: "/sbin/init".into(),
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
