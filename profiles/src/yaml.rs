//! Reading the YAML form (host side). Defaults live here and nowhere else: the compact form
//! written from a parsed profile spells every field out.

use crate::{Layer, Profile, ProfileError, Select, Strategy};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Yaml {
    name: String,
    description: String,
    #[serde(default = "default_priority")]
    priority: u32,
    #[serde(default)]
    detect: Vec<String>,
    label: Option<String>,
    unsupported: Option<String>,
    #[serde(default)]
    strategy: YamlStrategy,
    #[serde(default)]
    cmdline: String,
    #[serde(default)]
    kernel: Vec<String>,
    #[serde(default)]
    initrd: Vec<String>,
    #[serde(default)]
    images: Option<Images>,
    #[serde(default = "default_medium")]
    medium: String,
    #[serde(default = "default_layers_at")]
    layers_at: String,
    #[serde(default = "default_overlay_at")]
    overlay_at: String,
    #[serde(default = "default_overlay_on")]
    overlay_on: String,
    /// `init: ~` means init= is required.
    #[serde(default = "default_init")]
    init: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
enum YamlStrategy {
    #[default]
    SwitchRoot,
    Handoff,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Images {
    dir: String,
    // `- glob: "*.squashfs"` rather than YAML tags (`- !glob "*.squashfs"`).
    #[serde(with = "serde_norway::with::singleton_map_recursive")]
    select: Vec<Rule>,
    #[serde(default)]
    nested: Vec<String>,
    #[serde(default = "default_outer_at")]
    outer_at: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
enum Rule {
    CmdlineChain(String),
    /// `"VAR FILE"`, e.g. `LAYERFS_PATH /conf/conf.d/default-layer.conf`.
    InitrdChain(String),
    Chain(String),
    File(String),
    Glob(String),
    /// Bottom first; `name?` is optional.
    Stack(Vec<String>),
}

fn default_priority() -> u32 {
    50
}
fn default_medium() -> String {
    "/run/isoroot/medium".into()
}
fn default_layers_at() -> String {
    "/run/isoroot/layers/{name}".into()
}
fn default_outer_at() -> String {
    "/run/isoroot/outer/{name}".into()
}
fn default_overlay_at() -> String {
    "/run/isoroot/overlay".into()
}
fn default_overlay_on() -> String {
    "/".into()
}
fn default_init() -> Option<String> {
    Some("/sbin/init".into())
}

/// Parses and validates one profile file.
pub fn from_yaml(text: &str) -> Result<Profile, ProfileError> {
    let y: Yaml = serde_norway::from_str(text).map_err(|e| ProfileError::Yaml(e.to_string()))?;
    let images = y.images.unwrap_or(Images {
        dir: "/".into(),
        select: Vec::new(),
        nested: Vec::new(),
        outer_at: default_outer_at(),
    });
    let select = images
        .select
        .into_iter()
        .map(|r| match r {
            Rule::CmdlineChain(k) => Ok(Select::CmdlineChain(k)),
            Rule::InitrdChain(s) => match s.split_once(' ') {
                Some((var, file)) => Ok(Select::InitrdChain { file: file.into(), var: var.into() }),
                None => Err(ProfileError::Invalid {
                    profile: y.name.clone(),
                    msg: format!("initrd-chain takes \"VAR FILE\", found {s:?}"),
                }),
            },
            Rule::Chain(n) => Ok(Select::Chain(n)),
            Rule::File(n) => Ok(Select::File(n)),
            Rule::Glob(g) => Ok(Select::Glob(g)),
            Rule::Stack(names) => Ok(Select::Stack(names.iter().map(|n| Layer::parse(n)).collect())),
        })
        .collect::<Result<_, _>>()?;
    let p = Profile {
        name: y.name,
        description: y.description,
        priority: y.priority,
        detect: y.detect,
        label: y.label,
        unsupported: y.unsupported,
        strategy: match y.strategy {
            YamlStrategy::SwitchRoot => Strategy::SwitchRoot,
            YamlStrategy::Handoff => Strategy::Handoff,
        },
        cmdline: y.cmdline,
        kernel: y.kernel,
        initrd: y.initrd,
        dir: images.dir,
        select,
        nested: images.nested,
        outer_at: images.outer_at,
        medium: y.medium,
        layers_at: y.layers_at,
        overlay_at: y.overlay_at,
        overlay_on: y.overlay_on,
        init: y.init,
    };
    p.validate()?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_profile_with_defaults() {
        let p = from_yaml(
            "name: x\ndescription: X\nimages:\n  dir: /x\n  select:\n    - initrd-chain: V /f\n    - glob: \"*.sfs\"\n",
        )
        .unwrap();
        assert_eq!(p.priority, 50);
        assert_eq!(p.medium, "/run/isoroot/medium");
        assert_eq!(
            p.select,
            [Select::InitrdChain { file: "/f".into(), var: "V".into() }, Select::Glob("*.sfs".into())]
        );
    }

    #[test]
    fn unknown_fields_are_errors() {
        let e = from_yaml("name: x\ndescription: X\nmeduim: /m\nimages: {dir: /, select: [file: a]}\n");
        assert!(matches!(e, Err(ProfileError::Yaml(m)) if m.contains("meduim")));
    }

    #[test]
    fn every_shipped_profile_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                from_yaml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 10, "found {n} profiles");
    }
}
