//! Resolving an absolute path one component at a time, with symlinks followed inside the
//! tree, never out of it: in an image (ISO 9660, squashfs), on a filesystem read without
//! mounting it (ext4), or below a mount point (the init's `paths`). `..` at the top stays at
//! the top, and an absolute link target starts again from the tree's root, as in a chroot.

use anyhow::Result;
use std::fmt;

/// Links followed before a walk gives up, as the kernel's ELOOP limit.
pub const MAX_LINKS: usize = 40;
/// The longest link target a walk takes: PATH_MAX, so that a crafted tree cannot make the
/// walk hold more than 40 of them.
pub const MAX_LINK: usize = 4096;

/// A link the walk does not follow: one too many, or a target longer than [`MAX_LINK`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLink {
    pub path: String,
    pub why: &'static str,
}

impl fmt::Display for BadLink {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.why)
    }
}

impl std::error::Error for BadLink {}

/// A walk in progress: the nodes from the root to the current directory, and the names
/// still to look up. Readers drive it: [`Walk::next_name`], look the name up in
/// [`Walk::dir`], then [`Walk::enter`] the node found or [`Walk::follow`] the link.
pub struct Walk<N> {
    path: String,
    todo: Vec<String>,
    nodes: Vec<N>,
    names: Vec<String>,
    links: usize,
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = String> + '_ {
    path.split('/').filter(|c| !c.is_empty() && *c != ".").map(String::from)
}

impl<N> Walk<N> {
    pub fn new(path: &str, root: N) -> Self {
        Walk {
            path: path.to_string(),
            todo: components(path).rev().collect(),
            nodes: vec![root],
            names: Vec::new(),
            links: 0,
        }
    }

    /// The next name to look up in [`Walk::dir`]; `..` is taken care of here.
    pub fn next_name(&mut self) -> Option<String> {
        while let Some(c) = self.todo.pop() {
            if c != ".." {
                return Some(c);
            }
            if self.nodes.len() > 1 {
                self.nodes.pop();
                self.names.pop();
            }
        }
        None
    }

    /// Whether the name last returned is the path's last.
    pub fn at_last(&self) -> bool {
        self.todo.is_empty()
    }

    pub fn dir(&self) -> &N {
        self.nodes.last().expect("the root stays")
    }

    /// The directory reached, as a path from the root: `/isos`.
    pub fn dir_path(&self) -> String {
        format!("/{}", self.names.join("/"))
    }

    pub fn enter(&mut self, name: String, node: N) {
        self.nodes.push(node);
        self.names.push(name);
    }

    /// Goes on at a symlink's target instead of the name that was a link.
    pub fn follow(&mut self, target: &str) -> Result<(), BadLink> {
        self.links += 1;
        let why = if self.links > MAX_LINKS {
            Some("too many levels of symbolic links")
        } else if target.len() > MAX_LINK {
            Some("a symbolic link longer than 4096 bytes")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(BadLink { path: self.path.clone(), why });
        }
        if target.starts_with('/') {
            self.nodes.truncate(1);
            self.names.clear();
        }
        self.todo.extend(components(target).rev());
        Ok(())
    }

    /// The node the path names, once [`Walk::next_name`] has run out.
    pub fn into_node(mut self) -> N {
        self.nodes.pop().expect("the root stays")
    }
}

/// What a name in a directory is.
pub enum Next<N> {
    Node(N),
    Link(String),
    Missing,
}

/// The node at `path` below `root`, or `None`; `child(dir, name)` looks one name up (and says
/// `Missing` when `dir` is not a directory).
pub fn resolve<N>(
    path: &str,
    root: N,
    mut child: impl FnMut(&N, &str) -> Result<Next<N>>,
) -> Result<Option<N>> {
    let mut walk = Walk::new(path, root);
    while let Some(name) = walk.next_name() {
        match child(walk.dir(), &name)? {
            Next::Missing => return Ok(None),
            Next::Node(n) => walk.enter(name, n),
            Next::Link(target) => walk.follow(&target)?,
        }
    }
    Ok(Some(walk.into_node()))
}

/// A directory listing cut to a readable length, for messages about a missing name.
pub fn sample(names: &[String]) -> String {
    const MAX: usize = 20;
    if names.is_empty() {
        return "(empty)".into();
    }
    let mut s = names.iter().take(MAX).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > MAX {
        s.push_str(&format!(", … ({} more)", names.len() - MAX));
    }
    s
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
        // A target longer than PATH_MAX is refused, not walked.
        let mut walk = Walk::new("/a", ());
        assert_eq!(walk.next_name().as_deref(), Some("a"));
        let e = walk.follow(&"x/".repeat(MAX_LINK)).unwrap_err();
        assert_eq!(e.to_string(), "/a: a symbolic link longer than 4096 bytes");
    }

    #[test]
    fn sample_cuts_long_listings() {
        let names: Vec<String> = (0..25).map(|i| format!("f{i}")).collect();
        assert!(sample(&names).ends_with("f19, … (5 more)"));
        assert_eq!(sample(&[]), "(empty)");
    }
}
