//! A newc ("070701") archive writer, the format the kernel unpacks into the initramfs.
//! Entries are kept sorted so that an archive is the same bytes for the same input, and
//! every parent directory is written before what it holds (or the kernel cannot unpack
//! the file).

use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::io::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    CharDev(u32, u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: Kind,
    perm: u32,
}

#[derive(Default)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

fn clean(path: &str) -> String {
    path.trim_matches('/').to_string()
}

impl Archive {
    fn insert(&mut self, path: &str, kind: Kind, perm: u32) {
        let path = clean(path);
        let mut parent = path.as_str();
        while let Some((p, _)) = parent.rsplit_once('/') {
            self.entries.entry(p.to_string()).or_insert(Entry { kind: Kind::Dir, perm: 0o755 });
            parent = p;
        }
        self.entries.insert(path, Entry { kind, perm });
    }

    pub fn dir(&mut self, path: &str) {
        self.insert(path, Kind::Dir, 0o755);
    }

    pub fn file(&mut self, path: &str, data: Vec<u8>, perm: u32) {
        self.insert(path, Kind::File(data), perm);
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.insert(path, Kind::Symlink(target.to_string()), 0o777);
    }

    pub fn char_dev(&mut self, path: &str, major: u32, minor: u32, perm: u32) {
        self.insert(path, Kind::CharDev(major, minor), perm);
    }

    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(&clean(path))
    }

    pub fn write(&self, out: &mut impl Write) -> Result<()> {
        let mut w = Counting { inner: out, n: 0 };
        for (ino, (path, e)) in self.entries.iter().enumerate() {
            let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match &e.kind {
                Kind::Dir => (0o040000, &[], (0, 0)),
                Kind::File(d) => (0o100000, d, (0, 0)),
                Kind::Symlink(t) => (0o120000, t.as_bytes(), (0, 0)),
                Kind::CharDev(ma, mi) => (0o020000, &[], (*ma, *mi)),
            };
            let nlink = if e.kind == Kind::Dir { 2 } else { 1 };
            if u32::try_from(data.len()).is_err() {
                bail!("{path} is larger than a newc archive can hold (4 GiB)");
            }
            header(&mut w, ino as u32 + 1, mode | e.perm, nlink, data.len() as u32, rdev, path)?;
            w.write_all(data)?;
            w.pad()?;
        }
        header(&mut w, 0, 0, 1, 0, (0, 0), "TRAILER!!!")?;
        Ok(())
    }
}

fn header(
    w: &mut Counting<impl Write>,
    ino: u32,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
    name: &str,
) -> Result<()> {
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
    write!(w, "070701")?;
    for f in fields {
        write!(w, "{f:08x}")?;
    }
    w.write_all(name.as_bytes())?;
    w.write_all(&[0])?;
    w.pad()
}

/// Tracks the offset for the 4-byte alignment of names and data.
struct Counting<'a, W: Write> {
    inner: &'a mut W,
    n: usize,
}

impl<W: Write> Counting<'_, W> {
    fn pad(&mut self) -> Result<()> {
        let pad = (4 - self.n % 4) % 4;
        self.write_all(&[0; 3][..pad])?;
        Ok(())
    }
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_first_aligned_and_deterministic() {
        let mut a = Archive::default();
        a.file("/lib/modules/x/a.ko", b"abc".to_vec(), 0o644);
        a.symlink("init", "isoroot/init");
        a.char_dev("dev/console", 5, 1, 0o600);
        let mut out = Vec::new();
        a.write(&mut out).unwrap();
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        let names: Vec<&str> = [
            "dev\0",
            "dev/console\0",
            "init\0",
            "lib\0",
            "lib/modules\0",
            "lib/modules/x\0",
            "lib/modules/x/a.ko\0",
            "TRAILER!!!\0",
        ]
        .into_iter()
        .collect();
        let mut at = 0;
        for n in names {
            let i = text[at..].find(n).unwrap_or_else(|| panic!("{n:?} missing or out of order"));
            at += i + n.len();
        }
        // The console node: mode 020600, rdev 5:1.
        let console: String =
            [0o020600, 0, 0, 1, 0, 0, 0, 0, 5, 1].iter().map(|f| format!("{f:08x}")).collect();
        assert!(text.contains(&console));
        let mut again = Vec::new();
        a.write(&mut again).unwrap();
        assert_eq!(out, again);
        // Each header starts aligned.
        for (i, _) in text.match_indices("070701") {
            assert_eq!(i % 4, 0);
        }
    }
}
