//! `isoroot menu`: boot entries for every ISO in a folder. Each entry boots the ISO's own
//! kernel and initrd followed by isoroot's `--no-modules` addon (the combined boot), with
//! `rdinit=/isoroot/init`, the profile's tokens and `iso=` (plus extent hints when they fit).
//! GRUB entries read the kernel through `loopback`; systemd-boot cannot read an ISO, so its
//! Type #1 entries get copies of the kernel and initrd in the ESP, deduplicated by content.

use crate::extents;
use crate::inspect::{self, one_line, Report};
use anyhow::{bail, Context, Result};
use isoroot_fs::extents::hex;
use isoroot_fs::iso9660::IsoFs;
use isoroot_fs::location::{word, Location, Source};
use isoroot_profiles::bootcfg::merged_args;
use isoroot_profiles::iso::{own_args, own_init};
use isoroot_profiles::Profile;
use sha2::{Digest, Sha256};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Kernels and initrds larger than this are not ISO boot files.
const MAX_BOOT_FILE: u64 = 1 << 30;
const OWN_LOOPBACK: &str = "/boot/grub/loopback.cfg";
/// The x86 kernel command line, with its NUL.
const MAX_CMDLINE: usize = 2048;
/// Kept free for what a boot loader puts before an entry's words (GRUB's
/// `BOOT_IMAGE=(hd0,gpt2)/…`, systemd-boot's `initrd=` words).
const LOADER_ROOM: usize = 256;

pub struct Options {
    pub dir: PathBuf,
    /// isoroot's `--no-modules` archive.
    pub addon: PathBuf,
    pub profiles: Vec<Profile>,
    pub hints: bool,
    pub pin_sha256: bool,
    /// More kernel command line words for every entry (`console=ttyS0`, `quiet`).
    pub append: Vec<String>,
}

/// One ISO and what its entry needs.
struct Iso {
    file: PathBuf,
    loc: Location,
    uuid: String,
    report: Report,
    title: String,
    slug: String,
    /// The kernel command line, `rdinit=` and `iso=` included.
    cmdline: Vec<String>,
    has_loopback_cfg: bool,
}

/// Every `*.iso` under `dir`, in path order.
fn find_isos(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let path = e?.path();
            if path.is_dir() {
                todo.push(path);
            } else if path.extension().is_some_and(|x| x.eq_ignore_ascii_case("iso")) {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn sha256_hex(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex(&h.finalize()))
}

/// Text from an ISO (os-release, its volume label) or a file name, as a line of a boot
/// loader's file may hold it: see [`one_line`]; at most 100 characters.
pub fn shown(text: &str) -> String {
    one_line(text, 100)
}

/// [`shown`] for an iPXE line, which iPXE expands (`${…}`), splits (quotes, backslashes)
/// and ends at a `;`, `&&` or `||` token or a `#` before it runs it: only letters, digits,
/// white space and `.-_()+,:/` stay, anything else becomes a space.
fn ipxe_shown(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || c.is_whitespace() || ".-_()+,:/".contains(c);
    shown(&text.chars().map(|c| if plain(c) { c } else { ' ' }).collect::<String>())
}

/// "Debian live 12.8.0 (debian-live.iso)": what the ISO holds, and its file name; see
/// [`shown`].
fn title(report: &Report, file: &Path) -> String {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let what = match (&report.distro, &report.version) {
        (Some(d), Some(v)) if !d.contains(v.as_str()) => format!("{d} {v}"),
        (Some(d), _) => d.clone(),
        (None, _) => report.label.clone(),
    };
    shown(&format!("{what} ({name})"))
}

/// The file name without `.iso`, as a name for entries, labels and NBD exports.
fn slug(file: &Path) -> String {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    name.trim_end_matches(".iso").chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

fn prepare(file: &Path, o: &Options) -> Result<Iso> {
    let report = inspect::inspect(file, &o.profiles)?;
    let name = file.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let loc = extents::location(file)?;
    if loc.path.chars().any(char::is_control) {
        bail!("its path holds a control character, which no boot entry can carry: rename it");
    }
    let Some(Source::Uuid(uuid)) = loc.source.clone() else {
        bail!("{}: no filesystem UUID", file.display());
    };
    let f = std::fs::File::open(file)?;
    let fs = IsoFs::open(&f)?;
    let has_loopback_cfg = fs.lookup(OWN_LOOPBACK)?.is_some();
    // The profile's tokens, then the ISO's own entry's arguments for this kernel.
    let own = report.kernel.first().map_or(&[][..], |k| own_args(&report.own_menu, k));
    let mut cmdline = merged_args(report.cmdline.as_deref().unwrap_or(""), own);
    cmdline.push("rdinit=/isoroot/init".into());
    if let Some(profile) = o.profiles.iter().find(|p| Some(&p.name) == report.profile.as_ref()) {
        if profile.init.is_none() {
            match own_init(&report.own_menu) {
                Some(init) if cmdline.contains(&init) => {}
                Some(init) => cmdline.push(init),
                None => eprintln!(
                    "isoroot menu: {name}: profile {} needs init=, and the ISO's own menu names none",
                    profile.name
                ),
            }
        }
    }
    let hints = if o.hints {
        extents::hint_words(file).unwrap_or_else(|e| {
            eprintln!("isoroot menu: {name}: no extent hints ({e:#}); the boot scans the filesystem");
            None
        })
    } else {
        None
    };
    let mut tail = Vec::new();
    if o.pin_sha256 {
        tail.push(format!("iso.sha256={}", sha256_hex(file)?));
    }
    tail.extend(o.append.iter().cloned());
    // The whole line must fit the kernel's, with room for what the boot loader puts first.
    let bytes = |words: &[String]| words.iter().map(|w| w.len() + 1).sum::<usize>();
    let fixed = bytes(&cmdline) + bytes(&tail) + LOADER_ROOM;
    let plain = vec![word("iso", &loc.to_string())];
    let iso_words = match hints {
        Some(words) if fixed + bytes(&words) <= MAX_CMDLINE => words,
        Some(_) => {
            eprintln!("isoroot menu: {name}: the extent hints do not fit beside the entry's other words; the boot scans the filesystem");
            plain
        }
        None => plain,
    };
    if fixed + bytes(&iso_words) > MAX_CMDLINE {
        bail!(
            "its kernel command line would take {} bytes with the boot loader's, more than the {MAX_CMDLINE} the kernel takes",
            fixed + bytes(&iso_words)
        );
    }
    cmdline.extend(iso_words);
    cmdline.extend(tail);
    Ok(Iso {
        file: file.to_path_buf(),
        loc,
        uuid,
        title: title(&report, file),
        slug: slug(file),
        cmdline,
        has_loopback_cfg,
        report,
    })
}

fn isos(o: &Options) -> Result<Vec<Iso>> {
    let mut out = Vec::new();
    for file in find_isos(&o.dir)? {
        match prepare(&file, o) {
            Ok(iso) => out.push(iso),
            Err(e) => eprintln!("isoroot menu: skipping {}: {e:#}", file.display()),
        }
    }
    Ok(out)
}

/// GRUB quoting: single quotes keep everything, double quotes for the kernel included.
pub fn gq(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=:+,@".contains(c)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

pub struct Grub {
    pub serial: bool,
    pub timeout: u32,
    pub default: usize,
}

pub fn grub(o: &Options, g: &Grub) -> Result<String> {
    let addon = extents::location(&o.addon).context("the addon must be on a mounted filesystem")?;
    let mut s = format!(
        "# Written by `isoroot menu --grub {}`: every ISO under it, in path order.\n\
         set timeout={}\nset default={}\n",
        o.dir.display(),
        g.timeout,
        g.default
    );
    if g.serial {
        s.push_str(
            "serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n",
        );
    }
    s.push_str("insmod part_msdos\ninsmod part_gpt\ninsmod ext2\ninsmod fat\ninsmod exfat\ninsmod ntfs\ninsmod iso9660\ninsmod loopback\n");
    let addon_uuid = match &addon.source {
        Some(Source::Uuid(u)) => u.clone(),
        _ => bail!("{}: no filesystem UUID", o.addon.display()),
    };
    for iso in isos(o)? {
        let search = format!("    search --no-floppy --fs-uuid --set=root {}\n", iso.uuid);
        if let (Some(kernel), Some(initrd)) = (iso.report.kernel.first(), iso.report.initrd.first()) {
            if iso.report.unsupported.is_none() {
                if addon_uuid != iso.uuid {
                    bail!(
                        "{} is on another filesystem than {}: put the addon beside the ISOs",
                        o.addon.display(),
                        iso.file.display()
                    );
                }
                // GRUB puts double quotes around an argument that holds a space and escapes
                // quotes inside it with backslashes, which the kernel does not undo: it gets
                // `iso=UUID=…:/a b.iso` and quotes it itself.
                let args: Vec<String> = iso.cmdline.iter().map(|w| gq(&w.replace('"', ""))).collect();
                let _ = write!(
                    s,
                    "\nmenuentry {} --id {} {{\n{search}    loopback loop {}\n    linux (loop){} {}\n    initrd (loop){} {}\n}}\n",
                    gq(&iso.title),
                    gq(&format!("isoroot-{}", iso.slug)),
                    gq(&iso.loc.path),
                    gq(kernel),
                    args.join(" "),
                    gq(initrd),
                    gq(&addon.path),
                );
            }
        } else if iso.report.unsupported.is_none() {
            eprintln!(
                "isoroot menu: {}: no kernel and initrd found where profile {} keeps them",
                iso.file.display(),
                iso.report.profile.as_deref().unwrap_or("-")
            );
        }
        if let Some(why) = &iso.report.unsupported {
            let _ = writeln!(s, "\n# {}: not bootable through isoroot: {why}", iso.title);
        }
        if iso.has_loopback_cfg {
            let _ = write!(
                s,
                "\nmenuentry {} --id {} {{\n    set iso_path={}\n    export iso_path\n{search}    loopback loop \"$iso_path\"\n    set root=(loop)\n    configfile {OWN_LOOPBACK}\n}}\n",
                gq(&format!("{}, with the ISO's own menu", iso.title)),
                gq(&format!("isoroot-{}-own", iso.slug)),
                gq(&iso.loc.path),
            );
        }
    }
    Ok(s)
}

/// systemd-boot's Type #1 entries in `esp`, with the kernels and initrds copied there.
pub fn bls(o: &Options, esp: &Path) -> Result<Vec<PathBuf>> {
    let dir = esp.join("isoroot");
    let entries = esp.join("loader/entries");
    std::fs::create_dir_all(&dir)?;
    std::fs::create_dir_all(&entries)?;
    std::fs::copy(&o.addon, dir.join("isoroot-addon.img"))
        .with_context(|| format!("copying {}", o.addon.display()))?;
    let mut written = Vec::new();
    for iso in isos(o)? {
        let (Some(kernel), Some(initrd)) = (iso.report.kernel.first(), iso.report.initrd.first()) else {
            continue;
        };
        if iso.report.unsupported.is_some() {
            continue;
        }
        let f = std::fs::File::open(&iso.file)?;
        let fs = IsoFs::open(&f)?;
        // Content-addressed: ISOs that share a kernel (or an initrd) share the copy.
        let copy = |path: &str| -> Result<String> {
            let node = fs.lookup(path)?.with_context(|| format!("{path} in {}", iso.file.display()))?;
            let bytes = fs.read_file(&node, MAX_BOOT_FILE)?;
            let name = format!("{}.{}", &hex(&Sha256::digest(&bytes))[..16], node.name);
            let target = dir.join(&name);
            if !target.exists() {
                std::fs::write(&target, &bytes).with_context(|| format!("writing {}", target.display()))?;
            }
            Ok(format!("/isoroot/{name}"))
        };
        let (linux, initrd) = (copy(kernel)?, copy(initrd)?);
        let entry = entries.join(format!("isoroot-{}.conf", iso.slug));
        let version = shown(iso.report.version.as_deref().unwrap_or_default());
        let text = format!(
            "title   {}\nversion {version}\nlinux   {linux}\ninitrd  {initrd}\ninitrd  /isoroot/isoroot-addon.img\noptions {}\n",
            iso.title,
            iso.cmdline.join(" ")
        );
        std::fs::write(&entry, text).with_context(|| format!("writing {}", entry.display()))?;
        written.push(entry);
    }
    Ok(written)
}

/// What `--ipxe` needs besides the folder.
pub struct Ipxe {
    /// Where the folder is served: `http://server/live`.
    pub url: String,
    /// `HOST[:PORT]` of an NBD server with one export per ISO, named after its file (as
    /// nbdkit's `file dir=` serves them): the entries then boot over NBD instead of
    /// downloading into RAM.
    pub nbd: Option<String>,
    pub timeout: u32,
    pub default: usize,
}

/// The kernel and isoroot's `--network` initramfs, beside the ISOs on the server.
pub const NET_KERNEL: &str = "vmlinuz";
pub const NET_INITRD: &str = "isoroot-net.img";

/// Percent-encodes what a URL path cannot hold as it is.
fn url_path(rel: &Path) -> String {
    rel.to_string_lossy()
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// An iPXE script with an entry per ISO under `dir`: the kernel and isoroot's network
/// initramfs from the server, and `iso=` pointing at the ISO there (with its sha256, which
/// plain HTTP needs) or at its NBD export.
pub fn ipxe(dir: &Path, profiles: &[Profile], append: &[String], n: &Ipxe) -> Result<String> {
    let base = n.url.trim_end_matches('/');
    let mut items = String::new();
    let mut entries = String::new();
    let mut labels = Vec::new();
    for file in find_isos(dir)? {
        let report = match inspect::inspect(&file, profiles) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("isoroot menu: skipping {}: {e:#}", file.display());
                continue;
            }
        };
        let title = ipxe_shown(&title(&report, &file));
        if let Some(why) = &report.unsupported {
            let _ = writeln!(items, "# {title}: not bootable through isoroot: {why}");
            continue;
        }
        let label = slug(&file);
        let rel = file.strip_prefix(dir).unwrap_or(&file);
        let iso = match &n.nbd {
            Some(server) => {
                let name = file.file_name().unwrap_or_default();
                format!("iso=nbd://{server}/{}", url_path(Path::new(name)))
            }
            None => format!("iso={base}/{} iso.sha256={}", url_path(rel), sha256_hex(&file)?),
        };
        let words: Vec<&str> = [iso.as_str()].into_iter().chain(append.iter().map(String::as_str)).collect();
        let _ = writeln!(items, "item {label} {title}");
        let _ = write!(
            entries,
            "\n:{label}\nkernel ${{base}}/{NET_KERNEL} initrd={NET_INITRD} {}\ninitrd ${{base}}/{NET_INITRD}\nboot || goto failed\n",
            words.join(" ")
        );
        labels.push(label);
    }
    let Some(default) = labels.get(n.default).or(labels.first()) else {
        bail!("no bootable ISO under {}", dir.display());
    };
    Ok(format!(
        "#!ipxe\n# Written by `isoroot menu --ipxe {}`: every ISO under it, in path order. The server also\n\
         # holds {NET_KERNEL} and {NET_INITRD} (`isoroot mkinitramfs --network` for that kernel).\n\
         set base {base}\nisset ${{ip}} || dhcp || goto failed\nmenu isoroot: live ISOs from {base}\n{items}\
         choose --default {default} --timeout {} target || goto failed\ngoto ${{target}}\n{entries}\n\
         :failed\necho isoroot: the boot failed; iPXE shell\nshell\n",
        dir.display(),
        u64::from(n.timeout) * 1000
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_isos_stays_on_its_line() {
        assert_eq!(shown("Debian\n:evil\r\nshell\t x\u{7}y"), "Debian :evil shell x y");
        assert_eq!(shown("  a\u{2028}b  "), "a b");
        assert_eq!(shown(&"é".repeat(300)).chars().count(), 100);
        assert_eq!(
            ipxe_shown("Tom's ${ip} \"x\" a\\b ; chain x && y || z #c"),
            "Tom s ip x a b chain x y z c"
        );
    }
}
