//! Which kernel modules go into the initramfs, resolved on the host with libkmod: the
//! modules isoroot always loads (filesystems, loop, overlay, device-mapper), the storage
//! drivers it loads when their hardware shows up, and everything they depend on.

use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Loaded at every boot, in this order (after their dependencies).
pub const ALWAYS: &[&str] = &[
    "loop",
    "dm-mod",
    // Holes in a sparse ISO file map to dm's zero target.
    "dm-zero",
    "isofs",
    "udf",
    "squashfs",
    "erofs",
    "overlay",
    "ext4",
    "vfat",
    "exfat",
    "ntfs3",
    "nls_utf8",
    "nls_cp437",
    "nls_ascii",
    "nls_iso8859-1",
];

/// Loaded by modalias when the hardware is present.
pub const BY_HARDWARE: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "ahci",
    "ata_piix",
    "sd_mod",
    "sr_mod",
    "nvme",
    "usb-storage",
    "uas",
    "xhci_pci",
    "ehci_pci",
    "ohci_pci",
    "uhci_hcd",
    "mmc_block",
    "sdhci_pci",
];

/// With `--network`: NIC drivers (loaded by modalias, as the storage drivers are), nbd
/// (loaded by name for `iso=nbd://`) and virtio_rng. Left out otherwise: they would double the
/// modules of a local boot.
pub const NETWORK: &[&str] = &[
    "virtio_net",
    "e1000",
    "e1000e",
    "igb",
    "igc",
    "ixgbe",
    "r8169",
    "tg3",
    "bnx2",
    "r8152",
    "cdc_ether",
    "nbd",
    // Seeds the kernel's RNG in VMs without RDRAND: TLS needs it early.
    "virtio_rng",
];

pub struct ModuleSet {
    /// Paths relative to the modules directory → their dependencies' paths.
    pub files: BTreeMap<String, Vec<String>>,
    /// The names the init loads at every boot, soft dependencies first.
    pub load: Vec<String>,
    /// Wanted modules this kernel does not have (neither as a module nor built in).
    pub missing: Vec<String>,
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// `softdep MOD pre: a b post: c` lines from `modules.softdep`: MOD → (pre, post).
fn softdeps(text: &str) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let mut out: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("softdep") {
            continue;
        }
        let Some(module) = words.next() else { continue };
        let entry = out.entry(normalize(module)).or_default();
        let mut post = false;
        for w in words {
            match w {
                "pre:" => post = false,
                "post:" => post = true,
                w if post => entry.1.push(w.to_string()),
                w => entry.0.push(w.to_string()),
            }
        }
    }
    out
}

struct Resolver {
    ctx: kmod::Context,
    dir: PathBuf,
    softdeps: BTreeMap<String, (Vec<String>, Vec<String>)>,
    files: BTreeMap<String, Vec<String>>,
}

impl Resolver {
    fn relative(&self, m: &kmod::Module) -> Option<String> {
        let path = Path::new(m.path()?);
        Some(path.strip_prefix(&self.dir).unwrap_or(path).to_string_lossy().into_owned())
    }

    /// Adds the modules a name or alias resolves to, with their dependencies; returns them
    /// (empty when the name is unknown), built-in ones included.
    fn add(&mut self, name: &str) -> Result<Vec<Resolved>> {
        let modules: Vec<kmod::Module> = self
            .ctx
            .module_new_from_lookup(name)
            .map_err(|e| anyhow!("looking up module {name}: {e}"))?
            .collect();
        let mut out = Vec::new();
        for m in modules {
            let resolved = Resolved { name: m.name().to_string_lossy().into_owned(), rel: self.relative(&m) };
            out.push(resolved.clone());
            let Some(rel) = resolved.rel else {
                continue; // built in
            };
            if self.files.contains_key(&rel) {
                continue;
            }
            if [".ko.xz", ".ko.zst", ".ko.gz"].iter().any(|e| rel.ends_with(e)) {
                bail!("{rel} is compressed; this isoroot build stores uncompressed modules only");
            }
            // Reserve the entry first: dependencies may lead back here.
            self.files.insert(rel.clone(), Vec::new());
            let mut deps = Vec::new();
            for d in m.dependencies() {
                deps.extend(self.add(&d.name().to_string_lossy())?.into_iter().filter_map(|r| r.rel));
            }
            // Soft dependencies ("pre:") become hard ones in the archive's modules.dep, so
            // that the init, which follows modules.dep only, loads them first: libcrc32c
            // fails without a crc32c driver.
            let (pre, post) = self.softdeps.get(&normalize(&resolved.name)).cloned().unwrap_or_default();
            for s in &pre {
                deps.extend(self.add(s)?.into_iter().filter_map(|r| r.rel));
            }
            for s in &post {
                self.add(s)?;
            }
            deps.dedup();
            self.files.insert(rel, deps);
        }
        Ok(out)
    }
}

#[derive(Clone)]
struct Resolved {
    name: String,
    /// Path relative to the modules directory; None when built in.
    rel: Option<String>,
}

pub fn resolve(dir: &Path, extra_always: &[String], network: bool) -> Result<ModuleSet> {
    let ctx = kmod::Context::new_with_dirname(dir)
        .map_err(|e| anyhow!("opening the module index in {}: {e}", dir.display()))?;
    let softdep_text = std::fs::read_to_string(dir.join("modules.softdep")).unwrap_or_default();
    let mut r =
        Resolver { ctx, dir: dir.to_path_buf(), softdeps: softdeps(&softdep_text), files: BTreeMap::new() };
    let mut load = Vec::new();
    let mut missing = Vec::new();
    let always = ALWAYS.iter().map(|s| s.to_string()).chain(extra_always.iter().cloned());
    for name in always {
        let found = r.add(&name)?;
        if found.is_empty() {
            missing.push(name);
        }
        load.extend(found.into_iter().map(|m| m.name));
    }
    let network = if network { NETWORK } else { &[] };
    for name in BY_HARDWARE.iter().chain(network) {
        if r.add(name)?.is_empty() {
            missing.push(name.to_string());
        }
    }
    let mut seen = BTreeSet::new();
    load.retain(|n| seen.insert(normalize(n)));
    Ok(ModuleSet { files: r.files, load, missing })
}

/// Lines of the host's `modules.alias` whose module is in the set: all the init needs to
/// match hardware.
pub fn filter_aliases(alias: &str, set: &ModuleSet) -> String {
    let names: BTreeSet<String> = set
        .files
        .keys()
        .map(|p| {
            let file = p.rsplit('/').next().unwrap_or(p);
            normalize(file.split(".ko").next().unwrap_or(file))
        })
        .collect();
    alias
        .lines()
        .filter(|l| l.rsplit(' ').next().is_some_and(|m| names.contains(&normalize(m))))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dracut_module_loads_what_isoroot_always_loads() {
        let setup = include_str!("../../dracut-module/90isoroot/module-setup.sh");
        let listed: Vec<&str> = setup.split_whitespace().collect();
        for m in ALWAYS {
            assert!(listed.contains(m), "dracut-module/90isoroot/module-setup.sh lacks {m}");
        }
    }

    #[test]
    fn softdeps_split_pre_and_post() {
        let s = softdeps("# c\nsoftdep ext4 pre: crypto-crc32c\nsoftdep cifs gcm post: x y\n");
        assert_eq!(s["ext4"], (vec!["crypto-crc32c".to_string()], vec![]));
        assert_eq!(s["cifs"], (vec!["gcm".to_string()], vec!["x".to_string(), "y".to_string()]));
    }

    #[test]
    fn aliases_are_kept_for_included_modules_only() {
        let set = ModuleSet {
            files: BTreeMap::from([("kernel/drivers/block/virtio_blk.ko".to_string(), vec![])]),
            load: vec![],
            missing: vec![],
        };
        let text = "alias virtio:d00000002v* virtio_blk\nalias pci:v00008086d* e1000\n";
        assert_eq!(filter_aliases(text, &set), "alias virtio:d00000002v* virtio_blk\n");
    }
}
