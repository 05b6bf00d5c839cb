//! Reading an ISO 9660 image without mounting it: volume descriptors, directories, Rock
//! Ridge names and symlinks (SUSP NM, SL, CE), Joliet names, and multi-extent files. Enough
//! for `isoroot inspect` to find a distro's layout, kernel and root images.

use crate::pathwalk::{self, Next};
use anyhow::{bail, Context, Result};
use std::io;

const SECTOR: u64 = 2048;
/// More directory entries than any real ISO has: a crafted image stops here.
const MAX_ENTRIES: usize = 1 << 16;

/// Something to read bytes from at an offset: the ISO file, a window of it, a buffer.
pub trait Source {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()>;
}

impl Source for std::fs::File {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, pos)
    }
}

impl Source for [u8] {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        let start = usize::try_from(pos).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start.checked_add(buf.len()).and_then(|end| self.get(start..end));
        buf.copy_from_slice(src.ok_or(io::ErrorKind::UnexpectedEof)?);
        Ok(())
    }
}

pub fn read_vec(src: &(impl Source + ?Sized), pos: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    src.read_at(&mut buf, pos)?;
    Ok(buf)
}

/// Which names the directories are read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    RockRidge,
    Joliet,
    /// Plain ISO 9660 (8.3-ish, upper case): compared case-insensitively.
    Iso9660,
}

impl Names {
    pub fn name(self) -> &'static str {
        match self {
            Names::RockRidge => "Rock Ridge",
            Names::Joliet => "Joliet",
            Names::Iso9660 => "ISO 9660",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub dir: bool,
    /// Byte ranges of the file in the image, in order (one unless multi-extent).
    pub extents: Vec<(u64, u64)>,
    pub symlink: Option<String>,
}

pub struct IsoFs<'a, S: Source + ?Sized> {
    src: &'a S,
    pub label: String,
    pub names: Names,
    root: Node,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// One directory record; `None` for a record too short to be one.
struct Record<'b> {
    extent: u64,
    size: u64,
    dir: bool,
    more: bool,
    raw_name: &'b [u8],
    system_use: &'b [u8],
}

fn record(r: &[u8]) -> Option<Record<'_>> {
    if r.len() < 34 {
        return None;
    }
    let name_len = usize::from(r[32]);
    let su_start = 33 + name_len + usize::from(name_len % 2 == 0);
    Some(Record {
        extent: u64::from(le32(r, 2)),
        size: u64::from(le32(r, 10)),
        dir: r[25] & 0x02 != 0,
        more: r[25] & 0x80 != 0,
        raw_name: r.get(33..33 + name_len)?,
        system_use: r.get(su_start.min(r.len())..).unwrap_or_default(),
    })
}

/// What a record's Rock Ridge entries say.
#[derive(Default)]
struct RockRidge {
    name: Option<String>,
    symlink: Option<String>,
    relocated: bool,
    child_link: Option<u64>,
}

impl<'a, S: Source + ?Sized> IsoFs<'a, S> {
    pub fn open(src: &'a S) -> Result<Self> {
        let mut primary = None;
        let mut joliet = None;
        for i in 16..64 {
            let vd = read_vec(src, i * SECTOR, SECTOR as usize).context("reading the volume descriptors")?;
            if &vd[1..6] != b"CD001" {
                if i == 16 && [b"BEA01", b"NSR02", b"NSR03"].iter().any(|m| &vd[1..6] == *m) {
                    bail!("a UDF-only image (no ISO 9660 directory tree): isoroot inspect reads ISO 9660");
                }
                bail!("not an ISO 9660 image: no volume descriptor at sector {i}");
            }
            match vd[0] {
                1 if primary.is_none() => primary = Some(vd),
                2 if vd[88] == b'%' && vd[89] == b'/' && matches!(vd[90], b'@' | b'C' | b'E') => {
                    joliet = Some(vd)
                }
                255 => break,
                _ => {}
            }
        }
        let pvd = primary.context("no primary volume descriptor")?;
        let label = String::from_utf8_lossy(&pvd[40..72]).trim_end().to_string();
        let root_of = |vd: &[u8]| -> Result<Node> {
            let r = record(&vd[156..190]).context("the root directory record is short")?;
            Ok(Node {
                name: String::new(),
                dir: true,
                extents: vec![(r.extent * SECTOR, r.size)],
                symlink: None,
            })
        };
        let mut fs = IsoFs { src, label, names: Names::Iso9660, root: root_of(&pvd)? };
        // Rock Ridge announces itself with SUSP's SP entry in the root's "." record.
        let first = fs.records(&fs.root.clone())?.into_iter().next();
        if first.is_some_and(|r| record(&r).is_some_and(|rec| rec.system_use.starts_with(b"SP"))) {
            fs.names = Names::RockRidge;
        } else if let Some(svd) = joliet {
            fs.root = root_of(&svd)?;
            fs.names = Names::Joliet;
        }
        Ok(fs)
    }

    /// The raw records of a directory (including "." and "..").
    fn records(&self, dir: &Node) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for &(start, len) in &dir.extents {
            let data = read_vec(self.src, start, usize::try_from(len.min(16 << 20))?)
                .with_context(|| format!("reading directory {:?}", dir.name))?;
            let mut at = 0;
            while at < data.len() {
                let n = usize::from(data[at]);
                if n == 0 {
                    // Records never cross a sector: the rest of this one is padding.
                    at = (at / SECTOR as usize + 1) * SECTOR as usize;
                    continue;
                }
                let Some(r) = data.get(at..at + n) else { break };
                out.push(r.to_vec());
                if out.len() > MAX_ENTRIES {
                    bail!("directory {:?} has more than {MAX_ENTRIES} entries", dir.name);
                }
                at += n;
            }
        }
        Ok(out)
    }

    fn rock_ridge(&self, mut su: Vec<u8>) -> RockRidge {
        let mut rr = RockRidge::default();
        let mut name = String::new();
        let mut link: Vec<String> = Vec::new();
        let mut continuation_areas = 0;
        let mut at = 0;
        while at + 4 <= su.len() {
            let (sig, len) = ([su[at], su[at + 1]], usize::from(su[at + 2]));
            if len < 4 || at + len > su.len() {
                break;
            }
            let e = su[at..at + len].to_vec();
            match &sig {
                b"NM" if len > 4 => {
                    name.push_str(&String::from_utf8_lossy(&e[5..]));
                    rr.name = Some(name.clone());
                }
                b"SL" if len > 5 => {
                    let mut c = 5;
                    while c + 2 <= e.len() {
                        let (flags, n) = (e[c], usize::from(e[c + 1]));
                        let part = e.get(c + 2..c + 2 + n).unwrap_or_default();
                        match flags & 0x0E {
                            0x02 => link.push(".".into()),
                            0x04 => link.push("..".into()),
                            0x08 => link.push(String::new()),
                            _ => link.push(String::from_utf8_lossy(part).into_owned()),
                        }
                        c += 2 + n;
                    }
                    rr.symlink = Some(if link == [""] { "/".into() } else { link.join("/") });
                }
                b"RE" => rr.relocated = true,
                b"CL" if len >= 12 => rr.child_link = Some(u64::from(le32(&e, 4)) * SECTOR),
                // The entries go on elsewhere (bounded: a crafted image could chain forever).
                b"CE" if len >= 28 && continuation_areas < 8 => {
                    continuation_areas += 1;
                    let pos = u64::from(le32(&e, 4)) * SECTOR + u64::from(le32(&e, 12));
                    if let Ok(more) = read_vec(self.src, pos, (le32(&e, 20) as usize).min(SECTOR as usize)) {
                        su.extend(more);
                    }
                }
                b"ST" => break,
                _ => {}
            }
            at += len;
        }
        rr
    }

    /// The entries of a directory, without "." and "..", multi-extent files joined.
    pub fn read_dir(&self, dir: &Node) -> Result<Vec<Node>> {
        let mut out: Vec<Node> = Vec::new();
        let mut continuing = false;
        for raw in self.records(dir)? {
            let Some(r) = record(&raw) else { continue };
            if r.raw_name == [0] || r.raw_name == [1] {
                continue;
            }
            let extent = (r.extent * SECTOR, r.size);
            if continuing {
                if let Some(last) = out.last_mut() {
                    last.extents.push(extent);
                }
                continuing = r.more;
                continue;
            }
            continuing = r.more;
            let mut node = Node { name: String::new(), dir: r.dir, extents: vec![extent], symlink: None };
            node.name = match self.names {
                Names::RockRidge => {
                    let rr = self.rock_ridge(r.system_use.to_vec());
                    if rr.relocated {
                        continue;
                    }
                    if let Some(at) = rr.child_link {
                        node.dir = true;
                        node.extents = vec![(at, SECTOR)];
                    }
                    node.symlink = rr.symlink;
                    rr.name.unwrap_or_else(|| plain_name(r.raw_name))
                }
                Names::Joliet => {
                    let units: Vec<u16> =
                        r.raw_name.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
                    strip_version(&String::from_utf16_lossy(&units)).to_string()
                }
                Names::Iso9660 => plain_name(r.raw_name),
            };
            out.push(node);
        }
        Ok(out)
    }

    fn same(&self, a: &str, b: &str) -> bool {
        match self.names {
            Names::RockRidge => a == b,
            Names::Joliet | Names::Iso9660 => a.eq_ignore_ascii_case(b),
        }
    }

    /// A file's contents, refused above `max` bytes.
    pub fn read_file(&self, node: &Node, max: u64) -> Result<Vec<u8>> {
        let size: u64 = node.extents.iter().map(|e| e.1).sum();
        if size > max {
            bail!("{} has {size} bytes, more than the {max} read here", node.name);
        }
        let mut out = Vec::with_capacity(size as usize);
        for &(start, len) in &node.extents {
            out.extend(
                read_vec(self.src, start, len as usize).with_context(|| format!("reading {}", node.name))?,
            );
        }
        Ok(out)
    }

    /// The node at an absolute path, symlinks followed within the image.
    pub fn lookup(&self, path: &str) -> Result<Option<Node>> {
        pathwalk::resolve(path, self.root.clone(), |dir, name| {
            if !dir.dir {
                return Ok(Next::Missing);
            }
            Ok(match self.read_dir(dir)?.into_iter().find(|n| self.same(&n.name, name)) {
                Some(Node { symlink: Some(target), .. }) => Next::Link(target),
                Some(node) => Next::Node(node),
                None => Next::Missing,
            })
        })
    }
}

fn strip_version(name: &str) -> &str {
    let name = name.split(';').next().unwrap_or(name);
    name.strip_suffix('.').unwrap_or(name)
}

/// Plain names lower-cased, as Linux's isofs shows them (map=normal).
fn plain_name(raw: &[u8]) -> String {
    strip_version(&String::from_utf8_lossy(raw)).to_ascii_lowercase()
}
