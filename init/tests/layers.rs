//! The init's modules in layers (docs/architecture.md): parsers, kernel interfaces, boot
//! steps, the boot, PID 1. A module may use only modules listed before it, so the table is
//! also the order in which to read them, and no two modules can import each other.

use std::collections::BTreeSet;
use std::path::Path;

const LAYERS: &[(&str, &[&str])] = &[
    ("parsers", &["net::url", "cmdline", "net::ipconf", "modindex"]),
    (
        "kernel interfaces",
        &[
            "console",
            "meminfo",
            "timings",
            "wait",
            "rescue",
            "progress",
            "paths",
            "profile",
            "dm",
            "loopdev",
            "mount",
            "modules",
            "blockdev",
            "devices",
            "kexec",
            "net::rtnl",
            "net::dhcp",
            "net::dns",
            "net::link",
        ],
    ),
    (
        "boot steps",
        &[
            "verify",
            "locate",
            "attach",
            "persist",
            "liveroot",
            "handoff",
            "toram",
            "switchroot",
            "picker",
            "net::http",
            "net::nbd",
            "net",
        ],
    ),
    ("the boot", &["boot"]),
    ("PID 1", &["pid1"]),
];

/// The console's macros (`crate::info!`) are exported at the crate root.
const MACROS: &[&str] = &["error", "warn", "info", "debug"];

/// `src/net/http.rs` → `net::http`, `src/net/mod.rs` → `net`.
fn module_of(rel: &Path) -> String {
    let parts: Vec<String> =
        rel.with_extension("").iter().map(|p| p.to_string_lossy().into_owned()).collect();
    match parts.as_slice() {
        [dir, m] if m == "mod" => dir.clone(),
        _ => parts.join("::"),
    }
}

fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The module a path names: `attach::{self, X}` → `attach`, `net::http::to_ram` → `net::http`.
fn target(path: &str) -> String {
    let first = ident(path);
    if MACROS.contains(&first) && path[first.len()..].starts_with('!') {
        return "console".into();
    }
    if first == "net" {
        if let Some(rest) = path[3..].strip_prefix("::") {
            let second = ident(rest);
            if !second.is_empty() {
                return format!("net::{second}");
            }
        }
    }
    first.to_string()
}

/// The code of a file without its test modules (`#[cfg(test)] mod …`), which come last
/// and may use anything.
fn without_tests(text: &str) -> &str {
    let mut at = 0;
    while let Some(i) = text[at..].find("#[cfg(test)]\n") {
        let start = at + i;
        let next = text[start..].lines().nth(1).unwrap_or("").trim_start();
        if next.starts_with("mod ") || next.starts_with("pub mod ") {
            return &text[..start];
        }
        at = start + 1;
    }
    text
}

/// Every module of `modules` that `text` (the code of `module`, tests left out) names.
fn uses(module: &str, text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let code = without_tests(text);
    let code: String =
        code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut out = BTreeSet::new();
    // `super::` in a submodule file names its parent, in a top-level file the crate root, and
    // in an inline module (`mod ioctl { use super::… }`) the file's own items: only names of
    // modules count.
    let parent = module.rsplit_once("::").map(|(p, _)| p);
    for (prefix, base) in [("crate::", None), ("super::", parent)] {
        let mut rest = code.as_str();
        while let Some(i) = rest.find(prefix) {
            rest = &rest[i + prefix.len()..];
            let items: Vec<&str> = match rest.strip_prefix('{') {
                // `use crate::{a, b::c}`: the first segment of each item at the top level.
                Some(group) => {
                    let mut depth = 0;
                    let end = group
                        .char_indices()
                        .find(|&(_, c)| {
                            depth += match c {
                                '{' => 1,
                                '}' => -1,
                                _ => 0,
                            };
                            depth < 0
                        })
                        .map_or(group.len(), |(i, _)| i);
                    let mut items = Vec::new();
                    let (mut depth, mut start) = (0, 0);
                    for (i, c) in group[..end].char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' => depth -= 1,
                            ',' if depth == 0 => {
                                items.push(group[start..i].trim());
                                start = i + 1;
                            }
                            _ => {}
                        }
                    }
                    items.push(group[start..end].trim());
                    items
                }
                None => vec![rest],
            };
            for item in items.into_iter().filter(|i| !i.is_empty()) {
                let name = match base {
                    Some(b) => target(&format!("{b}::{item}")),
                    None => target(item),
                };
                if name != module && (prefix == "crate::" || modules.contains(&name)) {
                    out.insert(name);
                }
            }
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_use_only_the_layers_below_them() {
    let order: Vec<&str> = LAYERS.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    let rank = |m: &str| order.iter().position(|o| *o == m);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f.strip_prefix(&src).unwrap())).collect();
    let mut wrong = Vec::new();
    let mut seen = BTreeSet::new();
    for file in files {
        let module = module_of(file.strip_prefix(&src).unwrap());
        if module == "lib" || module == "main" {
            continue;
        }
        let Some(mine) = rank(&module) else {
            wrong.push(format!("{module} is in no layer: add it to LAYERS"));
            continue;
        };
        seen.insert(module.clone());
        for used in uses(&module, &std::fs::read_to_string(&file).unwrap(), &modules) {
            match rank(&used) {
                Some(r) if r < mine => {}
                Some(_) => wrong.push(format!("{module} uses {used}, which is not below it")),
                None => wrong.push(format!("{module} uses {used}, which is in no layer")),
            }
        }
    }
    for m in &order {
        if !seen.contains(*m) {
            wrong.push(format!("LAYERS names {m}, which has no source file"));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn the_reader_of_uses_sees_groups_paths_macros_and_super() {
    let text = "use crate::{attach::{self, Attached}, dm};\nuse super::{dns, link::Net};\n\
                fn f() { crate::info!(\"x\"); crate::net::http::to_ram(); }\n\
                // crate::pid1 in a comment\n#[cfg(test)]\nmod tests { use crate::boot; }";
    let modules: BTreeSet<String> =
        ["attach", "dm", "net::dns", "net::link"].iter().map(|m| m.to_string()).collect();
    let got: Vec<String> = uses("net::nbd", text, &modules).into_iter().collect();
    assert_eq!(got, ["attach", "console", "dm", "net::dns", "net::http", "net::link"]);
    // In a top-level file `super::` is the crate root; in an inline module, the file.
    let text = "use super::attach;\nmod ioctl { use super::DmIoctl; }\n#[cfg(test)]\npub mod recording { use crate::boot; }";
    let got: Vec<String> = uses("dm", text, &modules).into_iter().collect();
    assert_eq!(got, ["attach"]);
}
