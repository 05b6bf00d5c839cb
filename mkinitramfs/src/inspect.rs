//! `isoroot inspect ISO`: what isoroot would make of an ISO, read without mounting it and
//! without privileges: its layout and label, the profile that matches, the distro and kernel
//! inside the root image, and where the ISO keeps its own kernel and initrd.

use crate::authenticode::{self, Signer};
use anyhow::{Context, Result};
use isoroot_fs::iso9660::{IsoFs, Names};
use isoroot_fs::squashfs::Squashfs;
use isoroot_fs::{ReadAt, Window};
use isoroot_profiles::bootcfg::OwnEntry;
use isoroot_profiles::iso::{matching, own_entries, IsoFiles};
use isoroot_profiles::{Match, Profile};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A kernel larger than this is not read for its signature.
const MAX_KERNEL: u64 = 256 << 20;

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub file: String,
    pub label: String,
    /// Which directory names the image carries: Rock Ridge, Joliet or plain ISO 9660.
    pub names: &'static str,
    pub profile: Option<String>,
    pub description: Option<String>,
    pub strategy: Option<&'static str>,
    /// Why this family cannot boot through isoroot, when it cannot.
    pub unsupported: Option<String>,
    /// From the root image's os-release.
    pub distro: Option<String>,
    pub version: Option<String>,
    /// Kernel versions with modules in the root image (`/lib/modules/*`).
    pub kernel_versions: Vec<String>,
    /// The ISO's own kernel and initrd (paths in the ISO).
    pub kernel: Vec<String>,
    pub initrd: Vec<String>,
    /// Root images, bottom layer first, and the format of the top one.
    pub root_images: Vec<String>,
    pub root_format: Option<String>,
    /// Command line tokens a boot entry for this ISO carries.
    pub cmdline: Option<String>,
    /// The entries of the ISO's own boot menus (GRUB, isolinux, systemd-boot).
    pub own_menu: Vec<OwnEntry>,
    /// Who signed the ISO's kernel (the first of `kernel`), for Secure Boot, and whether the
    /// chain `isoroot install --secure-boot` writes accepts it.
    pub kernel_signers: Vec<Signer>,
    pub secure_boot: Option<String>,
    /// What could not be read, and why.
    pub notes: Vec<String>,
}

/// The certificate authority of the kernels that the chain `isoroot install --secure-boot`
/// writes accepts: Debian's shim trusts it, and Debian's kernels trust it for kexec.
const DEBIAN_CA: &str = "Debian Secure Boot CA";

/// What Secure Boot makes of a kernel with these signers, and what to do about a refusal.
fn secure_boot(signers: &[Signer]) -> String {
    let stick = "boot the ISO with the stick's kernel instead (GRUB's submenu \"with this stick's kernel\")";
    match signers.iter().find(|s| s.issuer == DEBIAN_CA).or(signers.first()) {
        Some(s) if s.issuer == DEBIAN_CA => {
            "accepted: signed under Debian's CA, which Debian's shim (isoroot install --secure-boot) and the stick's \
             kernel (isoroot's menu, kexec) trust"
                .into()
        }
        Some(s) => format!(
            "refused by Debian's shim unless {}'s certificate is enrolled (mokutil --import, then confirm in \
             MokManager at the next boot); or {stick}",
            s.issuer
        ),
        None => format!("not signed: refused with Secure Boot on; {stick}"),
    }
}

/// The Authenticode signers of a kernel in the ISO.
fn kernel_signers<S: ReadAt + ?Sized>(iso: &IsoFs<'_, S>, path: &str) -> Result<Vec<Signer>> {
    let node = iso.lookup(path)?.with_context(|| format!("{path} is not in the ISO"))?;
    authenticode::signers(&iso.read_file(&node, MAX_KERNEL)?)
}

fn os_release(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
}

/// Reads os-release and the module directories from the root images, top layer first.
fn read_root<S: ReadAt + ?Sized>(
    iso: &IsoFs<'_, S>,
    src: &S,
    profile: &Profile,
    layers: &[String],
    r: &mut Report,
) {
    for layer in layers.iter().rev() {
        let node = match iso.lookup(layer) {
            Ok(Some(n)) => n,
            _ => continue,
        };
        let Some(&(offset, _)) = node.extents.first() else { continue };
        if node.extents.len() > 1 {
            r.notes.push(format!("{layer}: spread over several extents, not inspected"));
            continue;
        }
        let window = Window { dev: src, offset };
        let fs = match Squashfs::open(&window) {
            Ok(fs) => fs,
            Err(e) => {
                let mut magic = [0u8; 4];
                let erofs = window.read_at(1024, &mut magic).is_ok() && magic == 0xE0F5_E1E2u32.to_le_bytes();
                if r.root_format.is_none() {
                    r.root_format = Some(if erofs { "erofs" } else { "unknown" }.into());
                }
                r.notes.push(format!(
                    "{layer}: {}, not inspected",
                    if erofs { "EROFS".to_string() } else { format!("{e:#}") }
                ));
                continue;
            }
        };
        r.root_format.get_or_insert_with(|| "squashfs".into());
        if let Some(n) = profile.nested.iter().find(|n| fs.is_file(n).unwrap_or(false)) {
            r.root_format = Some("squashfs holding an ext image".into());
            r.notes.push(format!("{layer}: the root is the image {n} inside it, not inspected"));
            continue;
        }
        if r.distro.is_none() {
            let text = ["/etc/os-release", "/usr/lib/os-release"]
                .iter()
                .find_map(|p| fs.read(p).ok().flatten())
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            if let Some(text) = text {
                r.distro = os_release(&text, "PRETTY_NAME").or_else(|| os_release(&text, "NAME"));
                r.version = os_release(&text, "VERSION_ID");
            }
        }
        if r.kernel_versions.is_empty() {
            if let Ok(Some(mut v)) = fs.list("/lib/modules") {
                v.sort();
                r.kernel_versions = v;
            }
        }
    }
}

pub fn inspect(path: &Path, profiles: &[Profile]) -> Result<Report> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let iso = IsoFs::open(&file).with_context(|| path.display().to_string())?;
    let mut r = Report {
        file: path.display().to_string(),
        label: iso.label.clone(),
        names: iso.names.name(),
        ..Report::default()
    };
    r.own_menu = own_entries(&iso);
    if iso.names == Names::Iso9660 {
        r.notes
            .push("no Rock Ridge or Joliet names: plain ISO 9660 names, compared case-insensitively".into());
    }
    let found = isoroot_profiles::find(profiles, &IsoFiles(&iso)).map_err(|e| anyhow::anyhow!(e))?;
    let (profile, layers) = match found {
        Match::Found(p, layers) => (p, layers),
        Match::Unsupported(p) => {
            r.unsupported = p.unsupported.clone();
            (p, Vec::new())
        }
        Match::Nothing(tried) => {
            r.notes.push(format!("no profile matches; tried {}", tried.join("; ")));
            return Ok(r);
        }
    };
    r.profile = Some(profile.name.clone());
    r.description = Some(profile.description.clone());
    r.strategy = Some(profile.strategy.name());
    r.cmdline = Some(profile.cmdline.clone()).filter(|c| !c.is_empty());
    r.kernel = matching(&IsoFiles(&iso), &profile.kernel);
    r.initrd = matching(&IsoFiles(&iso), &profile.initrd);
    if let Some(kernel) = r.kernel.first().cloned() {
        match kernel_signers(&iso, &kernel) {
            Ok(signers) => {
                r.secure_boot = Some(secure_boot(&signers));
                r.kernel_signers = signers;
            }
            Err(e) => r.notes.push(format!("{kernel}: no signature read: {e:#}")),
        }
    }
    read_root(&iso, &file, profile, &layers, &mut r);
    r.root_images = layers;
    Ok(r)
}

impl Report {
    pub fn text(&self) -> String {
        let mut rows: Vec<(&str, String)> =
            vec![("file", self.file.clone()), ("label", self.label.clone()), ("names", self.names.into())];
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let list = |v: &[String]| if v.is_empty() { "-".into() } else { v.join(", ") };
        let profile = match (&self.profile, &self.strategy) {
            (Some(p), Some(s)) => format!("{p} ({s}): {}", opt(&self.description)),
            _ => "none".into(),
        };
        rows.push(("profile", profile));
        if let Some(u) = &self.unsupported {
            rows.push(("unsupported", u.clone()));
        }
        let distro = match (&self.distro, &self.version) {
            (Some(d), Some(v)) if !d.contains(v.as_str()) => format!("{d} ({v})"),
            (Some(d), _) => d.clone(),
            (None, _) => "-".into(),
        };
        rows.extend([
            ("distro", distro),
            ("kernel", list(&self.kernel)),
            ("initrd", list(&self.initrd)),
            ("modules", list(&self.kernel_versions)),
            ("root", format!("{} ({})", list(&self.root_images), opt(&self.root_format))),
            ("cmdline", opt(&self.cmdline)),
        ]);
        for s in &self.kernel_signers {
            rows.push((
                "signed",
                one_line(
                    &format!("{} (issued by {}; certificate sha256 {})", s.subject, s.issuer, s.sha256),
                    300,
                ),
            ));
        }
        if let Some(v) = &self.secure_boot {
            rows.push(("secure boot", v.clone()));
        }
        for e in &self.own_menu {
            let initrds =
                if e.initrds.is_empty() { String::new() } else { format!(" + {}", e.initrds.join(" + ")) };
            rows.push((
                "own menu",
                one_line(
                    &format!("{} ({}): {}{initrds} {}", e.title, e.from, e.kernel, e.args.join(" ")),
                    300,
                ),
            ));
        }
        rows.extend(self.notes.iter().map(|n| ("note", n.clone())));
        rows.iter().map(|(k, v)| format!("{:<9} {v}\n", format!("{k}:"))).collect()
    }
}

/// `text` on one line of at most `max` characters: a control character would end the line
/// there and let the text start a command of its own, so each becomes a space; white space
/// folds to one space.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars().map(|c| if c.is_control() || c.is_whitespace() { ' ' } else { c }) {
        if out.chars().count() == max {
            break;
        }
        if c != ' ' || !(out.is_empty() || out.ends_with(' ')) {
            out.push(c);
        }
    }
    out.trim_end().to_string()
}

/// The built-in profiles, overridden or extended by YAML files.
pub fn profiles(extra: &[PathBuf]) -> Result<Vec<Profile>> {
    let mut all = isoroot_profiles::builtin().map_err(anyhow::Error::msg)?;
    for path in extra {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        all.push(isoroot_profiles::from_yaml(&text).with_context(|| format!("profile {}", path.display()))?);
    }
    Ok(isoroot_profiles::merge(all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_values_lose_their_quotes() {
        let text =
            "NAME=\"Debian GNU/Linux\"\nVERSION_ID='12'\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(os_release(text, "PRETTY_NAME").as_deref(), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(os_release(text, "VERSION_ID").as_deref(), Some("12"));
        assert_eq!(os_release(text, "ID"), None);
    }
}
