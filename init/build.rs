//! Compiles `profiles/*.yaml` into the compact form the init embeds, so that the init carries
//! no YAML parser and a broken profile fails the build rather than a boot.

use std::{env, fs, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../profiles");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut profiles = Vec::new();
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("reading profiles/")
        .map(|e| e.expect("reading profiles/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
        let text = fs::read_to_string(&path).expect("reading a profile");
        let profile =
            isoroot_profiles::from_yaml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        profiles.push(profile);
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("profiles.compact");
    fs::write(out, isoroot_profiles::to_compact(&profiles)).expect("writing profiles.compact");
}
