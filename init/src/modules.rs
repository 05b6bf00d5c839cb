//! Kernel modules: the list `isoroot mkinitramfs` resolved on the host, then drivers for the
//! hardware present, matched by modalias as udev would. Dependencies come from
//! `modules.dep` (or kmod's binary `modules.dep.bin`, see `modindex`), so a distro initrd's
//! module tree works the same as isoroot's own.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `-` and `_` are the same in module names.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a path in `modules.dep`: `kernel/fs/ext4/ext4.ko.xz` → `ext4`.
fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    normalize(file.split(".ko").next().unwrap_or(file))
}

/// A text index of `dir`, or its lines made from kmod's binary index (`NAME.bin`, a key and
/// its values each giving a `line`) where only that is there: mkinitcpio ships only those.
/// A binary index that cannot be read is an error to report; no index at all is empty.
fn read_index(dir: &Path, name: &str, line: fn(&str, &str) -> String) -> Result<String, String> {
    if let Ok(text) = fs::read_to_string(dir.join(name)) {
        return Ok(text);
    }
    let bin = dir.join(format!("{name}.bin"));
    let Ok(data) = fs::read(&bin) else {
        return Ok(String::new());
    };
    let entries = crate::modindex::entries(&data).map_err(|e| format!("{}: {e}", bin.display()))?;
    let mut text = String::new();
    for (key, values) in &entries {
        for value in values {
            text.push_str(&line(key, value));
            text.push('\n');
        }
    }
    Ok(text)
}

/// fnmatch(3) without flags, which is what modules.alias patterns need: `*`, `?`, `[…]`.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, len)) = class(&pattern[p..], text[t]) {
                        if matched {
                            p += len;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == b'[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the bracket expression at the start of `pat`; returns whether it
/// matched and the expression's length, or None if the bracket is not closed.
fn class(pat: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pat.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pat.len() {
        if pat[i] == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < pat.len() && pat[i + 1] == b'-' && pat[i + 2] != b']' {
            matched |= (pat[i]..=pat[i + 2]).contains(&c);
            i += 3;
        } else {
            matched |= pat[i] == c;
            i += 1;
        }
    }
    None
}

/// The module tree's index, shared by the loaders.
struct Index {
    dir: PathBuf,
    /// name → (path relative to `dir`, dependency paths)
    deps: HashMap<String, (String, Vec<String>)>,
    aliases: Vec<(String, String)>,
    builtin: HashSet<String>,
}

#[derive(Clone)]
pub struct Modules {
    index: Arc<Index>,
    loaded: HashSet<String>,
    modaliases_seen: HashSet<String>,
    /// Failures, reported once when something else goes wrong.
    pub failed: Vec<String>,
}

impl Modules {
    /// Reads the module index for the running kernel; a missing index leaves it empty, and
    /// that is said when a device then cannot be found.
    pub fn open() -> Self {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = Path::new("/lib/modules").join(release);
        let mut failed = Vec::new();
        let mut read = |name, line| {
            read_index(&dir, name, line).unwrap_or_else(|e| {
                failed.push(e);
                String::new()
            })
        };
        let dep = read("modules.dep", |_, v| v.to_string());
        let alias = read("modules.alias", |k, v| format!("alias {k} {v}"));
        let builtin = read("modules.builtin", |k, _| format!("{k}.ko"));
        let mut modules = Self::from_index(dir.clone(), &dep, &alias, &builtin);
        modules.failed = failed;
        modules
    }

    fn from_index(dir: PathBuf, dep: &str, alias: &str, builtin: &str) -> Self {
        let deps = dep
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(path, rest)| {
                let d = rest.split_whitespace().map(String::from).collect();
                (name_of(path), (path.to_string(), d))
            })
            .collect();
        let aliases = alias
            .lines()
            .filter_map(|l| l.strip_prefix("alias "))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(pattern, module)| (pattern.to_string(), normalize(module)))
            .collect();
        let builtin = builtin.lines().map(name_of).collect();
        Modules {
            index: Arc::new(Index { dir, deps, aliases, builtin }),
            loaded: HashSet::new(),
            modaliases_seen: HashSet::new(),
            failed: Vec::new(),
        }
    }

    pub fn count(&self) -> usize {
        self.index.deps.len()
    }

    /// Loads every module named in the load list, in order.
    pub fn load_list(&mut self, list: &Path) {
        let Ok(text) = fs::read_to_string(list) else {
            return;
        };
        for name in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            self.load(name);
        }
    }

    /// Loads the load list on another thread while this one goes on (finding the boot
    /// device, which needs only the storage drivers); [`Modules::join`] takes in the result.
    pub fn load_list_in_background(&self, list: &Path) -> Background {
        let mut loader = self.clone();
        let list = list.to_path_buf();
        Background(std::thread::spawn(move || {
            loader.load_list(&list);
            loader
        }))
    }

    /// Waits for a background load; what it loaded and what failed become this one's.
    pub fn join(&mut self, background: Background) {
        match background.0.join() {
            Ok(loader) => {
                self.loaded.extend(loader.loaded);
                self.failed.extend(loader.failed);
            }
            Err(_) => self.failed.push("the module loading thread panicked".into()),
        }
    }

    /// Loads a module after its dependencies; failures are remembered, not fatal: the
    /// device wait or the mount that needed the module says what is missing.
    pub fn load(&mut self, name: &str) -> bool {
        let name = normalize(name);
        if self.loaded.contains(&name) || self.index.builtin.contains(&name) {
            return true;
        }
        let Some((path, deps)) = self.index.deps.get(&name).cloned() else {
            self.failed.push(format!("{name}: not in {}/modules.dep", self.index.dir.display()));
            return false;
        };
        // Mark first: modules.dep has no cycles, but a broken one must not recurse forever.
        self.loaded.insert(name.clone());
        for dep in deps.iter().rev() {
            self.load(&name_of(dep));
        }
        match insert(&self.index.dir.join(&path)) {
            Ok(()) => {
                crate::debug!("loaded module {name} from {path}");
                true
            }
            Err(e) => {
                self.failed.push(format!("{name}: {e}"));
                false
            }
        }
    }

    /// Loads drivers for every device whose modalias matches an alias of a module in the
    /// index, as udev's coldplug would; returns how many modules it loaded.
    pub fn coldplug(&mut self) -> usize {
        let mut loaded = 0;
        let mut stack = vec![PathBuf::from("/sys/devices")];
        let mut wanted = Vec::new();
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let Ok(kind) = e.file_type() else { continue };
                // sysfs links point back up the tree: follow directories only.
                if kind.is_dir() {
                    stack.push(e.path());
                } else if e.file_name() == "modalias" {
                    // Devices come and go while we walk: a vanished file is no error.
                    if let Ok(alias) = fs::read_to_string(e.path()) {
                        let alias = alias.trim().to_string();
                        if !alias.is_empty() && self.modaliases_seen.insert(alias.clone()) {
                            wanted.extend(self.matches(&alias));
                        }
                    }
                }
            }
        }
        for m in wanted {
            if !self.loaded.contains(&m) && self.load(&m) {
                loaded += 1;
            }
        }
        loaded
    }

    fn matches(&self, modalias: &str) -> Vec<String> {
        // depmod writes the binary index's patterns with `-` as `_` (outside `[…]`) and
        // kmod looks a modalias up the same way: `scsi:t-0x00` is `scsi:t_0x00*` there.
        let underscored = normalize(modalias);
        self.index
            .aliases
            .iter()
            .filter(|(pattern, _)| {
                glob(pattern.as_bytes(), modalias.as_bytes())
                    || glob(pattern.as_bytes(), underscored.as_bytes())
            })
            .map(|(_, m)| m.clone())
            .collect()
    }
}

/// Modules loading on another thread. Loading one module twice at once is safe: the
/// kernel makes the second wait and return EEXIST.
pub struct Background(std::thread::JoinHandle<Modules>);

/// How a module file is compressed, by its name, as kmod decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Xz,
    Zstd,
    Gzip,
}

impl Compression {
    fn of(name: &str) -> Option<Compression> {
        [(".ko.xz", Compression::Xz), (".ko.zst", Compression::Zstd), (".ko.gz", Compression::Gzip)]
            .into_iter()
            .find_map(|(ext, c)| name.ends_with(ext).then_some(c))
    }

    /// The name in /sys/module/compression, where a kernel with CONFIG_MODULE_DECOMPRESS
    /// says which format it decompresses itself.
    fn kernel_name(self) -> &'static str {
        match self {
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
        }
    }

    fn decompress(self, data: &[u8]) -> Result<Vec<u8>, String> {
        use std::io::Read;
        let mut out = Vec::new();
        match self {
            Compression::Xz => lzma_rs::xz_decompress(&mut &data[..], &mut out).map_err(|e| e.to_string())?,
            Compression::Zstd => {
                let mut d = ruzstd::decoding::StreamingDecoder::new(data).map_err(|e| e.to_string())?;
                d.read_to_end(&mut out).map_err(|e| e.to_string())?;
            }
            Compression::Gzip => {
                flate2::read::GzDecoder::new(data).read_to_end(&mut out).map_err(|e| e.to_string())?;
            }
        }
        Ok(out)
    }
}

fn insert(path: &Path) -> Result<(), String> {
    let name = path.to_string_lossy();
    let file = fs::File::open(path).map_err(|e| format!("opening {name}: {e}"))?;
    const NO_PARAMS: &CStr = c"";
    let result = match Compression::of(&name) {
        None => nix::kmod::finit_module(&file, NO_PARAMS, nix::kmod::ModuleInitFlags::empty()),
        Some(c)
            if fs::read_to_string("/sys/module/compression").is_ok_and(|k| k.trim() == c.kernel_name()) =>
        {
            // MODULE_INIT_COMPRESSED_FILE (linux/module.h), which nix does not name.
            let flags = nix::kmod::ModuleInitFlags::from_bits_retain(4);
            nix::kmod::finit_module(&file, NO_PARAMS, flags)
        }
        Some(c) => {
            // This kernel cannot decompress modules (Debian 12's cannot): do it here.
            let data = fs::read(path).map_err(|e| format!("reading {name}: {e}"))?;
            let image = c.decompress(&data).map_err(|e| format!("decompressing {name}: {e}"))?;
            nix::kmod::init_module(&image, NO_PARAMS)
        }
    };
    match result {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        // The driver has nothing to drive (crc32c-intel on a CPU without SSE 4.2): no error.
        Err(nix::errno::Errno::ENODEV) => {
            crate::debug!("{name}: no device for it");
            Ok(())
        }
        Err(e) => Err(format!("loading {name}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_fnmatch() {
        let cases = [
            ("pci:v00001AF4d*sv*sd*bc*sc*i*", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", true),
            ("virtio:d00000002v*", "virtio:d00000002v00001AF4", true),
            ("virtio:d00000002v*", "virtio:d00000003v00001AF4", false),
            ("a?c", "abc", true),
            ("a[0-9]c", "a5c", true),
            ("a[!0-9]c", "a5c", false),
            ("a[]]c", "a]c", true),
            ("*", "", true),
            ("a*", "", false),
            ("*b*b", "abxbb", true),
            ("a[b", "a[b", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob(p.as_bytes(), t.as_bytes()), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn a_binary_index_alias_matches_a_modalias_with_dashes() {
        // As depmod writes modules.alias.bin: `-` as `_`.
        let m = Modules::from_index(PathBuf::new(), "", "alias scsi:t_0x00* sd_mod\n", "");
        assert_eq!(m.matches("scsi:t-0x00"), vec!["sd_mod".to_string()]);
        let m = Modules::from_index(PathBuf::new(), "", "alias scsi:t-0x05* sr_mod\n", "");
        assert_eq!(m.matches("scsi:t-0x05"), vec!["sr_mod".to_string()]);
    }

    #[test]
    fn compressed_modules_are_recognised_and_decompressed() {
        use std::io::Write;
        assert_eq!(Compression::of("kernel/fs/ext4/ext4.ko"), None);
        assert_eq!(Compression::of("a.ko.zst"), Some(Compression::Zstd));
        let module = b"\x7fELF a module".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&module).unwrap();
        assert_eq!(Compression::Gzip.decompress(&gz.finish().unwrap()).unwrap(), module);
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &module[..], &mut xz).unwrap();
        assert_eq!(Compression::Xz.decompress(&xz).unwrap(), module);
        let zst = ruzstd::encoding::compress_to_vec(&module[..], ruzstd::encoding::CompressionLevel::Fastest);
        assert_eq!(Compression::Zstd.decompress(&zst).unwrap(), module);
        assert!(Compression::Zstd.decompress(b"not zstd").is_err());
    }

    #[test]
    fn index_and_names() {
        let m = Modules::from_index(
            "/x".into(),
            "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/lib/crc16.ko\nkernel/drivers/block/virtio_blk.ko.xz:\n",
            "alias virtio:d00000002v* virtio_blk\nalias fs-ext4 ext4\nalias pci:v*d*sv*sd*bc01sc06i01* ahci\n",
            "kernel/drivers/block/loop.ko\n",
        );
        assert_eq!(m.count(), 2);
        assert_eq!(m.index.deps["ext4"].1, ["kernel/fs/jbd2/jbd2.ko", "kernel/lib/crc16.ko"]);
        assert_eq!(m.matches("virtio:d00000002v00001AF4"), ["virtio_blk"]);
        assert!(m
            .matches("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01")
            .contains(&"ahci".to_string()));
        assert!(m.index.builtin.contains("loop"));
        assert_eq!(name_of("kernel/drivers/usb/storage/usb-storage.ko"), "usb_storage");
    }
}
