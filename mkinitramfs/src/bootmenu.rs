//! The GRUB configuration `isoroot install` writes: at every boot it finds the ISOs on the
//! data partition itself, so copying, renaming or deleting an ISO needs no command. Which
//! profile an ISO has, and its kernel, initrd and tokens, are decided by GRUB script
//! generated here from the profiles, with the rules `isoroot menu` applies on the host
//! ([`isoroot_profiles::find`]); the entries boot the combined way (the ISO's kernel and
//! initrd, isoroot's addon, no extent hints: isoroot scans the data partition at boot).

use crate::inspect::one_line;
use crate::menu::gq;
use isoroot_profiles::{chain, Profile, Select};
use std::fmt::Write;

/// Where `isoroot install` puts isoroot's files on the ESP.
pub const ESP_DIR: &str = "/isoroot";
pub const HOST_KERNEL: &str = "/isoroot/vmlinuz";
pub const HOST_INITRD: &str = "/isoroot/initramfs.img";
pub const ADDON: &str = "/isoroot/addon.img";
/// The ISO's own GRUB menu for booting it from a file, which many distros ship.
const OWN_LOOPBACK: &str = "/boot/grub/loopback.cfg";

pub struct BootMenu<'a> {
    pub profiles: &'a [Profile],
    /// The data partition's filesystem UUID, as GRUB's `search --fs-uuid` and isoroot's
    /// `iso=UUID=` take it.
    pub data_uuid: &'a str,
    pub serial: bool,
    pub timeout: u32,
    /// Kernel command line words for every boot.
    pub append: &'a [String],
}

/// A profile's `*` pattern (see [`isoroot_profiles::glob_match`]) as an anchored regular
/// expression for GRUB's `regexp`.
fn glob_regex(pattern: &str) -> String {
    let mut re = String::from("^");
    for c in pattern.chars() {
        match c {
            '*' => re.push_str(".*"),
            c if "\\.[]()^$+?{}|".contains(c) => {
                re.push('\\');
                re.push(c);
            }
            c => re.push(c),
        }
    }
    re.push('$');
    re
}

/// A path in the ISO (mounted as `(isoroot_probe)`) as one GRUB word: quoted, except for
/// the `*` of a pattern, which GRUB's wildcard expansion then sees.
fn in_iso(path: &str) -> String {
    let parts: Vec<String> =
        path.split('*').map(|p| if p.is_empty() { String::new() } else { gq(p) }).collect();
    format!("(isoroot_probe){}", parts.join("*"))
}

/// GRUB script that sets `isoroot_hit` when a file in the ISO matches `path`, which may hold
/// one `*` in its last component.
fn exists(path: &str) -> String {
    if path.contains('*') {
        // A pattern that matches nothing stays as it is, so each word is checked.
        format!("for f in {}; do if [ -e \"$f\" ]; then set isoroot_hit=1; fi; done; ", in_iso(path))
    } else {
        format!("if [ -e {} ]; then set isoroot_hit=1; fi; ", in_iso(path))
    }
}

/// GRUB script that sets `isoroot_hit` when every one of `paths` is in the ISO.
fn all_exist(paths: &[String]) -> String {
    let mut s = String::from("set isoroot_rule=1; ");
    for p in paths {
        let _ = write!(s, "if [ ! -e {} ]; then set isoroot_rule=; fi; ", in_iso(p));
    }
    s.push_str("if [ -n \"$isoroot_rule\" ]; then set isoroot_hit=1; fi; ");
    s
}

/// Script that sets `VAR` (a path inside the ISO) as the host's rules pick it: the first of
/// `patterns` that matches a file, and of its matches the first in name order.
fn first(var: &str, patterns: &[String]) -> String {
    let mut s = String::new();
    for p in patterns {
        let _ = writeln!(
            s,
            "      if [ -z \"${var}\" ]; then set isoroot_pick=; for f in {}; do if [ -f \"$f\" ]; then if [ -z \"$isoroot_pick\" -o \"$f\" \"<\" \"$isoroot_pick\" ]; then set isoroot_pick=\"$f\"; fi; fi; done; if [ -n \"$isoroot_pick\" ]; then regexp --set=1:{var} '^\\([^)]*\\)(/.*)$' \"$isoroot_pick\"; fi; fi",
            in_iso(p)
        );
    }
    s
}

/// The detection of one profile, as [`isoroot_profiles::find`] does it: every `detect`
/// path (or one of its `|` alternatives) and the label, then a root image that one of its
/// rules names. Rules that need the boot's command line or the distro's initrd cannot be
/// decided here and count as not matching, as in `isoroot menu`.
fn detect(p: &Profile) -> String {
    let mut s = String::from("  if [ -z \"$isoroot_profile\" ]; then\n    set isoroot_ok=1\n");
    if let Some(label) = &p.label {
        let _ = writeln!(
            s,
            "    set isoroot_hit=; if regexp {} \"$isoroot_label\"; then set isoroot_hit=1; fi; if [ -z \"$isoroot_hit\" ]; then set isoroot_ok=; fi",
            gq(&glob_regex(label))
        );
    }
    for d in &p.detect {
        let mut any = String::from("set isoroot_hit=; ");
        for alt in d.split('|') {
            any.push_str(&exists(alt));
        }
        let _ = writeln!(s, "    {any}if [ -z \"$isoroot_hit\" ]; then set isoroot_ok=; fi");
    }
    let dir = p.dir.trim_end_matches('/');
    let in_dir = |name: &str| format!("{dir}/{name}");
    let mut rules = String::from("set isoroot_hit=; ");
    for rule in &p.select {
        match rule {
            Select::File(name) | Select::Glob(name) => rules.push_str(&exists(&in_dir(name))),
            // The host takes a chain only when every lower layer is there too, and a
            // stack when every layer it requires is.
            Select::Chain(top) => {
                rules.push_str(&all_exist(&chain(top).iter().map(|n| in_dir(n)).collect::<Vec<_>>()))
            }
            Select::Stack(layers) => rules.push_str(&all_exist(
                &layers.iter().filter(|l| !l.optional).map(|l| in_dir(&l.name)).collect::<Vec<_>>(),
            )),
            Select::CmdlineChain(_) | Select::InitrdChain { .. } => {}
        }
    }
    let unsupported = p.unsupported.is_some();
    if !unsupported {
        let _ = writeln!(s, "    if [ -n \"$isoroot_ok\" ]; then {rules}if [ -z \"$isoroot_hit\" ]; then set isoroot_ok=; fi; fi");
    }
    let _ = writeln!(s, "    if [ -n \"$isoroot_ok\" ]; then\n      set isoroot_profile={}", gq(&p.name));
    if let Some(why) = &p.unsupported {
        let _ = writeln!(s, "      set isoroot_why={}", gq(&one_line(why, usize::MAX)));
    } else if p.init.is_none() {
        let _ = writeln!(
            s,
            "      set isoroot_why={}",
            gq("this distro names its init in its own boot menu: use the ISO's own menu, or isoroot menu on a host")
        );
    } else {
        let _ = writeln!(s, "      set isoroot_tokens={}", gq(&p.cmdline));
        s.push_str(&first("isoroot_kernel", &p.kernel));
        s.push_str(&first("isoroot_initrd", &p.initrd));
    }
    s.push_str("    fi\n  fi\n");
    s
}

/// Globs for the ISOs: the top level and two folder levels below it, either case.
const ISO_GLOBS: &[&str] = &["/*.iso", "/*.ISO", "/*/*.iso", "/*/*.ISO", "/*/*/*.iso", "/*/*/*.ISO"];

pub fn grub_cfg(m: &BootMenu<'_>) -> String {
    let mut s = format!(
        "# Written by `isoroot install` (isoroot {}). At every boot it lists every *.iso on the\n\
         # data partition (filesystem UUID {}) in path order, and each ISO's entry boots its own\n\
         # kernel and initrd with isoroot's addon. Edits here are lost on `isoroot install --update`.\n",
        env!("CARGO_PKG_VERSION"),
        m.data_uuid
    );
    let _ = writeln!(s, "set timeout={}\nset default=0", m.timeout);
    if m.serial {
        s.push_str(
            "serial --unit=0 --speed=115200\nterminal_input serial console\nterminal_output serial console\n",
        );
    }
    // all_video: on UEFI the kernel gets the firmware's framebuffer only through GRUB's
    // video drivers; without them a PC's screen stays blank until the kernel's own driver.
    // Debian's signed GRUB (`install --secure-boot`) has what it can use built in and no
    // module folder, and under Secure Boot (`lockdown`) it refuses to load anything else.
    s.push_str("if [ \"$lockdown\" != y -a -d \"$prefix/$grub_cpu-$grub_platform\" ]; then\n");
    for module in [
        "part_gpt",
        "part_msdos",
        "fat",
        "exfat",
        "ext2",
        "ntfs",
        "iso9660",
        "loopback",
        "regexp",
        "test",
        "probe",
        "linux",
        "sleep",
        "echo",
        "all_video",
    ] {
        let _ = writeln!(s, "  insmod {module}");
    }
    s.push_str("fi\n");
    let mut append: Vec<String> = m.append.to_vec();
    if m.serial {
        append.extend(["console=tty0".into(), "console=ttyS0,115200".into()]);
    }
    let _ = writeln!(s, "set isoroot_esp=$root\nset isoroot_append={}", gq(&append.join(" ")));
    let _ = writeln!(s, "search --no-floppy --fs-uuid --set=isoroot_data {}", gq(m.data_uuid));
    // A submenu runs in a new context that sees only exported variables.
    s.push_str("export isoroot_esp\nexport isoroot_append\nexport isoroot_data\n");

    // Sets isoroot_profile, _kernel, _initrd, _tokens and _why for the ISO at (isoroot_probe).
    s.push_str("\nfunction isoroot_detect {\n  set isoroot_profile=\n  set isoroot_kernel=\n  set isoroot_initrd=\n  set isoroot_tokens=\n  set isoroot_why=\n  set isoroot_label=\n  probe --set=isoroot_label --label (isoroot_probe)\n");
    for p in m.profiles {
        s.push_str(&detect(p));
    }
    s.push_str("  if [ -z \"$isoroot_profile\" ]; then set isoroot_why='no isoroot profile knows this layout'; fi\n}\n");

    // The entries of one ISO ($1, a path on the data partition); $2 says which: `main`
    // (its own kernel, or the stick's kernel when it has none), `host` (the stick's kernel)
    // or `own` (the ISO's own loopback.cfg).
    let iso_word = format!("\"iso=UUID={}:$2\"", m.data_uuid);
    let _ = write!(
        s,
        r#"
function isoroot_entries {{
  regexp --set=1:isoroot_path '^\([^)]*\)(/.*)$' "$1"
  regexp --set=1:isoroot_name '([^/]*)$' "$1"
  if regexp "[\"'\\]" "$isoroot_path"; then
    if [ "$2" = main ]; then
      menuentry "$isoroot_name: cannot be booted: its path holds a quote or a backslash, rename it" {{ sleep --verbose --interruptible 30; }}
    fi
    return
  fi
  loopback isoroot_probe "$1"
  isoroot_detect
  set isoroot_own=
  if [ -f (isoroot_probe){OWN_LOOPBACK} ]; then set isoroot_own=1; fi
  loopback -d isoroot_probe
  set isoroot_title="$isoroot_name"
  if [ -n "$isoroot_label" ]; then set isoroot_title="$isoroot_label ($isoroot_name)"; fi
  if [ "$2" = own ]; then
    if [ -n "$isoroot_own" ]; then
      menuentry "$isoroot_title, with the ISO's own menu" "$isoroot_path" {{
        if [ -d (loop)/ ]; then loopback -d loop; fi
        loopback loop "($isoroot_data)$2"
        set iso_path="$2"
        export iso_path
        set root=(loop)
        configfile {OWN_LOOPBACK}
      }}
    fi
    return
  fi
  if [ -n "$isoroot_why" ]; then
    if [ "$2" = main ]; then
      menuentry "$isoroot_title: cannot be booted through isoroot" "$isoroot_why" {{
        echo "$2"
        sleep --verbose --interruptible 60
      }}
    fi
    return
  fi
  # The timeout boots the first ISO that can be booted.
  if [ -z "$isoroot_default" ]; then
    set isoroot_default="$isoroot_path"
    set default="$isoroot_path"
  fi
  if [ "$2" = main -a -n "$isoroot_kernel" -a -n "$isoroot_initrd" ]; then
    menuentry "$isoroot_title" --id "$isoroot_path" "$isoroot_path" "$isoroot_kernel" "$isoroot_initrd" "$isoroot_tokens" {{
      if [ -d (isoroot_iso)/ ]; then loopback -d isoroot_iso; fi
      loopback isoroot_iso "($isoroot_data)$2"
      echo "Loading $3 and $4 from $2"
      linux "(isoroot_iso)$3" $5 rdinit=/isoroot/init {iso_word} $isoroot_append
      initrd "(isoroot_iso)$4" ($isoroot_esp){ADDON}
    }}
  else
    menuentry "$isoroot_title, with this stick's kernel" --id "$isoroot_path" "$isoroot_path" "$isoroot_tokens" {{
      echo "Loading this stick's kernel for $2"
      linux ($isoroot_esp){HOST_KERNEL} $3 {iso_word} $isoroot_append
      initrd ($isoroot_esp){HOST_INITRD}
    }}
  fi
}}

# Calls isoroot_entries for every ISO in path order ($1 is passed on): GRUB lists a folder
# in the filesystem's order, so each turn takes the smallest path after the last one.
# Hidden folders, NTFS's own and Windows' recycle bin ($…) and System Volume Information are
# left out, as isoroot's own menu leaves them out (isoroot_fs::filemap::skipped).
function isoroot_each {{
  set isoroot_last=
  while true; do
    set isoroot_next=
    for f in {globs}; do
      if [ -f "$f" ]; then
        set isoroot_skip=
        if regexp '/\.|/\$|/System Volume Information/' "$f"; then set isoroot_skip=1; fi
        if [ -z "$isoroot_skip" ]; then
          if [ -z "$isoroot_last" -o "$f" ">" "$isoroot_last" ]; then
            if [ -z "$isoroot_next" -o "$f" "<" "$isoroot_next" ]; then set isoroot_next="$f"; fi
          fi
        fi
      fi
    done
    if [ -z "$isoroot_next" ]; then break; fi
    set isoroot_any=1
    isoroot_entries "$isoroot_next" "$1"
    set isoroot_last="$isoroot_next"
  done
}}

if [ -z "$isoroot_data" ]; then
  menuentry "isoroot: no data partition with filesystem UUID {uuid} was found" {{ sleep --verbose --interruptible 60; }}
else
  isoroot_each main
  if [ -z "$isoroot_any" ]; then
    menuentry "isoroot: no ISO file on the data partition yet: copy ISO files onto it" {{ sleep --verbose --interruptible 60; }}
  fi
fi
# isoroot's own menu, from this stick's kernel: every ISO on every disk it can read.
menuentry "Pick an ISO on any disk (isoroot's own menu)" {{
  echo "Loading this stick's kernel for isoroot's menu"
  linux ($isoroot_esp){HOST_KERNEL} iso=ask $isoroot_append
  initrd ($isoroot_esp){HOST_INITRD}
}}
if [ -n "$isoroot_data" ]; then
  submenu "More: each ISO with this stick's kernel (isoroot standalone)" {{ isoroot_each host; }}
  submenu "More: each ISO with its own boot menu (loopback.cfg)" {{ isoroot_each own; }}
fi
"#,
        globs = ISO_GLOBS.iter().map(|g| format!("($isoroot_data){g}")).collect::<Vec<_>>().join(" "),
        uuid = m.data_uuid,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_anchored_regexes() {
        assert_eq!(glob_regex("VOID_*"), "^VOID_.*$");
        assert_eq!(glob_regex("a.b(c)"), "^a\\.b\\(c\\)$");
    }

    #[test]
    fn every_builtin_profile_is_decided() {
        let profiles = isoroot_profiles::merge(isoroot_profiles::builtin().unwrap());
        let cfg = grub_cfg(&BootMenu {
            profiles: &profiles,
            data_uuid: "1234-ABCD",
            serial: true,
            timeout: 3,
            append: &[],
        });
        for p in &profiles {
            assert!(cfg.contains(&format!("set isoroot_profile={}", gq(&p.name))), "{}", p.name);
        }
        assert!(cfg.contains("\"iso=UUID=1234-ABCD:$2\""));
        assert!(cfg.contains("console=ttyS0,115200"));
        // Braces and quotes balance: GRUB would refuse the whole file otherwise.
        assert_eq!(cfg.matches('{').count(), cfg.matches('}').count());
    }
}
