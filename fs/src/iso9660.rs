//! ISO 9660 images, read without mounting them. At boot, [`check`]: is this file an ISO
//! image, and is it whole (before anything is attached, so that a wrong or truncated file
//! gets a message instead of a mount error). On the host, [`IsoFs`]: volume descriptors,
//! directories, Rock Ridge names and symlinks (SUSP NM, SL, CE), Joliet names and
//! multi-extent files, enough for `isoroot inspect` to find a distro's layout, kernel and
//! root images.

use crate::pathwalk::{self, Next};
use crate::superblock::{self, FsKind};
use crate::{human_size, le32, read_vec, ReadAt};
use anyhow::{bail, Context, Result};

const SECTOR: u64 = 2048;
/// More directory entries than any real ISO has: a crafted image stops here.
const MAX_ENTRIES: usize = 1 << 16;

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

pub struct IsoFs<'a, S: ReadAt + ?Sized> {
    src: &'a S,
    pub label: String,
    pub names: Names,
    root: Node,
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

impl<'a, S: ReadAt + ?Sized> IsoFs<'a, S> {
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

/// The system area (16 sectors) and one volume descriptor.
const MIN_LEN: u64 = 17 * SECTOR;

#[derive(Debug, PartialEq, Eq)]
pub struct IsoInfo {
    /// `iso9660`, or `udf` for UDF-only images.
    pub fstype: &'static str,
    pub label: Option<String>,
}

fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| if b.is_ascii_graphic() { (b as char).to_string() } else { format!("\\x{b:02x}") })
        .collect()
}

/// Whether a file of `len` bytes can hold an ISO at all.
pub fn check_len(len: u64, name: &str) -> Result<()> {
    if len < MIN_LEN {
        bail!(
            "{name} is not an ISO image: it has {len} bytes, an ISO 9660 image has at least \
             {MIN_LEN} (a volume descriptor at byte 32768); is it an empty or truncated copy?"
        );
    }
    Ok(())
}

/// Checks the volume descriptor at byte 32768 and that the file holds the whole volume.
pub fn check(file: &(impl ReadAt + ?Sized), len: u64, name: &str) -> Result<IsoInfo> {
    check_len(len, name)?;
    let mut pvd = [0u8; SECTOR as usize];
    file.read_at(16 * SECTOR, &mut pvd)?;
    match &pvd[1..6] {
        b"CD001" => {}
        b"BEA01" => return Ok(IsoInfo { fstype: "udf", label: None }),
        found => {
            let what = match superblock::probe(file) {
                Ok(Some(fs)) => format!("it holds a {} filesystem", fs.kind.name()),
                _ => format!("found {:?}", printable(found)),
            };
            bail!("{name} is not an ISO 9660 or UDF image: expected \"CD001\" at byte 32769, {what}");
        }
    }
    let blocks = u64::from(u32::from_le_bytes(pvd[80..84].try_into().unwrap()));
    let block_len = u64::from(u16::from_le_bytes([pvd[128], pvd[129]]));
    let want = blocks * block_len;
    if want > len {
        bail!(
            "{name} is truncated: its volume descriptor says {} ({want} bytes), the file has {} \
             ({len} bytes); copy it again",
            human_size(want),
            human_size(len)
        );
    }
    let label = superblock::probe(file)?.filter(|f| f.kind == FsKind::Iso9660).and_then(|f| f.label);
    Ok(IsoInfo { fstype: "iso9660", label })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(blocks: u32) -> Vec<u8> {
        let mut d = vec![0u8; 18 * SECTOR as usize];
        let p = 16 * SECTOR as usize;
        d[p] = 1;
        d[p + 1..p + 6].copy_from_slice(b"CD001");
        d[p + 40..p + 72].copy_from_slice(format!("{:<32}", "LIVE").as_bytes());
        d[p + 80..p + 84].copy_from_slice(&blocks.to_le_bytes());
        d[p + 128..p + 130].copy_from_slice(&2048u16.to_le_bytes());
        d
    }

    #[test]
    fn a_whole_iso_passes() {
        let d = volume(18);
        let info = check(&d[..], d.len() as u64, "/a.iso").unwrap();
        assert_eq!(info, IsoInfo { fstype: "iso9660", label: Some("LIVE".into()) });
    }

    #[test]
    fn truncated_empty_and_foreign_files_say_what_they_are() {
        let d = volume(1000);
        let e = check(&d[..], d.len() as u64, "/a.iso").unwrap_err().to_string();
        assert!(e.starts_with("/a.iso is truncated: its volume descriptor says 2.0 MiB (2048000 bytes), the file has 36.0 KiB (36864 bytes)"), "{e}");
        let e = check(&[][..], 0, "/e.iso").unwrap_err().to_string();
        assert!(e.contains("it has 0 bytes"), "{e}");
        let e = check(&vec![b'x'; 40000][..], 40000, "/x.iso").unwrap_err().to_string();
        assert!(e.contains("expected \"CD001\" at byte 32769, found \"xxxxx\""), "{e}");
        let mut ext4 = vec![0u8; 40000];
        ext4[0x438] = 0x53;
        ext4[0x439] = 0xEF;
        let e = check(&ext4[..], 40000, "/x.iso").unwrap_err().to_string();
        assert!(e.ends_with("it holds a ext4 filesystem"), "{e}");
    }
}
