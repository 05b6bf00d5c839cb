//! Compiles the built-in profiles into the compact form the init embeds, so that the init
//! carries no YAML parser and a broken profile fails the build rather than a boot.

use std::{env, fs, path::PathBuf};

fn main() {
    let profiles = isoroot_profiles::builtin().unwrap_or_else(|e| panic!("{e}"));
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("profiles.compact");
    fs::write(out, isoroot_profiles::to_compact(&profiles)).expect("writing profiles.compact");
}
