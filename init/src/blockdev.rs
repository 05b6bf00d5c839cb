//! Block devices as the kernel lists them in /sys/class/block, identified by their
//! superblocks and partition entries.

use crate::dm;
use anyhow::{anyhow, Context, Result};
use isoroot_fs::human_size;
use isoroot_fs::parttable;
use isoroot_fs::superblock::{self, FsInfo};
use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct BlockDev {
    /// Kernel name, e.g. `vda1`.
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub fs: Option<FsInfo>,
    pub partuuid: Option<String>,
    pub partlabel: Option<String>,
    /// Why the superblock could not be read, if it could not.
    pub error: Option<String>,
}

impl fmt::Display for BlockDev {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} ({})", self.path.display(), human_size(self.size))?;
        match &self.fs {
            Some(fs) => {
                write!(f, " {}", fs.kind.name())?;
                if let Some(u) = &fs.uuid {
                    write!(f, " UUID={u}")?;
                }
                if let Some(l) = &fs.label {
                    write!(f, " LABEL=\"{l}\"")?;
                }
            }
            None => match &self.error {
                Some(e) => write!(f, " unreadable: {e}")?,
                None => write!(f, " no filesystem")?,
            },
        }
        if let Some(p) = &self.partuuid {
            write!(f, " PARTUUID={p}")?;
        }
        if let Some(p) = &self.partlabel {
            write!(f, " PARTLABEL=\"{p}\"")?;
        }
        Ok(())
    }
}

impl BlockDev {
    /// The device as a device-mapper table maps onto it.
    pub fn under(&self) -> Result<dm::Under> {
        let (major, minor) = self.numbers()?;
        Ok(dm::Under { major, minor, sectors: self.size / 512, block: self.logical_block() })
    }

    /// The device's logical block size in bytes (512, or 4096 on a 4Kn disk); a partition
    /// has its disk's.
    fn logical_block(&self) -> u64 {
        let sys = Path::new("/sys/class/block").join(&self.name);
        [sys.join("queue/logical_block_size"), sys.join("../queue/logical_block_size")]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok())
            .unwrap_or(512)
    }

    /// The device's major and minor number, as device-mapper tables name it.
    pub fn numbers(&self) -> Result<(u32, u32)> {
        let text = std::fs::read_to_string(Path::new("/sys/class/block").join(&self.name).join("dev"))
            .with_context(|| format!("reading the device number of {}", self.path.display()))?;
        let (ma, mi) = text.trim().split_once(':').ok_or_else(|| anyhow!("odd device number {text:?}"))?;
        Ok((ma.parse()?, mi.parse()?))
    }
}

/// Devices isoroot never looks for an ISO on: its own loop and device-mapper devices and
/// RAM disks.
fn ignored(name: &str) -> bool {
    ["loop", "ram", "zram", "dm-"].iter().any(|p| name.starts_with(p))
}

fn uevent(dir: &Path) -> BTreeMap<String, String> {
    fs::read_to_string(dir.join("uevent"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A partition's entry in its disk's table; nothing for whole disks.
fn partition(sys: &Path, props: &BTreeMap<String, String>) -> parttable::PartInfo {
    let number = props.get("PARTN").and_then(|n| n.parse().ok());
    // /sys/class/block/vda1 links into …/vda/vda1: the parent directory is the disk.
    let disk = fs::canonicalize(sys).ok().and_then(|p| p.parent().map(uevent));
    let (Some(number), Some(disk)) = (number, disk) else { return Default::default() };
    let Some(name) = disk.get("DEVNAME") else { return Default::default() };
    let sector =
        fs::read_to_string(Path::new("/sys/class/block").join(name).join("queue/logical_block_size"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(512);
    fs::File::open(Path::new("/dev").join(name))
        .and_then(|f| parttable::read(&f, sector, number))
        .unwrap_or_default()
}

/// Devices seen so far, each probed once.
#[derive(Default)]
pub struct Devices {
    pub known: BTreeMap<String, BlockDev>,
}

impl Devices {
    /// Probes devices that appeared (or changed size: a card reader got a card) since the
    /// last call; returns the names of the new ones.
    pub fn refresh(&mut self) -> Vec<String> {
        let mut new = Vec::new();
        let Ok(entries) = fs::read_dir("/sys/class/block") else {
            return new;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if ignored(&name) {
                continue;
            }
            let sys = entry.path();
            let sectors: u64 =
                fs::read_to_string(sys.join("size")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
            let size = sectors * 512;
            if size == 0 || self.known.get(&name).is_some_and(|d| d.size == size) {
                continue;
            }
            let props = uevent(&sys);
            let path = PathBuf::from("/dev").join(props.get("DEVNAME").unwrap_or(&name));
            let (fs, error) = match fs::File::open(&path).and_then(|f| superblock::probe(&f)) {
                Ok(fs) => (fs, None),
                Err(e) => (None, Some(e.to_string())),
            };
            let part = partition(&sys, &props);
            let dev = BlockDev {
                name: name.clone(),
                path,
                size,
                fs,
                partuuid: props.get("PARTUUID").cloned().or(part.uuid),
                partlabel: props.get("PARTNAME").cloned().or(part.label),
                error,
            };
            crate::debug!("found {dev}");
            self.known.insert(name.clone(), dev);
            new.push(name);
        }
        new
    }

    /// One line per device, for messages that must say what exists.
    pub fn listing(&self) -> String {
        if self.known.is_empty() {
            return "  (no block devices at all: is the storage driver in the initramfs?)".into();
        }
        self.known.values().map(|d| format!("  {d}\n")).collect::<String>().trim_end().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isoroot_fs::superblock::FsKind;

    #[test]
    fn display_names_everything_that_identifies_a_device() {
        let d = BlockDev {
            name: "vda1".into(),
            path: "/dev/vda1".into(),
            size: 64 << 20,
            fs: Some(FsInfo {
                kind: FsKind::Vfat,
                uuid: Some("1234-ABCD".into()),
                label: Some("MY USB".into()),
                needs_recovery: false,
            }),
            partuuid: Some("0a0b0c0d-01".into()),
            partlabel: None,
            error: None,
        };
        assert_eq!(
            d.to_string(),
            "/dev/vda1 (64.0 MiB) vfat UUID=1234-ABCD LABEL=\"MY USB\" PARTUUID=0a0b0c0d-01"
        );
        assert!(ignored("loop0") && ignored("dm-1") && !ignored("sda"));
    }
}
