//! An ISO's own boot menus, read as text: GRUB script (`menuentry` blocks, `set` variables,
//! `source` and `configfile`), isolinux/syslinux (`LABEL`, `KERNEL`/`LINUX`, `INITRD`,
//! `APPEND`, `INCLUDE`) and systemd-boot entries (`title`, `linux`, `initrd`, `options`).
//! What each entry boots (kernel, initrds, arguments) is what the distro itself boots,
//! whatever its files are called this release. Everything here is bounded: the text comes
//! from an ISO, which is hostile input.

/// One entry of an ISO's own boot menu.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "yaml", derive(serde::Serialize))]
pub struct OwnEntry {
    pub title: String,
    /// An absolute path in the ISO.
    pub kernel: String,
    /// Absolute paths in the ISO, in the order they are loaded.
    pub initrds: Vec<String>,
    pub args: Vec<String>,
    /// The file the entry is in.
    pub from: String,
}

/// The boot menus distros put on their ISOs, in the order they are read: GRUB's menu for
/// booting the ISO from a file first.
pub const CONFIGS: &[&str] = &[
    "/boot/grub/loopback.cfg",
    "/boot/grub/grub.cfg",
    "/EFI/BOOT/grub.cfg",
    "/EFI/boot/grub.cfg",
    "/boot/grub2/grub.cfg",
    "/isolinux/isolinux.cfg",
    "/syslinux/syslinux.cfg",
    "/boot/syslinux/syslinux.cfg",
    "/boot/isolinux/isolinux.cfg",
];
/// systemd-boot's entries (`*.conf`).
pub const LOADER_ENTRIES: &str = "/loader/entries";

/// A file larger than this is not a boot menu.
pub const MAX_FILE: u64 = 256 << 10;
/// Files read for one ISO at most (includes, sources, loader entries).
const MAX_FILES: usize = 32;
/// Entries kept at most.
const MAX_ENTRIES: usize = 256;
/// Arguments of one entry at most: the kernel takes a 2 KiB command line anyway.
const MAX_ARGS: usize = 256;

/// Words that name where the ISO file is, for booting it from a file: each tool's own
/// spelling, which isoroot replaces with `iso=`.
pub const ISO_FROM_FILE: &[&str] = &[
    "findiso",
    "iso-scan/filename",
    "img_dev",
    "img_loop",
    "isofrom_device",
    "isofrom_system",
    "isoloop",
    "iso_path",
    "fromiso",
];

/// Words that point a distro's initrd at the medium it was burnt to (by label, UUID or a
/// file to search for): isoroot points it at `/dev/mapper/isoroot` instead, with the
/// profile's tokens.
pub const MEDIUM_KEYS: &[&str] = &[
    "archisosearchuuid",
    "archisosearchfilename",
    "archisolabel",
    "archisodevice",
    "misolabel",
    "live-media",
    "cdrom-detect/try-usb",
];

/// The key of a `key=value` argument (the whole word for a flag).
fn arg_key(word: &str) -> &str {
    word.split_once('=').map_or(word, |(k, _)| k)
}

/// A boot entry's arguments: the profile's `tokens` first, then the ISO's own entry's
/// arguments (`quiet splash`, a release's `live-media-path=`) without those that say where
/// the ISO is ([`ISO_FROM_FILE`], [`MEDIUM_KEYS`]) and without the keys the tokens set
/// (`root=live:CDLABEL=…` gives way to `root=live:/dev/mapper/isoroot`).
///
/// Only the words before a `--` or `---` are taken: after it they are the installer's, to
/// copy into the installed system (Ubuntu's `---`), or the init's (`--`), and isoroot's own
/// words must come before them. Words a command line cannot carry as they are (quotes,
/// backslashes, control characters) and the words isoroot sets itself (`iso=`, `iso.*`,
/// `rdinit=`, `initrd=`, `BOOT_IMAGE=`) are left out too.
pub fn merged_args(tokens: &str, own: &[String]) -> Vec<String> {
    let mut out: Vec<String> = tokens.split_whitespace().map(String::from).collect();
    let set: Vec<String> = out.iter().map(|w| arg_key(w).to_string()).collect();
    for w in own.iter().take_while(|w| *w != "--" && *w != "---") {
        let key = arg_key(w);
        let plain = w.bytes().all(|b| b.is_ascii_graphic() && !b"\"\\'".contains(&b));
        let isoroots =
            key == "iso" || key.starts_with("iso.") || ["rdinit", "initrd", "BOOT_IMAGE"].contains(&key);
        let dropped =
            ISO_FROM_FILE.contains(&key) || MEDIUM_KEYS.contains(&key) || set.iter().any(|k| k == key);
        if plain && !isoroots && !dropped && !out.contains(w) {
            out.push(w.clone());
        }
    }
    out
}

/// Reads every menu in [`CONFIGS`] and [`LOADER_ENTRIES`] through `read` (a file's text, or
/// `None`) and `list` (a directory's names), following includes, and returns their entries
/// without repeats, in the order read.
pub fn read(read: &dyn Fn(&str) -> Option<String>, list: &dyn Fn(&str) -> Vec<String>) -> Vec<OwnEntry> {
    let mut r = Reader { read, done: Vec::new(), included: 0, out: Vec::new() };
    for path in CONFIGS {
        if path.contains("linux") {
            let dir = path.rsplit_once('/').map_or("/", |(d, _)| d);
            r.syslinux(path, dir, 0);
        } else {
            r.grub(path, &mut Vec::new(), 0);
        }
    }
    let mut confs: Vec<String> = list(LOADER_ENTRIES).into_iter().filter(|n| n.ends_with(".conf")).collect();
    confs.sort();
    for name in confs.iter().take(MAX_FILES) {
        r.loader_entry(&format!("{LOADER_ENTRIES}/{name}"));
    }
    r.out
}

struct Reader<'a> {
    read: &'a dyn Fn(&str) -> Option<String>,
    /// Files read already: a menu sourced from two others is read once.
    done: Vec<String>,
    /// Includes looked up (found or not).
    included: usize,
    out: Vec<OwnEntry>,
}

/// Includes followed at most in a chain (a menu that sources itself ends here).
const MAX_DEPTH: usize = 4;
/// The longest word or variable value kept: `set a=$a$a` on every line doubles it.
const MAX_WORD: usize = 4096;
/// The most bytes of arguments one entry keeps: a kernel takes 2 KiB in all.
const MAX_ARG_BYTES: usize = 2048;

fn entry(title: String, from: &str) -> OwnEntry {
    OwnEntry { title, kernel: String::new(), initrds: Vec::new(), args: Vec::new(), from: from.to_string() }
}

/// Arguments as an entry keeps them: up to [`MAX_ARGS`] words and [`MAX_ARG_BYTES`] bytes.
fn bounded_args<'w>(words: impl Iterator<Item = &'w str>) -> Vec<String> {
    let mut bytes = 0;
    words
        .take(MAX_ARGS)
        .take_while(|w| {
            bytes += w.len() + 1;
            bytes <= MAX_ARG_BYTES
        })
        .map(String::from)
        .collect()
}

impl Reader<'_> {
    /// A menu's text, once; `include` counts the lookup against [`MAX_FILES`].
    fn text(&mut self, path: &str, include: bool) -> Option<String> {
        if include {
            self.included += 1;
            if self.included > MAX_FILES {
                return None;
            }
        }
        if !path.starts_with('/') || self.done.iter().any(|d| d == path) {
            return None;
        }
        self.done.push(path.to_string());
        (self.read)(path)
    }

    fn push(&mut self, e: OwnEntry) {
        let seen =
            self.out.iter().any(|o| o.kernel == e.kernel && o.initrds == e.initrds && o.args == e.args);
        if !seen && self.out.len() < MAX_ENTRIES && e.kernel.len() > 1 {
            self.out.push(e);
        }
    }

    /// GRUB script: entries, with the variables `set` before them and in them. A line's
    /// commands end at `;`, `{` and `}`, so one-line entries read as well.
    fn grub(&mut self, path: &str, vars: &mut Vec<(String, String)>, depth: usize) {
        let Some(text) = self.text(path, depth > 0) else { return };
        let mut entry: Option<OwnEntry> = None;
        for line in text.lines() {
            let mut cmd: Vec<String> = Vec::new();
            for w in grub_words(line, vars).into_iter().chain([";".to_string()]) {
                if !matches!(w.as_str(), ";" | "{" | "}") {
                    cmd.push(w);
                    continue;
                }
                self.grub_command(&std::mem::take(&mut cmd), path, vars, depth, &mut entry);
                if w == "}" {
                    if let Some(e) = entry.take() {
                        self.push(e);
                    }
                }
            }
        }
    }

    fn grub_command(
        &mut self,
        words: &[String],
        path: &str,
        vars: &mut Vec<(String, String)>,
        depth: usize,
        entry: &mut Option<OwnEntry>,
    ) {
        let Some(cmd) = words.first().map(String::as_str) else { return };
        match (cmd, entry.as_mut()) {
            ("menuentry", _) => *entry = Some(self::entry(words.get(1).cloned().unwrap_or_default(), path)),
            ("linux" | "linuxefi" | "linux16", Some(e)) => {
                if let Some(k) = words.get(1).and_then(|k| in_iso(k, path)) {
                    e.kernel = k;
                    e.args = bounded_args(words[2..].iter().map(String::as_str));
                }
            }
            ("initrd" | "initrdefi" | "initrd16", Some(e)) => {
                e.initrds = words[1..].iter().take(MAX_ARGS).filter_map(|i| in_iso(i, path)).collect();
            }
            ("set", _) => {
                if let Some((k, v)) = words.get(1).and_then(|w| w.split_once('=')) {
                    set(vars, k, v);
                }
            }
            ("source", _) if depth < MAX_DEPTH => {
                if let Some(p) = words.get(1).and_then(|p| in_iso(p, path)) {
                    self.grub(&p, vars, depth + 1);
                }
            }
            // A new menu: its variables stay its own.
            ("configfile", _) if depth < MAX_DEPTH => {
                if let Some(p) = words.get(1).and_then(|p| in_iso(p, path)) {
                    self.grub(&p, &mut vars.clone(), depth + 1);
                }
            }
            _ => {}
        }
    }

    /// isolinux/syslinux: keywords in any case; relative paths from `dir`, the folder of the
    /// menu isolinux started with (its working directory), in included files too.
    fn syslinux(&mut self, path: &str, dir: &str, depth: usize) {
        let Some(text) = self.text(path, depth > 0) else { return };
        let at = format!("{dir}/menu");
        let mut entry: Option<OwnEntry> = None;
        let mut help = false;
        for line in text.lines() {
            let line = line.trim();
            let (key, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let (key, rest) = (key.to_ascii_lowercase(), rest.trim());
            // Help text is text, not keywords.
            if help {
                help = key != "endtext";
                continue;
            }
            match key.as_str() {
                "text" => help = rest.eq_ignore_ascii_case("help"),
                "label" => {
                    if let Some(e) = entry.take() {
                        self.push(e);
                    }
                    entry = Some(self::entry(rest.to_string(), path));
                }
                "menu" => {
                    let (sub, arg) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    match (sub.to_ascii_lowercase().as_str(), entry.as_mut()) {
                        ("label", Some(e)) => e.title = arg.trim().replace('^', ""),
                        ("include", _) if depth < MAX_DEPTH => self.include(arg, &at, dir, depth),
                        _ => {}
                    }
                }
                "kernel" | "linux" => {
                    if let (Some(e), Some(k)) = (entry.as_mut(), in_iso(rest, &at)) {
                        e.kernel = k;
                    }
                }
                "initrd" => {
                    if let Some(e) = entry.as_mut() {
                        e.initrds = rest.split(',').filter_map(|i| in_iso(i.trim(), &at)).collect();
                    }
                }
                "append" => {
                    if let Some(e) = entry.as_mut() {
                        // `APPEND -` clears the default's arguments: nothing to keep.
                        let words = rest.split_whitespace().filter(|w| *w != "-");
                        let (initrd, args): (Vec<&str>, Vec<&str>) =
                            words.partition(|w| w.starts_with("initrd="));
                        if let Some(list) = initrd.last().and_then(|w| w.strip_prefix("initrd=")) {
                            e.initrds = list.split(',').filter_map(|i| in_iso(i, &at)).collect();
                        }
                        e.args = bounded_args(args.into_iter());
                    }
                }
                "include" | "config" if depth < MAX_DEPTH => self.include(rest, &at, dir, depth),
                _ => {}
            }
        }
        if let Some(e) = entry.take() {
            self.push(e);
        }
    }

    fn include(&mut self, rest: &str, at: &str, dir: &str, depth: usize) {
        if let Some(file) = rest.split_whitespace().next().and_then(|f| in_iso(f, at)) {
            self.syslinux(&file, dir, depth + 1);
        }
    }

    /// A systemd-boot entry (Boot Loader Specification type 1).
    fn loader_entry(&mut self, path: &str) {
        let Some(text) = self.text(path, false) else { return };
        let mut e = entry(String::new(), path);
        for line in text.lines() {
            let line = line.trim();
            let (key, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match key {
                "title" => e.title = rest.to_string(),
                "linux" => e.kernel = in_iso(rest, "/").unwrap_or_default(),
                "initrd" if e.initrds.len() < MAX_ARGS => e.initrds.extend(in_iso(rest, "/")),
                "options" => e.args = bounded_args(rest.split_whitespace()),
                _ => {}
            }
        }
        self.push(e);
    }
}

fn set(vars: &mut Vec<(String, String)>, k: &str, v: &str) {
    let v: String = v.chars().take(MAX_WORD).collect();
    if let Some(slot) = vars.iter_mut().find(|(n, _)| n == k) {
        slot.1 = v;
    } else if vars.len() < 64 {
        // A menu that sets many names is not a boot menu; the first 64 are plenty.
        vars.push((k.to_string(), v));
    }
}

/// A path as a menu names it, as an absolute path in the ISO: GRUB's `(device)` prefix
/// dropped, a relative path taken from the menu's folder, `.` and `..` resolved. `None` for
/// no path at all (an empty word, an unclosed `(`, only a folder).
fn in_iso(p: &str, menu: &str) -> Option<String> {
    let p = match p.strip_prefix('(') {
        Some(rest) => rest.split_once(')')?.1,
        None => p,
    };
    if p.is_empty() {
        return None;
    }
    let base = if p.starts_with('/') { "" } else { menu.rsplit_once('/').map_or("", |(dir, _)| dir) };
    let mut parts: Vec<&str> = Vec::new();
    let joined = format!("{base}/{p}");
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => drop(parts.pop()),
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| format!("/{}", parts.join("/")))
}

/// One line of GRUB script as words: white space separates, quotes group (`'…'` as it is,
/// `"…"` with variables expanded and `\` escaping only `$`, `"` and `\`), `\` escapes, `#` at
/// a word's start comments, and `{`, `}` and `;` are words of their own. Variables GRUB
/// knows only at boot (`$iso_path`, `$root`) are empty, as unset ones are in GRUB; a `$`
/// before no name stays. No word grows past [`MAX_WORD`].
fn grub_words(line: &str, vars: &[(String, String)]) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut started = false;
    let mut chars = line.chars().peekable();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '#') if !started => break,
            (None, c) if c.is_whitespace() || c == ';' => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
                if c == ';' {
                    words.push(";".into());
                }
            }
            (None, '{' | '}') if !started => words.push(c.to_string()),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => word.push(c),
            (Some('"'), '\\') if !matches!(chars.peek(), Some('$' | '"' | '\\')) => word.push('\\'),
            (_, '\\') => {
                word.extend(chars.next());
                started = true;
            }
            (_, '$') if chars.peek().is_some_and(|n| *n == '{' || n.is_ascii_alphanumeric() || *n == '_') => {
                let braced = chars.peek() == Some(&'{');
                if braced {
                    chars.next();
                }
                let mut name = String::new();
                while let Some(&n) = chars.peek() {
                    if braced && n == '}' {
                        chars.next();
                        break;
                    }
                    if !(braced || n.is_ascii_alphanumeric() || n == '_') {
                        break;
                    }
                    name.push(n);
                    chars.next();
                }
                if let Some((_, v)) = vars.iter().find(|(k, _)| *k == name) {
                    word.push_str(v);
                }
                started = true;
            }
            (_, c) => {
                word.push(c);
                started = true;
            }
        }
        if word.len() > MAX_WORD {
            let end = (0..=MAX_WORD).rev().find(|&i| word.is_char_boundary(i)).unwrap_or(0);
            word.truncate(end);
        }
        if words.len() > MAX_ARGS {
            break;
        }
    }
    if started {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn from(files: &[(&str, &str)]) -> Vec<OwnEntry> {
        let files: BTreeMap<String, String> =
            files.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
        let list = |dir: &str| {
            files
                .keys()
                .filter_map(|p| p.strip_prefix(dir)?.strip_prefix('/').map(String::from))
                .collect::<Vec<_>>()
        };
        read(&|p| files.get(p).cloned(), &list)
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn grub_menus_as_debian_ubuntu_arch_and_fedora_write_them() {
        let debian = "source /boot/grub/config.cfg\n\
            # Live boot\n\
            menuentry \"Live system (amd64)\" --hotkey=l {\n\
            \tlinux\t/live/vmlinuz-6.1.0-27-amd64 boot=live components quiet splash findiso=${iso_path}\n\
            \tinitrd\t/live/initrd.img-6.1.0-27-amd64\n}\n";
        let e = from(&[("/boot/grub/grub.cfg", debian), ("/boot/grub/config.cfg", "set timeout=30\n")]);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].title, "Live system (amd64)");
        assert_eq!(e[0].kernel, "/live/vmlinuz-6.1.0-27-amd64");
        assert_eq!(e[0].initrds, strs(&["/live/initrd.img-6.1.0-27-amd64"]));
        assert_eq!(e[0].args, strs(&["boot=live", "components", "quiet", "splash", "findiso="]));

        let ubuntu = "menuentry \"Try or Install Ubuntu\" {\n\tset gfxpayload=keep\n\tlinux\t/casper/vmlinuz  --- quiet splash\n\tinitrd\t/casper/initrd\n}\n\
            submenu 'Boot and Install with the HWE kernel' {\nmenuentry \"Ubuntu (HWE)\" {\n\tlinux /casper/hwe-vmlinuz ---\n\tinitrd /casper/hwe-initrd\n}\n}\n";
        let e = from(&[("/boot/grub/grub.cfg", ubuntu)]);
        assert_eq!(
            e.iter().map(|e| e.kernel.as_str()).collect::<Vec<_>>(),
            ["/casper/vmlinuz", "/casper/hwe-vmlinuz"]
        );

        let arch = "set archiso_platform=x64\nmenuentry \"Arch Linux install medium (x86_64, ${archiso_platform})\" --class arch {\n\
            set gfxpayload=keep\n\
            linux /arch/boot/x86_64/vmlinuz-linux archisobasedir=arch archisosearchuuid=2024-11-01-10-00-00-00\n\
            initrd /arch/boot/intel-ucode.img /arch/boot/amd-ucode.img /arch/boot/x86_64/initramfs-linux.img\n}\n";
        let e = from(&[("/boot/grub/loopback.cfg", arch)]);
        assert_eq!(e[0].title, "Arch Linux install medium (x86_64, x64)");
        assert_eq!(e[0].initrds.len(), 3);
        assert_eq!(e[0].args[1], "archisosearchuuid=2024-11-01-10-00-00-00");

        let fedora = "search --no-floppy --set=root -l 'Fedora-WS-Live-40-1-14'\n\
            menuentry 'Start Fedora-Workstation-Live 40' --class fedora {\n\
            \tlinuxefi ($root)/images/pxeboot/vmlinuz root=live:CDLABEL=Fedora-WS-Live-40-1-14 rd.live.image quiet rhgb\n\
            \tinitrdefi /images/pxeboot/initrd.img\n}\n";
        let e = from(&[("/EFI/BOOT/grub.cfg", fedora)]);
        assert_eq!(e[0].kernel, "/images/pxeboot/vmlinuz");
        assert_eq!(e[0].args[0], "root=live:CDLABEL=Fedora-WS-Live-40-1-14");
    }

    #[test]
    fn one_line_entries_and_included_menus() {
        // One-line entries, a menu read once though sourced twice, configfile's own variables.
        let grub = "set k=/k1\nmenuentry a { linux $k x; initrd /i }\nsource /boot/grub/m.cfg\nsource /boot/grub/m.cfg\nconfigfile /boot/grub/c.cfg\nmenuentry b { linux $k }\n";
        let e = from(&[
            ("/boot/grub/grub.cfg", grub),
            ("/boot/grub/m.cfg", "menuentry m { linux /m }\n"),
            ("/boot/grub/c.cfg", "set k=/k2\nmenuentry c { linux $k }\n"),
        ]);
        let kernels: Vec<&str> = e.iter().map(|e| e.kernel.as_str()).collect();
        assert_eq!(kernels, ["/k1", "/m", "/k2", "/k1"]);
        assert_eq!(e[0].initrds, strs(&["/i"]));
        assert_eq!(e[0].args, strs(&["x"]));
        // isolinux's CONFIG and help text.
        let e = from(&[
            ("/isolinux/isolinux.cfg", "CONFIG /boot/syslinux/archiso_sys.cfg\n"),
            (
                "/boot/syslinux/archiso_sys.cfg",
                "LABEL arch\nTEXT HELP\nkernel /not/this\nENDTEXT\nLINUX /arch/boot/x86_64/vmlinuz-linux\nINITRD /arch/boot/x86_64/initramfs-linux.img\nAPPEND archisobasedir=arch\n",
            ),
        ]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].kernel, "/arch/boot/x86_64/vmlinuz-linux");
    }

    #[test]
    fn syslinux_and_loader_entries() {
        let isolinux = "include menu.cfg\ndefault vesamenu.c32\n";
        let menu = "LABEL live-amd64\n  MENU LABEL ^Live system (amd64)\n  KERNEL ../live/vmlinuz\n  APPEND initrd=/live/initrd.img boot=live components\n\
            label nixos\n  menu label NixOS\n  linux /boot/bzImage\n  initrd /boot/initrd\n  append init=/nix/store/abc-nixos-system/init loglevel=4\n";
        let e = from(&[("/isolinux/isolinux.cfg", isolinux), ("/isolinux/menu.cfg", menu)]);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].title, "Live system (amd64)");
        assert_eq!(e[0].kernel, "/live/vmlinuz");
        assert_eq!(e[0].initrds, strs(&["/live/initrd.img"]));
        assert_eq!(e[0].args, strs(&["boot=live", "components"]));
        assert_eq!(e[1].args[0], "init=/nix/store/abc-nixos-system/init");

        let conf = "title Arch Linux\nlinux /arch/boot/x86_64/vmlinuz-linux\ninitrd /arch/boot/x86_64/initramfs-linux.img\noptions archisobasedir=arch\n";
        let e = from(&[("/loader/entries/01-archiso.conf", conf), ("/loader/entries/notes.txt", "linux /x")]);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].from, "/loader/entries/01-archiso.conf");
    }

    #[test]
    fn hostile_menus_end() {
        // A menu that sources itself, and one that only sets variables.
        let e = from(&[("/boot/grub/grub.cfg", "source /boot/grub/grub.cfg\nmenuentry x {\nlinux /k\n}\n")]);
        assert_eq!(e.len(), 1, "the same entry once");
        // A variable that doubles on every line stays at its cap.
        let doubling: String = std::iter::once("set a=xx\n".to_string())
            .chain((0..60).map(|_| "set a=$a$a\n".to_string()))
            .chain(["menuentry x {\nlinux /k $a\n}\n".to_string()])
            .collect();
        let e = from(&[("/boot/grub/grub.cfg", &doubling)]);
        assert!(e[0].args.iter().map(String::len).sum::<usize>() <= MAX_ARG_BYTES);
        let many: String = (0..10_000).map(|i| format!("set v{i}=x\n")).collect();
        assert!(from(&[("/boot/grub/grub.cfg", &many)]).is_empty());
        // Unterminated quotes and braces, entries without a kernel, paths out of the tree.
        let odd = "menuentry \"open {\nlinux\ninitrd /i\n}\nmenuentry x {\nlinux (hd0 ../../k a\n}\n";
        let e = from(&[("/boot/grub/grub.cfg", odd)]);
        assert!(e.iter().all(|e| e.kernel.starts_with('/')), "{e:?}");
    }

    #[test]
    fn words_and_paths() {
        let vars = vec![("a".to_string(), "1".to_string())];
        assert_eq!(
            grub_words(r#"linux /k "x y" 'z $a' $a${a} \"q # a comment"#, &vars),
            strs(&["linux", "/k", "x y", "z $a", "11", "\"q"])
        );
        assert_eq!(grub_words("  # comment", &vars), Vec::<String>::new());
        assert_eq!(
            in_iso("(loop)/casper/vmlinuz", "/boot/grub/grub.cfg").as_deref(),
            Some("/casper/vmlinuz")
        );
        assert_eq!(in_iso("../live/vmlinuz", "/isolinux/isolinux.cfg").as_deref(), Some("/live/vmlinuz"));
        assert_eq!(in_iso("../../../../etc", "/a/b.cfg").as_deref(), Some("/etc"));
        for nothing in ["", "(hd0", "(loop)", "/..", "."] {
            assert_eq!(in_iso(nothing, "/"), None, "{nothing:?}");
        }
        // Inside double quotes `\` escapes only `$ " \`; a `$` before no name stays.
        assert_eq!(grub_words(r#""a\b \$x \" $ 5$""#, &vars), strs(&[r#"a\b $x " $ 5$"#]));
        assert_eq!(
            grub_words("menuentry x { linux /k; initrd /i }", &vars),
            strs(&["menuentry", "x", "{", "linux", "/k", ";", "initrd", "/i", "}"])
        );
        assert_eq!(arg_key("findiso=/x"), "findiso");
    }

    #[test]
    fn own_arguments_join_the_profiles_tokens() {
        let own = strs(&["root=live:CDLABEL=Fedora-WS-Live-40", "rd.live.image", "quiet", "rhgb"]);
        assert_eq!(
            merged_args("root=live:/dev/mapper/isoroot rd.live.image", &own),
            strs(&["root=live:/dev/mapper/isoroot", "rd.live.image", "quiet", "rhgb"])
        );
        // Ubuntu's `---`: what follows is the installed system's; isoroot's words and
        // words a command line cannot carry stay out.
        let own =
            strs(&["iso-scan/filename=", "iso=x", "rdinit=/init", "a=\"b", "maybe-ubiquity", "---", "quiet"]);
        assert_eq!(merged_args("boot=casper", &own), strs(&["boot=casper", "maybe-ubiquity"]));
        let own =
            strs(&["archisobasedir=arch", "archisosearchuuid=2024", "img_loop=/a.iso", "cow_spacesize=4G"]);
        assert_eq!(
            merged_args("archisobasedir=arch archisodevice=/dev/mapper/isoroot", &own),
            strs(&["archisobasedir=arch", "archisodevice=/dev/mapper/isoroot", "cow_spacesize=4G"])
        );
    }
}
