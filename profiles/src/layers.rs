//! Which root images a profile mounts, and in which order.

use crate::{Profile, Select};

/// What the layer rules may ask about the ISO and the boot.
pub trait Lookup {
    /// Whether an absolute path exists inside the ISO.
    fn exists(&self, path: &str) -> bool;
    /// File names in a directory of the ISO (empty when it does not exist).
    fn list(&self, dir: &str) -> Vec<String>;
    /// The value of a kernel command line key.
    fn cmdline(&self, key: &str) -> Option<String>;
    /// `VAR=value` from a shell-style file in the initramfs.
    fn initrd_var(&self, file: &str, var: &str) -> Option<String>;
    /// The ISO's volume label.
    fn label(&self) -> Option<String>;
}

/// casper's layer chain: the lower layers are named by stripping the top layer's stem one
/// dot-suffix at a time (`minimal.standard.live.squashfs` sits on `minimal.standard.squashfs`
/// on `minimal.squashfs`). Returned bottom first.
pub fn chain(top: &str) -> Vec<String> {
    let (mut stem, ext) = match top.rfind('.') {
        Some(i) if i > 0 => (&top[..i], &top[i..]),
        _ => (top, ""),
    };
    let mut out = vec![top.to_string()];
    while let Some(i) = stem.rfind('.') {
        stem = &stem[..i];
        out.push(format!("{stem}{ext}"));
    }
    out.reverse();
    out
}

/// Whether `name` matches a pattern with at most one `*`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((pre, suf)) => {
            name.len() >= pre.len() + suf.len() && name.starts_with(pre) && name.ends_with(suf)
        }
        None => pattern == name,
    }
}

/// What [`find`] found for an ISO.
pub enum Match<'p> {
    /// This profile, and its root images (absolute paths in the ISO, bottom layer first).
    Found(&'p Profile, Vec<String>),
    /// The ISO is of a family that cannot boot through isoroot.
    Unsupported(&'p Profile),
    /// Nothing matched; why each profile did not, for the message.
    Nothing(Vec<String>),
}

/// The first profile (in the order given) that detects the ISO and finds its root images.
pub fn find<'p>(profiles: &'p [Profile], iso: &dyn Lookup) -> Result<Match<'p>, String> {
    let mut tried = Vec::new();
    for p in profiles {
        if !p.detected(iso) {
            let label = p.label.as_ref().map(|l| format!(" and label {l}")).unwrap_or_default();
            tried.push(format!("{} (needs {}{label})", p.name, p.detect.join(", ")));
            continue;
        }
        if p.unsupported.is_some() {
            return Ok(Match::Unsupported(p));
        }
        match p.layers(iso).map_err(|e| format!("profile {}: {e}", p.name))? {
            Some(layers) => return Ok(Match::Found(p, layers)),
            None => tried.push(format!("{} (no root image in {})", p.name, p.dir)),
        }
    }
    Ok(Match::Nothing(tried))
}

impl Profile {
    /// Whether every detection path (or one of its `|` alternatives) exists in the ISO and
    /// the label, if the profile names one, matches.
    pub fn detected(&self, iso: &dyn Lookup) -> bool {
        let label_ok = match &self.label {
            Some(pattern) => iso.label().is_some_and(|l| glob_match(pattern, &l)),
            None => true,
        };
        label_ok && self.detect.iter().all(|d| d.split('|').any(|p| iso.exists(p)))
    }

    fn in_dir(&self, name: &str) -> String {
        format!("{}/{}", self.dir.trim_end_matches('/'), name)
    }

    /// The root images as absolute paths in the ISO, bottom layer first; `Ok(None)` when no
    /// rule finds an image. A chain that names a missing layer is an error (casper refuses
    /// it too: a partial chain is not the distro's root).
    pub fn layers(&self, iso: &dyn Lookup) -> Result<Option<Vec<String>>, String> {
        for rule in &self.select {
            let top = match rule {
                Select::CmdlineChain(key) => match iso.cmdline(key) {
                    Some(top) => top,
                    None => continue,
                },
                Select::InitrdChain { file, var } => match iso.initrd_var(file, var) {
                    Some(top) => top,
                    None => continue,
                },
                Select::Chain(top) if iso.exists(&self.in_dir(top)) => top.clone(),
                Select::Chain(_) => continue,
                Select::File(name) => {
                    let path = self.in_dir(name);
                    if iso.exists(&path) {
                        return Ok(Some(vec![path]));
                    }
                    continue;
                }
                Select::Glob(pattern) => {
                    let mut names: Vec<String> =
                        iso.list(&self.dir).into_iter().filter(|n| glob_match(pattern, n)).collect();
                    if names.is_empty() {
                        continue;
                    }
                    names.sort();
                    return Ok(Some(names.iter().map(|n| self.in_dir(n)).collect()));
                }
                Select::Stack(layers) => {
                    let present: Vec<(String, bool)> =
                        layers.iter().map(|l| (self.in_dir(&l.name), l.optional)).collect();
                    if present.iter().any(|(p, optional)| !optional && !iso.exists(p)) {
                        continue;
                    }
                    let found = present.into_iter().filter(|(p, _)| iso.exists(p)).map(|(p, _)| p);
                    return Ok(Some(found.collect()));
                }
            };
            let top = top.rsplit('/').next().unwrap_or(&top).to_string();
            let layers: Vec<String> = chain(&top).iter().map(|n| self.in_dir(n)).collect();
            if let Some(missing) = layers.iter().find(|p| !iso.exists(p)) {
                return Err(format!("the layer chain of {top} needs {missing}, which the ISO lacks"));
            }
            return Ok(Some(layers));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sample, Layer};
    use std::collections::HashMap;

    #[derive(Default)]
    struct Fake {
        files: Vec<&'static str>,
        cmdline: HashMap<&'static str, &'static str>,
        initrd: Option<&'static str>,
        label: Option<&'static str>,
    }

    impl Lookup for Fake {
        fn exists(&self, path: &str) -> bool {
            self.files.iter().any(|f| *f == path || f.starts_with(&format!("{path}/")))
        }
        fn list(&self, dir: &str) -> Vec<String> {
            let prefix = format!("{dir}/");
            let mut v: Vec<String> = self
                .files
                .iter()
                .filter_map(|f| f.strip_prefix(&prefix))
                .map(|rest| rest.split('/').next().unwrap_or(rest).to_string())
                .collect();
            v.dedup();
            v
        }
        fn cmdline(&self, key: &str) -> Option<String> {
            self.cmdline.get(key).map(|v| v.to_string())
        }
        fn initrd_var(&self, _file: &str, _var: &str) -> Option<String> {
            self.initrd.map(String::from)
        }
        fn label(&self) -> Option<String> {
            self.label.map(String::from)
        }
    }

    const UBUNTU: &[&str] = &[
        "/casper/minimal.squashfs",
        "/casper/minimal.en.squashfs",
        "/casper/minimal.standard.squashfs",
        "/casper/minimal.standard.en.squashfs",
        "/casper/minimal.standard.live.squashfs",
        "/casper/minimal.enhanced-secureboot.squashfs",
    ];

    fn casper() -> Profile {
        Profile {
            dir: "/casper".into(),
            select: vec![
                Select::CmdlineChain("layerfs-path".into()),
                Select::InitrdChain {
                    file: "/conf/conf.d/default-layer.conf".into(),
                    var: "LAYERFS_PATH".into(),
                },
                Select::Chain("minimal.standard.live.squashfs".into()),
                Select::File("filesystem.squashfs".into()),
            ],
            ..sample()
        }
    }

    #[test]
    fn chain_strips_dot_suffixes() {
        assert_eq!(
            chain("minimal.standard.live.squashfs"),
            ["minimal.squashfs", "minimal.standard.squashfs", "minimal.standard.live.squashfs"]
        );
        assert_eq!(chain("filesystem.squashfs"), ["filesystem.squashfs"]);
        assert_eq!(chain("noext"), ["noext"]);
    }

    #[test]
    fn ubuntu_default_chain_skips_language_and_secureboot_layers() {
        let iso = Fake { files: UBUNTU.to_vec(), ..Fake::default() };
        assert_eq!(
            casper().layers(&iso).unwrap().unwrap(),
            [
                "/casper/minimal.squashfs",
                "/casper/minimal.standard.squashfs",
                "/casper/minimal.standard.live.squashfs"
            ]
        );
    }

    #[test]
    fn cmdline_then_initrd_choose_the_top_layer() {
        let mut iso =
            Fake { files: UBUNTU.to_vec(), initrd: Some("minimal.standard.squashfs"), ..Fake::default() };
        assert_eq!(casper().layers(&iso).unwrap().unwrap().len(), 2);
        iso.cmdline.insert("layerfs-path", "minimal.squashfs");
        assert_eq!(casper().layers(&iso).unwrap().unwrap(), ["/casper/minimal.squashfs"]);
    }

    #[test]
    fn a_broken_chain_is_an_error() {
        let iso = Fake {
            files: vec!["/casper/minimal.standard.live.squashfs", "/casper/minimal.squashfs"],
            ..Fake::default()
        };
        let err = casper().layers(&iso).unwrap_err();
        assert!(err.contains("/casper/minimal.standard.squashfs"), "{err}");
    }

    #[test]
    fn single_image_and_nothing() {
        let iso = Fake { files: vec!["/casper/filesystem.squashfs"], ..Fake::default() };
        assert_eq!(casper().layers(&iso).unwrap().unwrap(), ["/casper/filesystem.squashfs"]);
        let iso = Fake { files: vec!["/casper/other"], ..Fake::default() };
        assert_eq!(casper().layers(&iso).unwrap(), None);
    }

    #[test]
    fn glob_takes_every_match_in_name_order() {
        let p = Profile { select: vec![Select::Glob("*.squashfs".into())], ..sample() };
        let iso = Fake {
            files: vec!["/live/z.squashfs", "/live/filesystem.squashfs", "/live/vmlinuz", "/live/.squashfs"],
            ..Fake::default()
        };
        assert_eq!(
            p.layers(&iso).unwrap().unwrap(),
            ["/live/.squashfs", "/live/filesystem.squashfs", "/live/z.squashfs"]
        );
        assert!(glob_match("a*", "a"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn detection_needs_every_path_and_the_label() {
        let p = Profile { detect: vec!["/live".into(), "/.disk/info|/.disk/id".into()], ..sample() };
        assert!(!p.detected(&Fake { files: vec!["/live/x"], ..Fake::default() }));
        assert!(p.detected(&Fake { files: vec!["/live/x", "/.disk/info"], ..Fake::default() }));
        assert!(p.detected(&Fake { files: vec!["/live/x", "/.disk/id"], ..Fake::default() }));
        let p = Profile { label: Some("VOID_*".into()), ..p };
        assert!(!p.detected(&Fake { files: vec!["/live/x", "/.disk/id"], ..Fake::default() }));
        let iso = Fake { files: vec!["/live/x", "/.disk/id"], label: Some("VOID_LIVE"), ..Fake::default() };
        assert!(p.detected(&iso));
    }

    #[test]
    fn a_stack_keeps_its_order_and_skips_optional_layers() {
        let p = Profile {
            dir: "/manjaro/x86_64".into(),
            select: vec![Select::Stack(
                ["rootfs.sfs", "desktopfs.sfs?", "mhwdfs.sfs?", "livefs.sfs?"].map(Layer::parse).to_vec(),
            )],
            ..sample()
        };
        let files =
            vec!["/manjaro/x86_64/livefs.sfs", "/manjaro/x86_64/rootfs.sfs", "/manjaro/x86_64/desktopfs.sfs"];
        let iso = Fake { files, ..Fake::default() };
        assert_eq!(
            p.layers(&iso).unwrap().unwrap(),
            ["/manjaro/x86_64/rootfs.sfs", "/manjaro/x86_64/desktopfs.sfs", "/manjaro/x86_64/livefs.sfs"]
        );
        let iso = Fake { files: vec!["/manjaro/x86_64/livefs.sfs"], ..Fake::default() };
        assert_eq!(p.layers(&iso).unwrap(), None, "rootfs.sfs is required");
    }
}
