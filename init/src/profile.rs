//! The profiles the init knows: built in at compile time, plus files that
//! `isoroot mkinitramfs --profile` (or a distro initrd) put in the initramfs.

use anyhow::{Context, Result};
use isoroot_profiles::layout::PROFILE_DIR;
use isoroot_profiles::{merge, parse_compact, Profile};
use std::path::Path;

const BUILTIN: &str = include_str!(concat!(env!("OUT_DIR"), "/profiles.compact"));

pub fn builtin() -> Vec<Profile> {
    // build.rs wrote this from validated profiles; a unit test parses it too.
    parse_compact(BUILTIN).unwrap_or_default()
}

/// Built-in profiles, overridden or extended by `*.profile` files in [`PROFILE_DIR`].
pub fn load() -> Result<Vec<Profile>> {
    let mut all = builtin();
    let Ok(entries) = std::fs::read_dir(PROFILE_DIR) else {
        return Ok(merge(all));
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "profile"))
        .collect();
    files.sort();
    for f in files {
        all.extend(read(&f)?);
    }
    Ok(merge(all))
}

fn read(path: &Path) -> Result<Vec<Profile>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_compact(&text).with_context(|| format!("profile file {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_builtin_profiles_parse() {
        let names: Vec<String> = super::builtin().into_iter().map(|p| p.name).collect();
        assert!(names.len() >= 13, "{names:?}");
        let merged: Vec<String> =
            isoroot_profiles::merge(super::builtin()).into_iter().map(|p| p.name).collect();
        assert_eq!(merged.first().map(String::as_str), Some("tails"));
        assert_eq!(merged.last().map(String::as_str), Some("generic"));
    }
}
