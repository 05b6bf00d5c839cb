//! `isoroot extents FILE`: where a file lies on its block device, as the command-line words
//! (or map file) that let the init map it with dm-linear instead of mounting the host.

use crate::cpio::Archive;
use anyhow::{bail, Context, Result};
use isoroot_fs::extents::{self, Covers, Extent, Fingerprint};
use isoroot_fs::location::{word, Location, Source};
use isoroot_fs::{filemap, superblock, ReadAt};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Above this the words no longer leave room on the 2048-byte x86 command line.
const MAX_WORDS: usize = 1024;
const MAP_DIR: &str = "/etc/isoroot/maps";

mod fiemap {
    //! FS_IOC_FIEMAP, after <linux/fiemap.h>.
    pub const FLAG_SYNC: u32 = 0x1;
    pub const EXTENT_LAST: u32 = 0x1;
    /// Flags that mean the physical address is not where the bytes are, or not yet.
    pub const UNMAPPABLE: &[(u32, &str)] = &[
        (0x2, "unknown location"),
        (0x4, "delayed allocation"),
        (0x8, "encoded (compressed)"),
        (0x80, "encrypted"),
        (0x100, "not block-aligned"),
        (0x200, "inline in metadata"),
        (0x400, "packed in a tail block"),
        (0x800, "unwritten (preallocated)"),
    ];

    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    pub struct Extent {
        pub logical: u64,
        pub physical: u64,
        pub length: u64,
        pub reserved64: [u64; 2],
        pub flags: u32,
        pub reserved: [u32; 3],
    }

    #[repr(C)]
    pub struct Request {
        pub start: u64,
        pub length: u64,
        pub flags: u32,
        pub mapped_extents: u32,
        pub extent_count: u32,
        pub reserved: u32,
        pub extents: [Extent; 256],
    }

    // The ioctl number encodes the size of the header only (32 bytes).
    nix::ioctl_readwrite_bad!(fs_ioc_fiemap, nix::request_code_readwrite!(b'f', 11, 32), Request);
}

/// Physical extents of `file` in bytes: (offset on the device, length), in file order.
fn physical_extents(file: &File, len: u64, name: &str) -> Result<Vec<(u64, u64)>> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut next = 0u64;
    loop {
        let mut req = Box::new(fiemap::Request {
            start: next,
            length: u64::MAX - next,
            flags: fiemap::FLAG_SYNC,
            mapped_extents: 0,
            extent_count: 256,
            reserved: 0,
            extents: [fiemap::Extent::default(); 256],
        });
        // SAFETY: `req` is a valid fiemap request with room for `extent_count` extents.
        unsafe { fiemap::fs_ioc_fiemap(file.as_raw_fd(), &mut *req) }
            .with_context(|| format!("ioctl(FS_IOC_FIEMAP) on {name}"))?;
        let got = &req.extents[..req.mapped_extents as usize];
        if got.is_empty() {
            break;
        }
        for e in got {
            if let Some((_, why)) = fiemap::UNMAPPABLE.iter().find(|(f, _)| e.flags & f != 0) {
                bail!(
                    "{name} has an extent at byte {} that is {why}: its sectors cannot be named",
                    e.logical
                );
            }
            if e.logical != next {
                bail!(
                    "{name} is sparse (a hole at byte {next}): a hole has no sectors to map; rewrite it \
                     densely, e.g. `cp --sparse=never FILE NEW && mv NEW FILE`"
                );
            }
            let length = e.length.min(len - e.logical);
            match out.last_mut() {
                Some((p, l)) if *p + *l == e.physical => *l += length,
                _ => out.push((e.physical, length)),
            }
            next = e.logical + e.length;
        }
        if got.last().is_some_and(|e| e.flags & fiemap::EXTENT_LAST != 0) || next >= len {
            break;
        }
    }
    if next < len {
        bail!("{name}: the filesystem mapped {next} of {len} bytes");
    }
    Ok(out)
}

/// The block device `dev_t` names, refused when its sectors are not the disk's.
fn block_device(dev: u64) -> Result<PathBuf> {
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if major == 0 {
        bail!("the file is on a filesystem without a block device (device {major}:{minor}): btrfs, a network or a virtual filesystem");
    }
    let uevent =
        std::fs::read_to_string(sys.join("uevent")).with_context(|| format!("reading {}", sys.display()))?;
    let name = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .with_context(|| format!("no DEVNAME in {}/uevent", sys.display()))?;
    if sys.join("dm").exists() || sys.join("md").exists() {
        bail!(
            "the file is on /dev/{name}, a device-mapper or md device (dm-crypt, LVM, RAID): its sectors are not \
             where the boot device has them"
        );
    }
    Ok(PathBuf::from("/dev").join(name))
}

/// Where the file is inside its filesystem: its path with the mount point taken off (and a
/// bind mount's root put on), from /proc/self/mountinfo.
fn path_in_fs(canon: &Path, dev: u64) -> Result<String> {
    let want = format!("{}:{}", nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let best = info
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.get(2) == Some(&want.as_str())).then(|| (unescape(f[3]), unescape(f[4])))
        })
        .filter(|(_, mnt)| canon.starts_with(mnt))
        .max_by_key(|(_, mnt)| mnt.len());
    let Some((root, mnt)) = best else {
        bail!("no mount of device {want} holds {}", canon.display());
    };
    let rest = canon.strip_prefix(&mnt).unwrap_or(canon);
    Ok(Path::new(&root).join(rest).to_string_lossy().into_owned())
}

/// mountinfo escapes space, tab, newline and backslash as octal.
pub fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        match u8::from_str_radix(rest.get(i + 1..i + 4).unwrap_or(""), 8) {
            Ok(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            Err(_) => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// A file's place on its device, however it was found.
struct Placed {
    loc: Location,
    /// (byte offset on the device, length), in file order.
    runs: Vec<(u64, u64)>,
    fingerprint: Fingerprint,
}

/// Where a file in a mounted filesystem is, as `iso=` names it: its filesystem's UUID and
/// its path inside that filesystem.
pub fn location(file: &Path) -> Result<Location> {
    let canon = std::fs::canonicalize(file).with_context(|| format!("resolving {}", file.display()))?;
    let dev = std::fs::metadata(&canon)?.dev();
    Ok(Location { source: Some(Source::Uuid(uuid_of(&block_device(dev)?)?)), path: path_in_fs(&canon, dev)? })
}

/// The mounted file, by FIEMAP.
fn by_fiemap(file: &Path) -> Result<Placed> {
    let name = file.display().to_string();
    let f = File::open(file).with_context(|| format!("opening {name}"))?;
    let meta = f.metadata()?;
    let len = meta.len();
    if !meta.is_file() || len == 0 || len % 512 != 0 {
        bail!("{name} is not a regular file whose size is a whole number of 512-byte sectors");
    }
    let loc = location(file)?;
    let runs = physical_extents(&f, len, &name)?;
    let fingerprint = fingerprint(&f, len, &runs)?;
    Ok(Placed { loc, runs, fingerprint })
}

/// `path` in the filesystem on `dev`, from its on-disk allocation (isoroot's boot-time
/// reader): no mount, so a stick formatted and filled elsewhere works too.
fn by_scan(dev: &Path, path: &str) -> Result<Placed> {
    let d = File::open(dev).with_context(|| format!("opening {}", dev.display()))?;
    let kind = superblock::probe(&d)?
        .map(|f| f.kind)
        .with_context(|| format!("no filesystem on {}", dev.display()))?;
    let map = filemap::map(&d, kind, path).map_err(|e| anyhow::anyhow!("{}: {e}", dev.display()))?;
    if map.size == 0 || map.size % 512 != 0 {
        bail!("{path} on {} is not a file whose size is a whole number of 512-byte sectors", dev.display());
    }
    let mut runs = Vec::new();
    for r in &map.runs {
        match *r {
            filemap::Run::Data { offset, len } => runs.push((offset, len)),
            filemap::Run::Zero { .. } => bail!(
                "{path} is sparse: a hole has no sectors to map; rewrite it densely (cp --sparse=never)"
            ),
        }
    }
    let through = Through { dev: &d, runs: &runs };
    let fingerprint = fingerprint(&through, map.size, &runs)?;
    let loc = Location { source: Some(Source::Uuid(uuid_of(dev)?)), path: path.to_string() };
    Ok(Placed { loc, runs, fingerprint })
}

/// The fingerprint that samples every extent: the boot checks it wherever it cannot read
/// the filesystem's allocation to prove that the sectors are still the file's.
fn fingerprint(file: &(impl ReadAt + ?Sized), len: u64, runs: &[(u64, u64)]) -> Result<Fingerprint> {
    let lens: Vec<u64> = runs.iter().map(|&(_, l)| l).collect();
    Ok(extents::fingerprint(file, len, Covers::Extents, &lens)?)
}

fn uuid_of(dev: &Path) -> Result<String> {
    let fs = File::open(dev)
        .and_then(|d| superblock::probe(&d))
        .with_context(|| format!("reading the superblock of {} (run as root)", dev.display()))?;
    fs.and_then(|f| f.uuid)
        .with_context(|| format!("{} has no filesystem UUID isoroot can name it by", dev.display()))
}

/// A file read through its runs on the device.
struct Through<'a> {
    dev: &'a File,
    runs: &'a [(u64, u64)],
}

impl ReadAt for Through<'_> {
    fn read_at(&self, mut offset: u64, mut buf: &mut [u8]) -> std::io::Result<()> {
        let mut start = 0u64;
        for &(at, len) in self.runs {
            if buf.is_empty() {
                break;
            }
            if offset < start + len {
                let n = (start + len - offset).min(buf.len() as u64) as usize;
                self.dev.read_at(at + (offset - start), &mut buf[..n])?;
                buf = &mut buf[n..];
                offset += n as u64;
            }
            start += len;
        }
        if buf.is_empty() {
            Ok(())
        } else {
            Err(std::io::ErrorKind::UnexpectedEof.into())
        }
    }
}

/// The `iso=`, `iso.extents=` and `iso.fingerprint=` values for a placed file.
fn keys(placed: &Placed, name: &str) -> Result<[(&'static str, String); 3]> {
    let extents: Vec<Extent> = placed
        .runs
        .iter()
        .map(|&(p, l)| {
            if p % 512 != 0 {
                bail!("{name}: an extent starts at byte {p}, not on a sector boundary");
            }
            Ok(Extent { start: p / 512, sectors: l.div_ceil(512) })
        })
        .collect::<Result<_>>()?;
    Ok([
        ("iso", placed.loc.to_string()),
        ("iso.extents", extents::format(&extents)),
        ("iso.fingerprint", placed.fingerprint.to_string()),
    ])
}

/// The command-line words for a mounted file, or `None` when they would not fit on the
/// command line (the boot then scans the filesystem instead).
pub fn hint_words(file: &Path) -> Result<Option<Vec<String>>> {
    let keys = keys(&by_fiemap(file)?, &file.display().to_string())?;
    let words: Vec<String> = keys.iter().map(|(k, v)| word(k, v)).collect();
    Ok((words.iter().map(|w| w.len() + 1).sum::<usize>() <= MAX_WORDS).then_some(words))
}

pub fn run(file: &Path, device: Option<&Path>, cpio: Option<&Path>) -> Result<()> {
    let name = file.display().to_string();
    let placed = match device {
        Some(dev) => by_scan(dev, &name)?,
        None => by_fiemap(file)?,
    };
    let keys = keys(&placed, &name)?;
    let Some(out) = cpio else {
        let words: Vec<String> = keys.iter().map(|(k, v)| word(k, v)).collect();
        let words = words.join(" ");
        if words.len() > MAX_WORDS {
            bail!(
                "{name} has {} extents, {} bytes of command line; write them to a map archive with --cpio OUT \
                 and load it as an extra initrd",
                placed.runs.len(),
                words.len()
            );
        }
        println!("{words}");
        return Ok(());
    };
    let stem = Path::new(&placed.loc.path)
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.', "_");
    let map_path = format!("{MAP_DIR}/{stem}.map");
    let map: String = keys.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let mut archive = Archive::default();
    archive.file(&map_path, map.into_bytes(), 0o644);
    let mut bytes = Vec::new();
    archive.write(&mut bytes)?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))?;
    println!("iso.map={map_path}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/media/my\040stick"), "/media/my stick");
        assert_eq!(unescape(r"/a\134b"), r"/a\b");
        assert_eq!(unescape(r"/odd\x"), r"/odd\x");
    }

    #[test]
    fn request_layout() {
        assert_eq!(std::mem::size_of::<fiemap::Extent>(), 56);
        assert_eq!(std::mem::size_of::<fiemap::Request>(), 32 + 256 * 56);
    }
}
