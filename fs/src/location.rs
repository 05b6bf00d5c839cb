//! How isoroot names a file on a disk: `[SOURCE:]PATH`, the SOURCE a filesystem or partition
//! tag (read from superblocks and partition tables) or a kernel device name.

/// Where a block device is named: by filesystem or partition tag, or by kernel name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Uuid(String),
    Label(String),
    PartUuid(String),
    PartLabel(String),
    /// `/dev/NAME`
    Dev(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Source::Uuid(v) => write!(f, "UUID={v}"),
            Source::Label(v) => write!(f, "LABEL={v}"),
            Source::PartUuid(v) => write!(f, "PARTUUID={v}"),
            Source::PartLabel(v) => write!(f, "PARTLABEL={v}"),
            Source::Dev(v) => write!(f, "{v}"),
        }
    }
}

/// A file on a block device: `[SOURCE:]PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// None: search every block device.
    pub source: Option<Source>,
    /// Absolute and normalised, without `..`.
    pub path: String,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match &self.source {
            Some(s) => write!(f, "{s}:{}", self.path),
            None => write!(f, "{}", self.path),
        }
    }
}

/// A `key=value` word for the kernel command line, quoted when the value holds white space
/// (the kernel and isoroot's parser take the quotes off again).
pub fn word(key: &str, value: &str) -> String {
    if value.contains(char::is_whitespace) {
        format!("{key}=\"{value}\"")
    } else {
        format!("{key}={value}")
    }
}

/// Normalises an absolute path: `.` and empty components go, `..` is refused.
pub fn clean_path(p: &str) -> Option<String> {
    if !p.starts_with('/') {
        return None;
    }
    let mut parts = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(format!("/{}", parts.join("/")))
}

/// udev's `\x20`-style escapes in `/dev/disk/by-label/` names.
fn unescape_udev(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' {
            // Bytes, not a str slice: the two after `\x` may start a multi-byte character.
            let hex = std::str::from_utf8(&b[i + 2..i + 4]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `UUID=…`, `LABEL=…`, `PARTUUID=…`, `PARTLABEL=…`, `/dev/NAME`, and the udev symlinks
/// `/dev/disk/by-*/…` (there is no udev here to make them, so they become tags).
pub fn parse_source(s: &str) -> Option<Source> {
    let tagged = [
        ("UUID=", Source::Uuid as fn(String) -> Source),
        ("LABEL=", Source::Label),
        ("PARTUUID=", Source::PartUuid),
        ("PARTLABEL=", Source::PartLabel),
        ("/dev/disk/by-uuid/", Source::Uuid),
        ("/dev/disk/by-label/", Source::Label),
        ("/dev/disk/by-partuuid/", Source::PartUuid),
        ("/dev/disk/by-partlabel/", Source::PartLabel),
    ];
    for (prefix, make) in tagged {
        if let Some(v) = s.strip_prefix(prefix) {
            return (!v.is_empty()).then(|| make(unescape_udev(v)));
        }
    }
    let name = s.strip_prefix("/dev/")?;
    let ok = !name.is_empty() && name.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    ok.then(|| Source::Dev(s.to_string()))
}

const SOURCE_PREFIXES: &[&str] = &["UUID=", "LABEL=", "PARTUUID=", "PARTLABEL=", "/dev/"];

/// What [`parse_location`] takes, for messages.
pub const LOCATION_EXPECTED: &str = "[SOURCE:]/PATH with SOURCE one of UUID=, LABEL=, PARTUUID=, \
                                     PARTLABEL=, /dev/NAME, and PATH absolute without '..'";

/// `[SOURCE:]PATH`. A value that starts like a SOURCE is split at its first `:/`.
pub fn parse_location(v: &str) -> Option<Location> {
    let (source, path) = if SOURCE_PREFIXES.iter().any(|p| v.starts_with(p)) {
        let i = v.find(":/")?;
        (Some(parse_source(&v[..i])?), &v[i + 1..])
    } else {
        (None, v)
    };
    Some(Location { source, path: clean_path(path)? })
}

#[cfg(test)]
mod tests {
    #[test]
    fn udev_escapes_next_to_multibyte_characters() {
        // Found by `cargo fuzz run cmdline`: `\x1` followed by a two-byte character.
        assert_eq!(super::unescape_udev("a\\x1\u{3d9}b"), "a\\x1\u{3d9}b");
        assert_eq!(super::unescape_udev("MY\\x20USB"), "MY USB");
    }

    #[test]
    fn words_with_white_space_are_quoted() {
        assert_eq!(super::word("iso", "UUID=x:/my isos/a.iso"), "iso=\"UUID=x:/my isos/a.iso\"");
        assert_eq!(super::word("iso.extents", "1+2"), "iso.extents=1+2");
    }
}
