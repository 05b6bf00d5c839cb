//! Resolving an absolute path inside an image (ISO 9660, squashfs) one component at a time,
//! with symlinks followed inside the image, never outside it.

use anyhow::{bail, Result};

const MAX_LINKS: usize = 40;

/// What a name in a directory is.
pub enum Next<N> {
    Node(N),
    Link(String),
    Missing,
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = String> + '_ {
    path.split('/').filter(|c| !c.is_empty()).map(String::from)
}

/// The node at `path` below `root`, or `None`; `child(dir, name)` looks one name up (and says
/// `Missing` when `dir` is not a directory).
pub fn resolve<N>(
    path: &str,
    root: N,
    mut child: impl FnMut(&N, &str) -> Result<Next<N>>,
) -> Result<Option<N>> {
    let mut todo: Vec<String> = components(path).rev().collect();
    let mut stack = vec![root];
    let mut links = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            _ => {}
        }
        match child(stack.last().expect("the root stays"), &c)? {
            Next::Missing => return Ok(None),
            Next::Node(n) => stack.push(n),
            Next::Link(target) => {
                links += 1;
                if links > MAX_LINKS {
                    bail!("too many symlinks resolving {path}");
                }
                if target.starts_with('/') {
                    stack.truncate(1);
                }
                todo.extend(components(&target).rev());
            }
        }
    }
    Ok(stack.pop())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn follows_links_inside_the_tree_and_stops_loops() {
        // path -> link target, or a plain entry.
        let tree: HashMap<&str, Option<&str>> = HashMap::from([
            ("/etc", None),
            ("/usr", None),
            ("/usr/lib", None),
            ("/usr/lib/os-release", None),
            ("/etc/os-release", Some("../usr/lib/os-release")),
            ("/lib", Some("usr/lib")),
            ("/loop", Some("/loop")),
        ]);
        let child = |dir: &String, name: &str| -> Result<Next<String>> {
            let path = format!("{}/{name}", dir.trim_end_matches('/'));
            Ok(match tree.get(path.as_str()) {
                Some(Some(target)) => Next::Link(target.to_string()),
                Some(None) => Next::Node(path),
                None => Next::Missing,
            })
        };
        let root = || "/".to_string();
        assert_eq!(
            resolve("/etc/os-release", root(), child).unwrap().as_deref(),
            Some("/usr/lib/os-release")
        );
        assert_eq!(
            resolve("/lib/os-release", root(), child).unwrap().as_deref(),
            Some("/usr/lib/os-release")
        );
        assert_eq!(resolve("/../../etc/nope", root(), child).unwrap(), None);
        assert!(resolve("/loop", root(), child).is_err());
    }
}
