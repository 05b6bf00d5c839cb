//! Lists `profiles/*.yaml` for [`builtin`](../src/lib.rs), so that the host tool and the
//! init's build read the same files, embedded at compile time.

use std::{env, fs, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("reading profiles/")
        .map(|e| e.expect("reading profiles/").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    let mut list = String::from("&[\n");
    for path in paths {
        println!("cargo:rerun-if-changed={}", path.display());
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        list.push_str(&format!("    ({name:?}, include_str!({:?})),\n", path.display().to_string()));
    }
    list.push(']');
    fs::write(PathBuf::from(env::var("OUT_DIR").unwrap()).join("builtin.rs"), list)
        .expect("writing builtin.rs");
}
