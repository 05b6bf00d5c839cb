//! The kernel command line: isoroot's keys (README, "The kernel command line"), their compatibility spellings, and
//! everything else kept for the profiles that read distro keys (`layerfs-path=`).

use crate::net::url::{self, Scheme, Url};
use isoroot_fs::extents::{self, Extent, Fingerprint};
use isoroot_fs::location::{clean_path, parse_location, parse_source, Location, LOCATION_EXPECTED};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    Hints,
    Scan,
    Loop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    SwitchRoot,
    Handoff,
}

/// Where the ISO is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Iso {
    /// `iso=[SOURCE:]/PATH`: a file on a disk.
    File(Location),
    /// `iso=http://…`, `https://…` or `nbd://…`: on a server.
    Remote(Url),
}

impl std::fmt::Display for Iso {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Iso::File(loc) => loc.fmt(f),
            Iso::Remote(url) => url.fmt(f),
        }
    }
}

/// `iso=ask`: isoroot's own menu of the ISOs on every disk, and the keys that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    /// `iso.ask.timeout=S`: the first ISO that can boot boots after S seconds without a
    /// key; 0 waits for one.
    pub timeout: Option<Duration>,
    /// `iso.kernel=host`: boot the choice with this kernel (switch root), not with the
    /// ISO's own kernel through kexec.
    pub host_kernel: bool,
}

/// `iso.persist=` and the keys that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persist {
    pub image: Location,
    /// `iso.persist.extents=`: hints, which must agree with the filesystem's allocation.
    pub extents: Option<Vec<Extent>>,
    /// `iso.persist.uuid=`: the image's ext4 UUID, lower case.
    pub uuid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmdline {
    pub iso: Option<Iso>,
    /// `iso=ask`: no ISO named; the picker asks.
    pub ask: Option<Ask>,
    /// `iso.insecure`: plain HTTP without `iso.sha256=`.
    pub insecure: bool,
    pub extents: Option<Vec<Extent>>,
    pub map: Option<String>,
    pub fingerprint: Option<Fingerprint>,
    pub sha256: Option<[u8; 32]>,
    pub profile: Option<String>,
    pub toram: bool,
    pub persist: Option<Persist>,
    pub overlay_size: Option<String>,
    pub timeout: Duration,
    pub attach: Option<Attach>,
    pub mode: Option<Mode>,
    pub debug: bool,
    pub rescue: bool,
    pub quiet: bool,
    pub init: Option<String>,
    /// Every `key[=value]` before `--`, quotes removed, in order.
    pub params: Vec<(String, Option<String>)>,
    /// How a compatibility spelling was read, for the log.
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    #[error("the kernel command line has an unterminated quote: {0}")]
    UnterminatedQuote(String),
    #[error("unknown key {key:?} on the kernel command line; isoroot knows: {known}")]
    UnknownKey { key: String, known: String },
    #[error("bad value for {key}: expected {expected}, found {found:?}")]
    BadValue { key: String, expected: String, found: String },
}

const KEYS: &[&str] = &[
    "iso",
    "iso.extents",
    "iso.map",
    "iso.fingerprint",
    "iso.sha256",
    "iso.profile",
    "iso.toram",
    "iso.persist",
    "iso.persist.extents",
    "iso.persist.uuid",
    "iso.overlay.size",
    "iso.timeout",
    "iso.attach",
    "iso.mode",
    "iso.debug",
    "iso.rescue",
    "iso.insecure",
    "iso.ask.timeout",
    "iso.kernel",
];
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// Splits like the kernel's `next_arg()`: white space separates, double quotes group and are
/// removed. Unlike the kernel, an unterminated quote is an error, not the rest of the line.
pub fn split(line: &str) -> Result<Vec<String>, CmdlineError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut in_quote, mut in_token) = (false, false);
    let mut quote_start = 0;
    for (i, c) in line.char_indices() {
        match c {
            '"' => {
                in_quote = !in_quote;
                in_token = true;
                quote_start = i;
            }
            c if c.is_whitespace() && !in_quote => {
                if in_token {
                    out.push(std::mem::take(&mut cur));
                    in_token = false;
                }
            }
            c => {
                cur.push(c);
                in_token = true;
            }
        }
    }
    if in_quote {
        let tail: String = line[quote_start..].chars().take(60).collect();
        return Err(CmdlineError::UnterminatedQuote(tail));
    }
    if in_token {
        out.push(cur);
    }
    Ok(out)
}

pub(crate) fn bad(key: &str, expected: &str, found: &str) -> CmdlineError {
    CmdlineError::BadValue { key: key.into(), expected: expected.into(), found: found.into() }
}

fn persist_uuid(key: &str, v: &str) -> Result<String, CmdlineError> {
    is_uuid_like(v).then(|| v.to_ascii_lowercase()).ok_or_else(|| bad(key, "an ext4 UUID", v))
}

/// `iso.persist=` with its extents and UUID, wherever on the line each came (last wins).
fn persist(c: &Cmdline) -> Result<Option<Persist>, CmdlineError> {
    let value = |key: &'static str| c.get(key).map(|v| (key, v));
    let Some((key, v)) = value("iso.persist") else {
        return Ok(None);
    };
    Ok(Some(Persist {
        image: location(key, v)?,
        extents: value("iso.persist.extents").map(|(k, v)| extents(k, v)).transpose()?,
        uuid: value("iso.persist.uuid").map(|(k, v)| persist_uuid(k, v)).transpose()?,
    }))
}

/// The picker's keys, when the last `iso=` is `ask`.
fn ask(c: &Cmdline) -> Result<Option<Ask>, CmdlineError> {
    if c.iso.is_some() || c.get("iso") != Some("ask") {
        return Ok(None);
    }
    if let Some(key) =
        ["iso.extents", "iso.fingerprint", "iso.sha256", "iso.map"].into_iter().find(|k| c.has(k))
    {
        return Err(bad(
            key,
            "no value with iso=ask: it describes one named ISO, and the menu has not chosen one",
            "",
        ));
    }
    let timeout = match c.get("iso.ask.timeout") {
        None => Some(DEFAULT_ASK_TIMEOUT),
        Some(v) => match seconds("iso.ask.timeout", v)? {
            0 => None,
            s => Some(Duration::from_secs(s)),
        },
    };
    // apply_iso_key checked the value.
    Ok(Some(Ask { timeout, host_kernel: c.get("iso.kernel") == Some("host") }))
}

/// Whole seconds up to an hour.
fn seconds(key: &str, v: &str) -> Result<u64, CmdlineError> {
    v.parse().ok().filter(|s| *s <= 3600).ok_or_else(|| bad(key, "whole seconds from 0 to 3600", v))
}

fn location(key: &str, v: &str) -> Result<Location, CmdlineError> {
    parse_location(v).ok_or_else(|| bad(key, LOCATION_EXPECTED, v))
}

fn extents(key: &str, v: &str) -> Result<Vec<Extent>, CmdlineError> {
    extents::parse(v).ok_or_else(|| bad(key, extents::EXPECTED, v))
}

fn parse_sha256(key: &str, v: &str) -> Result<[u8; 32], CmdlineError> {
    let expected = "64 hexadecimal digits";
    // ASCII first: 64 bytes of anything else could split a character when sliced.
    if v.len() != 64 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(key, expected, v));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&v[2 * i..2 * i + 2], 16).map_err(|_| bad(key, expected, v))?;
    }
    Ok(out)
}

fn is_uuid_like(v: &str) -> bool {
    !v.is_empty() && v.len() <= 36 && v.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

fn is_size(v: &str) -> bool {
    let digits = v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
    !digits.is_empty() && digits.len() + 1 >= v.len() && digits.bytes().all(|b| b.is_ascii_digit())
}

impl Cmdline {
    /// The value of any key, last one wins (as the kernel and most distro scripts do).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.iter().rev().find(|(k, _)| k == key).and_then(|(_, v)| v.as_deref())
    }

    /// The ISO as the command line names it: a URL or `[SOURCE:]PATH`.
    pub fn iso_name(&self) -> Option<String> {
        self.iso.as_ref().map(ToString::to_string)
    }

    fn has(&self, key: &str) -> bool {
        self.params.iter().any(|(k, _)| k == key)
    }
}

pub fn parse(line: &str) -> Result<Cmdline, CmdlineError> {
    let mut c = Cmdline {
        iso: None,
        ask: None,
        insecure: false,
        extents: None,
        map: None,
        fingerprint: None,
        sha256: None,
        profile: None,
        toram: false,
        persist: None,
        overlay_size: None,
        timeout: DEFAULT_TIMEOUT,
        attach: None,
        mode: None,
        debug: false,
        rescue: false,
        quiet: false,
        init: None,
        params: Vec::new(),
        notes: Vec::new(),
    };
    for token in split(line)? {
        // Everything after `--` belongs to the init, not to the kernel or to isoroot.
        if token == "--" {
            break;
        }
        let (key, value) = match token.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (token.clone(), None),
        };
        if key == "iso" || key.starts_with("iso.") {
            apply_iso_key(&mut c, &key, value.as_deref())?;
        } else {
            match (key.as_str(), value.as_deref()) {
                ("quiet", None) => c.quiet = true,
                ("init", Some(v)) => {
                    c.init = Some(clean_path(v).ok_or_else(|| bad("init", "an absolute path", v))?)
                }
                _ => {}
            }
        }
        c.params.push((key, value));
    }
    c.ask = ask(&c)?;
    if c.iso.is_none() && c.ask.is_none() {
        apply_compat(&mut c)?;
    }
    c.persist = persist(&c)?;
    if let Some(Iso::Remote(u)) =
        c.iso.as_ref().filter(|i| matches!(i, Iso::Remote(u) if u.scheme == Scheme::Http))
    {
        if c.sha256.is_none() && !c.insecure {
            return Err(bad(
                "iso",
                "https://, or http:// with iso.sha256=HEX (or iso.insecure): anyone on the way can change \
                 what plain HTTP carries",
                &u.to_string(),
            ));
        }
    }
    Ok(c)
}

impl Cmdline {
    /// Applies a map file (`iso.map=`): `key=value` lines with the keys of the command line
    /// (`iso=`, `iso.extents=`, `iso.fingerprint=`), for files whose extents do not fit on
    /// it. Values are taken whole, spaces included; the map does not override what the
    /// command line says itself.
    pub fn apply_map(&mut self, text: &str) -> Result<(), CmdlineError> {
        let mut from_map = self.clone();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let (key, value) = match line.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (line, None),
            };
            // A map names a file on a disk: a URL here would skip the checks `parse` made.
            let remote = key == "iso" && value.is_some_and(url::is_remote);
            if !matches!(key, "iso" | "iso.extents" | "iso.fingerprint") || remote {
                return Err(bad(
                    "iso.map",
                    "lines of iso=[SOURCE:]/PATH, iso.extents= and iso.fingerprint=",
                    line,
                ));
            }
            apply_iso_key(&mut from_map, key, value)?;
        }
        self.iso = self.iso.take().or(from_map.iso);
        self.extents = self.extents.take().or(from_map.extents);
        self.fingerprint = self.fingerprint.or(from_map.fingerprint);
        Ok(())
    }
}

fn apply_iso_key(c: &mut Cmdline, key: &str, value: Option<&str>) -> Result<(), CmdlineError> {
    let flag = |set: &mut bool| match value {
        None => {
            *set = true;
            Ok(())
        }
        Some(v) => Err(bad(key, "no value", v)),
    };
    if matches!(key, "iso.toram" | "iso.debug" | "iso.rescue" | "iso.insecure") {
        return match key {
            "iso.toram" => flag(&mut c.toram),
            "iso.debug" => flag(&mut c.debug),
            "iso.insecure" => flag(&mut c.insecure),
            _ => flag(&mut c.rescue),
        };
    }
    let unknown = || CmdlineError::UnknownKey { key: key.into(), known: KEYS.join(" ") };
    if !KEYS.contains(&key) {
        return Err(unknown());
    }
    let v = value.ok_or_else(|| bad(key, "a value (key=value)", ""))?;
    match key {
        // The last iso= wins, local or remote.
        "iso" if url::is_remote(v) => {
            let expected = "http://HOST[:PORT]/PATH, https://… or nbd://HOST[:PORT]/EXPORT with HOST a \
                            name or an IPv4 address";
            c.iso = Some(Iso::Remote(Url::parse(v).ok_or_else(|| bad(key, expected, v))?));
        }
        "iso" if v == "ask" => c.iso = None,
        "iso" => c.iso = Some(Iso::File(location(key, v)?)),
        "iso.extents" => c.extents = Some(extents(key, v)?),
        // Checked here, kept in `params`: [`persist`] gathers them once all are read.
        "iso.persist" => drop(location(key, v)?),
        "iso.persist.extents" => drop(extents(key, v)?),
        "iso.persist.uuid" => drop(persist_uuid(key, v)?),
        "iso.map" => {
            c.map = Some(clean_path(v).ok_or_else(|| bad(key, "an absolute path in the initramfs", v))?)
        }
        "iso.fingerprint" => {
            let (covers, hex) =
                Fingerprint::split(v).ok_or_else(|| bad(key, "sha256-extents:HEX (or sha256:HEX)", v))?;
            c.fingerprint = Some(Fingerprint { covers, sha256: parse_sha256(key, hex)? });
        }
        "iso.sha256" => c.sha256 = Some(parse_sha256(key, v)?),
        "iso.profile" => {
            let ok =
                !v.is_empty() && v.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(bad(key, "a profile name (lowercase letters, digits, '-')", v));
            }
            c.profile = Some(v.into());
        }
        "iso.overlay.size" => {
            if !is_size(v) {
                return Err(bad(key, "a tmpfs size such as 2G, 512M or 50%", v));
            }
            c.overlay_size = Some(v.into());
        }
        "iso.timeout" => c.timeout = Duration::from_secs(seconds(key, v)?),
        // Checked here, kept in `params`: [`ask`] reads them once all are read.
        "iso.ask.timeout" => drop(seconds(key, v)?),
        "iso.kernel" => {
            if !matches!(v, "iso" | "host") {
                return Err(bad(key, "iso or host", v));
            }
        }
        "iso.attach" => {
            c.attach = Some(match v {
                "hints" => Attach::Hints,
                "scan" => Attach::Scan,
                "loop" => Attach::Loop,
                _ => return Err(bad(key, "hints, scan or loop", v)),
            })
        }
        "iso.mode" => {
            c.mode = Some(match v {
                "switch-root" => Mode::SwitchRoot,
                "handoff" => Mode::Handoff,
                _ => return Err(bad(key, "switch-root or handoff", v)),
            })
        }
        _ => return Err(unknown()),
    }
    Ok(())
}

/// Other tools' spellings, so that existing boot entries work unchanged.
fn apply_compat(c: &mut Cmdline) -> Result<(), CmdlineError> {
    // (device key, path key): the device is optional.
    const PAIRS: &[(Option<&str>, &str)] = &[
        (None, "findiso"),
        (None, "iso-scan/filename"),
        (Some("img_dev"), "img_loop"),
        (Some("isofrom_device"), "isofrom_system"),
    ];
    for (dev_key, path_key) in PAIRS {
        let Some(path) = c.get(path_key).map(String::from) else {
            continue;
        };
        let source = match dev_key.and_then(|k| c.get(k).map(|v| (k, v.to_string()))) {
            Some((k, v)) => {
                let expected = "UUID=, LABEL=, PARTUUID=, PARTLABEL=, /dev/NAME or /dev/disk/by-*/…";
                Some(parse_source(&v).ok_or_else(|| bad(k, expected, &v))?)
            }
            None => None,
        };
        let path = clean_path(&path).ok_or_else(|| bad(path_key, "an absolute path without '..'", &path))?;
        let loc = Location { source, path };
        let dev = dev_key.filter(|k| c.has(k)).map(|k| format!("{k}= + ")).unwrap_or_default();
        c.notes.push(format!("read {dev}{path_key}= as iso={loc}"));
        c.iso = Some(Iso::File(loc));
        return Ok(());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use isoroot_fs::extents::Covers;
    use isoroot_fs::location::Source;

    fn loc(source: Option<Source>, path: &str) -> Option<Iso> {
        Some(Iso::File(Location { source, path: path.into() }))
    }

    fn remote(c: &Cmdline) -> Option<&Url> {
        match &c.iso {
            Some(Iso::Remote(u)) => Some(u),
            _ => None,
        }
    }

    #[test]
    fn splits_like_the_kernel() {
        assert_eq!(
            split(r#"  a  iso="LABEL=MY USB:/isos/a b.iso" "c d"=e quiet "#).unwrap(),
            ["a", "iso=LABEL=MY USB:/isos/a b.iso", "c d=e", "quiet"]
        );
        assert_eq!(split("").unwrap(), Vec::<String>::new());
        assert_eq!(split(r#"x="""#).unwrap(), ["x="]);
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        assert!(
            matches!(split(r#"a iso="LABEL=x:/a"#), Err(CmdlineError::UnterminatedQuote(t)) if t.starts_with("\"LABEL"))
        );
    }

    #[test]
    fn iso_with_each_source() {
        let c = parse(r#"ro iso="LABEL=MY USB:/isos/a b.iso" quiet"#).unwrap();
        assert_eq!(c.iso, loc(Some(Source::Label("MY USB".into())), "/isos/a b.iso"));
        assert!(c.quiet);
        let cases = [
            ("UUID=1234-ABCD:/x.iso", Source::Uuid("1234-ABCD".into())),
            ("PARTUUID=0a-01:/x.iso", Source::PartUuid("0a-01".into())),
            ("PARTLABEL=data:/x.iso", Source::PartLabel("data".into())),
            ("/dev/vdb1:/x.iso", Source::Dev("/dev/vdb1".into())),
            ("/dev/disk/by-label/MY\\x20USB:/x.iso", Source::Label("MY USB".into())),
            ("LABEL=a:b:/x.iso", Source::Label("a:b".into())),
        ];
        for (v, s) in cases {
            assert_eq!(parse(&format!("iso={v}")).unwrap().iso, loc(Some(s), "/x.iso"), "{v}");
        }
        assert_eq!(parse("iso=/a//./b.iso").unwrap().iso, loc(None, "/a/b.iso"));
    }

    #[test]
    fn dotdot_relative_and_empty_paths_are_refused() {
        for v in [
            "iso=/isos/../etc/x.iso",
            "iso=isos/x.iso",
            "iso=UUID=x",
            "iso=UUID=:/a.iso",
            "iso=/",
            "iso=/dev/:/x",
            "iso=/dev/../x:/a",
        ] {
            assert!(matches!(parse(v), Err(CmdlineError::BadValue { .. })), "{v}");
        }
    }

    #[test]
    fn unknown_iso_keys_are_errors_and_others_are_kept() {
        let e = parse("iso=/a.iso iso.tiemout=3").unwrap_err();
        assert!(matches!(&e, CmdlineError::UnknownKey { key, .. } if key == "iso.tiemout"));
        assert!(e.to_string().contains("iso.timeout"));
        let c = parse("iso=/a.iso layerfs-path=minimal.squashfs boot=live -- iso.bogus").unwrap();
        assert_eq!(c.get("layerfs-path"), Some("minimal.squashfs"));
        assert_eq!(c.get("boot"), Some("live"));
    }

    #[test]
    fn every_key_of_the_table() {
        let h = "ab".repeat(32);
        let c = parse(&format!(
            "iso=UUID=u:/a.iso iso.extents=2048+100,9000+8 iso.map=/etc/isoroot/maps/a.map \
             iso.fingerprint=sha256:{h} iso.sha256={h} iso.profile=debian-live iso.toram \
             iso.persist=LABEL=p:/p.img iso.persist.extents=10+10 iso.persist.uuid=ABCD-12 \
             iso.overlay.size=50% iso.timeout=5 iso.attach=scan iso.mode=handoff iso.debug \
             iso.rescue init=/lib/systemd/systemd"
        ))
        .unwrap();
        assert_eq!(
            c.extents,
            Some(vec![Extent { start: 2048, sectors: 100 }, Extent { start: 9000, sectors: 8 }])
        );
        assert_eq!(c.map.as_deref(), Some("/etc/isoroot/maps/a.map"));
        assert_eq!(c.fingerprint, Some(Fingerprint { covers: Covers::Ends, sha256: [0xab; 32] }));
        assert_eq!(c.sha256, Some([0xab; 32]));
        assert_eq!(c.profile.as_deref(), Some("debian-live"));
        assert!(c.toram && c.debug && c.rescue);
        let p = c.persist.unwrap();
        assert_eq!(p.image, Location { source: Some(Source::Label("p".into())), path: "/p.img".into() });
        assert_eq!(p.extents.unwrap().len(), 1);
        assert_eq!(p.uuid.as_deref(), Some("abcd-12"));
        // The keys that go with iso.persist= may come before it; without it they do nothing.
        let later = parse("iso=/a.iso iso.persist.uuid=ab iso.persist=/p.img").unwrap();
        assert_eq!(later.persist.unwrap().uuid.as_deref(), Some("ab"));
        assert_eq!(parse("iso=/a.iso iso.persist.uuid=ab").unwrap().persist, None);
        assert!(parse("iso=/a.iso iso.persist.uuid=a!").is_err());
        assert_eq!(c.overlay_size.as_deref(), Some("50%"));
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.attach, Some(Attach::Scan));
        assert_eq!(c.mode, Some(Mode::Handoff));
        assert_eq!(c.init.as_deref(), Some("/lib/systemd/systemd"));
    }

    #[test]
    fn bad_values_say_what_was_expected() {
        let bad_ones = [
            "iso.extents=1+0",
            "iso.extents=a+1",
            "iso.extents=1",
            "iso.fingerprint=abc",
            "iso.sha256=xyz",
            "iso.profile=Debian",
            "iso.timeout=-1",
            "iso.timeout=99999",
            "iso.attach=dm",
            "iso.mode=chain",
            "iso.overlay.size=lots",
            "iso.overlay.size=1T",
            "iso.toram=1",
            "iso.persist.uuid=not-a-uuid!",
            "iso.map=rel",
            "iso",
            "init=sbin/init",
        ];
        for v in bad_ones {
            let e = parse(v).unwrap_err();
            assert!(matches!(e, CmdlineError::BadValue { .. }), "{v}: {e}");
            assert!(e.to_string().contains("expected"), "{v}: {e}");
        }
        let e = parse("iso.timeout=soon").unwrap_err().to_string();
        assert_eq!(e, "bad value for iso.timeout: expected whole seconds from 0 to 3600, found \"soon\"");
    }

    #[test]
    fn map_files_fill_in_what_the_command_line_lacks() {
        let h = "cd".repeat(32);
        let mut c = parse("iso.map=/etc/isoroot/maps/a.map").unwrap();
        c.apply_map(&format!(
            "# written by isoroot extents\niso=LABEL=MY USB:/isos/a b.iso\niso.extents=8+8,100+16\niso.fingerprint=sha256-extents:{h}\n"
        ))
        .unwrap();
        assert_eq!(c.iso, loc(Some(Source::Label("MY USB".into())), "/isos/a b.iso"));
        assert_eq!(c.extents.as_ref().map(Vec::len), Some(2));
        assert_eq!(c.fingerprint, Some(Fingerprint { covers: Covers::Extents, sha256: [0xcd; 32] }));
        let mut c = parse("iso=/b.iso iso.map=/m").unwrap();
        c.apply_map("iso=/a.iso\n").unwrap();
        assert_eq!(c.iso, loc(None, "/b.iso"));
        assert!(parse("").unwrap().apply_map("iso.toram\n").is_err());
        assert!(parse("").unwrap().apply_map("iso.extents=1+0\n").is_err());
    }

    #[test]
    fn compatibility_spellings() {
        let c = parse("boot=live findiso=/isos/debian.iso").unwrap();
        assert_eq!(c.iso, loc(None, "/isos/debian.iso"));
        assert_eq!(c.notes, ["read findiso= as iso=/isos/debian.iso"]);
        let c = parse("iso-scan/filename=/u.iso").unwrap();
        assert_eq!(c.iso, loc(None, "/u.iso"));
        let c = parse("img_dev=/dev/disk/by-uuid/1234 img_loop=/arch.iso").unwrap();
        assert_eq!(c.iso, loc(Some(Source::Uuid("1234".into())), "/arch.iso"));
        assert_eq!(c.notes, ["read img_dev= + img_loop= as iso=UUID=1234:/arch.iso"]);
        let c = parse("isofrom_device=/dev/sdb1 isofrom_system=/suse.iso").unwrap();
        assert_eq!(c.iso, loc(Some(Source::Dev("/dev/sdb1".into())), "/suse.iso"));
        // iso= wins over the others.
        let c = parse("findiso=/a.iso iso=/b.iso").unwrap();
        assert_eq!(c.iso, loc(None, "/b.iso"));
        assert!(matches!(parse("img_dev=sdb1 img_loop=/a.iso"), Err(CmdlineError::BadValue { .. })));
        assert!(matches!(parse("findiso=/../a.iso"), Err(CmdlineError::BadValue { .. })));
    }

    #[test]
    fn iso_ask_starts_the_picker_with_its_keys() {
        let c = parse("iso=ask").unwrap();
        assert_eq!(c.iso, None);
        assert_eq!(c.ask, Some(Ask { timeout: Some(Duration::from_secs(30)), host_kernel: false }));
        let c = parse("iso=ask iso.ask.timeout=0 iso.kernel=host").unwrap();
        assert_eq!(c.ask, Some(Ask { timeout: None, host_kernel: true }));
        // The last iso= wins either way, and a compatibility spelling does not override ask.
        assert_eq!(parse("iso=ask iso=/a.iso").unwrap().ask, None);
        assert_eq!(parse("iso=/a.iso iso=ask").unwrap().iso, None);
        assert_eq!(parse("findiso=/a.iso iso=ask").unwrap().iso, None);
        assert!(matches!(parse("iso=ask iso.kernel=own"), Err(CmdlineError::BadValue { .. })));
        assert!(matches!(parse("iso=ask iso.ask.timeout=soon"), Err(CmdlineError::BadValue { .. })));
        // Keys that describe one named ISO have nothing to describe yet.
        let e = parse("iso=ask iso.extents=1+2").unwrap_err().to_string();
        assert!(e.contains("bad value for iso.extents: expected no value with iso=ask"), "{e}");
    }

    #[test]
    fn udev_escapes_next_to_multibyte_characters() {
        // Found by `cargo fuzz run cmdline`: `\x1` followed by a two-byte character.
        assert!(parse("iso=/dev/disk/by-label/i\\x1\u{3d9}:/a.iso").is_ok());
        let sha = format!("iso.sha256={}\u{2bf}6", "6".repeat(61));
        assert!(matches!(parse(&sha), Err(CmdlineError::BadValue { .. })));
    }

    #[test]
    fn remote_isos() {
        let sha = "ab".repeat(32);
        let c = parse(&format!("iso=http://10.0.2.2:8000/d.iso iso.sha256={sha}")).unwrap();
        assert_eq!(remote(&c).unwrap().to_string(), "http://10.0.2.2:8000/d.iso");
        // Plain HTTP needs a checksum or an explicit iso.insecure; HTTPS and NBD do not.
        let e = parse("iso=http://h/d.iso").unwrap_err().to_string();
        assert!(
            e.contains("with iso.sha256=HEX (or iso.insecure)") && e.contains("\"http://h/d.iso\""),
            "{e}"
        );
        assert!(parse("iso=http://h/d.iso iso.insecure").unwrap().insecure);
        assert!(parse("iso=https://h/d.iso").is_ok());
        let c = parse("findiso=/a.iso iso=nbd://h/live").unwrap();
        assert_eq!(remote(&c).unwrap().path, "/live");
        // The last iso= wins.
        assert_eq!(parse("iso=nbd://h/x iso=/a.iso").unwrap().iso, loc(None, "/a.iso"));
        // A map names a file on a disk; a URL there would skip the plain-HTTP check.
        let mut c = parse("iso.map=/m").unwrap();
        assert!(c.apply_map("iso=http://10.0.0.1/d.iso").is_err());
        let e = parse("iso=nbd://h:x/live").unwrap_err().to_string();
        assert!(e.contains("expected http://HOST[:PORT]/PATH"), "{e}");
    }
}
