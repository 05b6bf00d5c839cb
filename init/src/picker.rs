//! `iso=ask`: isoroot's own menu of the ISO files on every disk it can read itself (ext4,
//! FAT, exFAT, NTFS: no kernel filesystem driver, nothing mounted), with keys on the screen
//! and on the serial console alike. The choice boots with its own kernel (kexec of the ISO's
//! kernel, its initrd and isoroot's addon, as GRUB's entries do) or, with `iso.kernel=host`
//! or when that is refused, with this kernel: the boot goes on as if `iso=` had named it.

use crate::blockdev::{BlockDev, Devices};
use crate::cmdline::{Ask, Cmdline};
use crate::devices::{self, Hardware};
use crate::{kexec, meminfo};
use anyhow::{anyhow, bail, Context, Result};
use isoroot_fs::filemap::{self, MappedFile};
use isoroot_fs::human_size;
use isoroot_fs::iso9660::{IsoFs, Node};
use isoroot_fs::location::{word, Location, Source};
use isoroot_fs::superblock::FsKind;
use isoroot_fs::ReadAt;
use isoroot_profiles::bootcfg::{merged_args, ISO_FROM_FILE};
use isoroot_profiles::iso::{boot_files, own_entries, own_init, BootFiles, IsoFiles};
use isoroot_profiles::layout::ADDON;
use isoroot_profiles::{Match, Profile};
use nix::sys::termios::{self, InputFlags, LocalFlags, SetArg, SpecialCharacterIndices, Termios};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

/// How long the block devices must stay as they are before the menu is shown: a USB stick
/// shows up a second or two after its controller's driver.
const SETTLED: Duration = Duration::from_secs(2);
/// Entries on the screen at once; `/` filters a longer list.
const ROWS: usize = 16;
/// An ISO's kernel larger than this is not a kernel.
const MAX_KERNEL: u64 = 256 << 20;

/// How an ISO in the menu boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    /// The ISO's own kernel and initrds, from the profile's patterns or the ISO's own menu.
    pub own: Option<BootFiles>,
    /// The profile's kernel command line tokens.
    pub tokens: String,
    /// `init=` from the ISO's own menu, for a profile that names no init (NixOS).
    pub init: Option<String>,
}

/// What the menu chose, for this kernel to boot.
pub struct Choice {
    /// By the device chosen, not its UUID: a copied stick has the same one.
    pub loc: Location,
    pub init: Option<String>,
}

/// One ISO file in the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The ISO as the ISO's own kernel is told it: by its filesystem's UUID where it has one
    /// (the device's name where not).
    pub loc: Location,
    pub dev: String,
    pub kind: FsKind,
    /// The ISO's volume label and file name.
    pub title: String,
    pub size: u64,
    pub profile: Option<String>,
    /// How it boots, or why it cannot.
    pub boot: Result<Boot, String>,
}

fn listable(kind: FsKind) -> bool {
    matches!(kind, FsKind::Ext4 | FsKind::Vfat | FsKind::Exfat | FsKind::Ntfs)
}

/// Waits for the drivers and then for the block devices to stop changing (with at least one
/// filesystem isoroot can list), at most `timeout` from when the drivers are in.
fn settle(hw: &mut Hardware, timeout: Duration) {
    hw.settle();
    let mut changed = Instant::now();
    let _ = devices::poll(timeout, "the disks to settle", hw, |d| {
        if !d.refresh().is_empty() {
            changed = Instant::now();
        }
        let any = d.known.values().any(|b| b.fs.as_ref().is_some_and(|f| listable(f.kind)));
        Ok((any && changed.elapsed() >= SETTLED).then_some(()))
    });
}

/// The ISO at `path` on `dev`, read through its map.
fn with_iso<T>(
    dev: &File,
    kind: FsKind,
    path: &str,
    f: impl FnOnce(&IsoFs<'_, MappedFile<'_, File>>, &MappedFile<'_, File>) -> Result<T>,
) -> Result<T> {
    let map = filemap::map(dev, kind, path).map_err(|e| anyhow!("isoroot cannot map it: {e}"))?;
    let file = MappedFile::new(dev, &map);
    let iso = IsoFs::open(&file).context("not an ISO 9660 image")?;
    f(&iso, &file)
}

/// What the menu says about the ISO at `path` on `dev`.
fn entry(file: &File, dev: &BlockDev, kind: FsKind, path: &str, profiles: &[Profile]) -> Entry {
    let source = match dev.fs.as_ref().and_then(|f| f.uuid.clone()) {
        Some(uuid) => Source::Uuid(uuid),
        None => Source::Dev(dev.path.to_string_lossy().into_owned()),
    };
    let name = path.rsplit('/').next().unwrap_or(path);
    let mut e = Entry {
        loc: Location { source: Some(source), path: path.to_string() },
        dev: dev.path.display().to_string(),
        kind,
        title: name.to_string(),
        size: 0,
        profile: None,
        boot: Err(String::new()),
    };
    let read = with_iso(file, kind, path, |iso, mapped| {
        e.size = mapped.size();
        if !iso.label.trim().is_empty() {
            e.title = format!("{} ({name})", iso.label.trim());
        }
        let files = IsoFiles(iso);
        Ok(match isoroot_profiles::find(profiles, &files).map_err(|e| anyhow!(e))? {
            Match::Found(p, _) => {
                e.profile = Some(p.name.clone());
                let menu = own_entries(iso);
                let init = if p.init.is_none() { own_init(&menu) } else { None };
                if p.init.is_none() && init.is_none() {
                    Err("this distro names its init in its own boot menu, and the ISO's menu names none"
                        .into())
                } else {
                    Ok(Boot { own: boot_files(&files, p, &menu), tokens: p.cmdline.clone(), init })
                }
            }
            Match::Unsupported(p) => {
                e.profile = Some(p.name.clone());
                Err(p.unsupported.clone().unwrap_or_default())
            }
            Match::Nothing(_) => Err("no isoroot profile knows this layout".into()),
        })
    });
    e.boot = read.unwrap_or_else(|err| Err(format!("{err:#}")));
    e
}

/// Every ISO on every device isoroot can list, in device then path order, and what could
/// not be read.
fn scan(devices: &Devices, profiles: &[Profile]) -> (Vec<Entry>, Vec<String>) {
    let (mut entries, mut notes) = (Vec::new(), Vec::new());
    crate::info!("looking for ISO files on every disk");
    for dev in devices.known.values() {
        let Some(kind) = dev.fs.as_ref().map(|f| f.kind).filter(|&k| listable(k)) else { continue };
        let listed = File::open(&dev.path)
            .map_err(|e| e.to_string())
            .and_then(|file| Ok((filemap::isos(&file, kind).map_err(|e| e.to_string())?, file)));
        match listed {
            Ok((listing, file)) => {
                entries.extend(listing.paths.iter().map(|p| entry(&file, dev, kind, p, profiles)));
                notes.extend(listing.notes.iter().map(|n| format!("{}: {n}", dev.path.display())));
            }
            Err(e) => notes.push(format!("{dev}: {e}")),
        }
    }
    (entries, notes)
}

/// A key as the menu takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Up,
    Down,
    Enter,
    Back,
    Esc,
    Char(char),
}

/// Turns what a terminal sends into keys: arrows come as `ESC [ A` (or `ESC O A`), text as
/// UTF-8 a byte at a time on a serial line.
#[derive(Default)]
struct Decoder {
    pending: Vec<u8>,
}

/// Bytes of an escape sequence the decoder waits for at most: no key sends more.
const MAX_SEQUENCE: usize = 16;

impl Decoder {
    /// Takes a byte; the keys it completes go to `out`.
    fn feed(&mut self, b: u8, out: &mut VecDeque<Key>) {
        if self.pending == [0x1b] && b != b'[' && b != b'O' {
            // The Escape key, then a key of its own.
            self.pending.clear();
            out.push_back(Key::Esc);
        }
        self.pending.push(b);
        let key = match self.pending.as_slice() {
            [0x1b] | [0x1b, b'[' | b'O'] => return,
            [0x1b, b'[' | b'O', b'A'] => Some(Key::Up),
            [0x1b, b'[' | b'O', b'B'] => Some(Key::Down),
            // Parameters of a longer sequence (`ESC [ 5 ~`) wait for its final byte.
            [0x1b, b'[', rest @ ..]
                if rest.len() < MAX_SEQUENCE && rest.iter().all(|c| c.is_ascii_digit() || *c == b';') =>
            {
                return
            }
            [0x1b, ..] => None,
            [b'\r' | b'\n'] => Some(Key::Enter),
            [0x7f | 0x08] => Some(Key::Back),
            bytes => match std::str::from_utf8(bytes) {
                Ok(s) => s.chars().next().filter(|c| !c.is_control()).map(Key::Char),
                Err(e) if e.error_len().is_none() && bytes.len() < 4 => return,
                Err(_) => None,
            },
        };
        self.pending.clear();
        out.extend(key);
    }

    /// An Escape that nothing followed within [`ESCAPE_WAIT`]: the Escape key itself.
    fn lone_escape(&mut self) -> Option<Key> {
        (self.pending == [0x1b]).then(|| {
            self.pending.clear();
            Key::Esc
        })
    }
}

/// The menu's state: which entries the filter shows, the one marked, a number being typed.
struct Menu<'a> {
    entries: &'a [Entry],
    filter: String,
    typing_filter: bool,
    /// Indexes into `entries` of those shown.
    shown: Vec<usize>,
    /// Index into `shown`.
    at: usize,
    number: String,
    note: String,
}

impl<'a> Menu<'a> {
    fn new(entries: &'a [Entry]) -> Self {
        let mut m = Menu {
            entries,
            filter: String::new(),
            typing_filter: false,
            shown: Vec::new(),
            at: 0,
            number: String::new(),
            note: String::new(),
        };
        m.refilter();
        m.at = m.shown.iter().position(|&i| entries[i].boot.is_ok()).unwrap_or(0);
        m
    }

    fn refilter(&mut self) {
        let f = self.filter.to_lowercase();
        self.shown = (0..self.entries.len())
            .filter(|&i| {
                let e = &self.entries[i];
                let text = format!("{} {} {}", e.title, e.loc.path, e.profile.as_deref().unwrap_or(""));
                text.to_lowercase().contains(&f)
            })
            .collect();
        self.at = 0;
    }

    /// Boots entry `i` when it can boot; says why not otherwise.
    fn choose(&mut self, i: usize) -> Option<usize> {
        match &self.entries[i].boot {
            Ok(_) => Some(i),
            Err(why) => {
                self.note = format!("{} cannot be booted: {why}", i + 1);
                None
            }
        }
    }

    /// Takes a key; the entry to boot when the key chose one.
    fn key(&mut self, k: Key) -> Option<usize> {
        self.note.clear();
        if self.typing_filter {
            match k {
                Key::Char(c) => self.filter.push(c),
                Key::Back => drop(self.filter.pop()),
                Key::Enter => self.typing_filter = false,
                Key::Esc => {
                    self.filter.clear();
                    self.typing_filter = false;
                }
                Key::Up | Key::Down => {}
            }
            self.refilter();
            return None;
        }
        match k {
            Key::Char(c) if c.is_ascii_digit() && self.number.len() < 4 => self.number.push(c),
            Key::Char('/') => {
                self.typing_filter = true;
                self.number.clear();
            }
            Key::Back => drop(self.number.pop()),
            Key::Esc => self.number.clear(),
            Key::Up => self.at = self.at.saturating_sub(1),
            Key::Down => self.at = (self.at + 1).min(self.shown.len().saturating_sub(1)),
            Key::Enter if !self.number.is_empty() => {
                let n: usize = std::mem::take(&mut self.number).parse().unwrap_or(0);
                if (1..=self.entries.len()).contains(&n) {
                    return self.choose(n - 1);
                }
                self.note = format!("there is no ISO number {n}");
            }
            Key::Enter => return self.shown.get(self.at).copied().and_then(|i| self.choose(i)),
            Key::Char(_) => {}
        }
        None
    }

    fn render(&self, deadline: Option<Duration>) -> String {
        let mut s = String::from("\x1b[H\x1b[J\nisoroot: pick an ISO to boot\n");
        s.push_str("  up/down or its number, then Enter; / filters the list");
        match deadline {
            Some(d) => s.push_str(&format!("; the marked one boots in {} s\n\n", d.as_secs())),
            None => s.push('\n'),
        }
        let first = self.at.saturating_sub(ROWS / 2).min(self.shown.len().saturating_sub(ROWS));
        for (pos, &i) in self.shown.iter().enumerate().skip(first).take(ROWS) {
            let e = &self.entries[i];
            let mark = if pos == self.at { '>' } else { ' ' };
            let what = match &e.boot {
                Ok(_) => format!("{}, {}", e.profile.as_deref().unwrap_or("?"), human_size(e.size)),
                Err(why) => format!("cannot boot: {}", shown(why)),
            };
            s.push_str(&format!(
                " {mark} {:>2}) {}  [{what}]  {} {}\n",
                i + 1,
                shown(&e.title),
                e.dev,
                e.kind.name()
            ));
        }
        let hidden = self.shown.len().saturating_sub(ROWS);
        if hidden > 0 {
            s.push_str(&format!("   … {hidden} more: / filters\n"));
        }
        if self.shown.is_empty() {
            s.push_str("   (no ISO matches the filter)\n");
        }
        if self.typing_filter || !self.filter.is_empty() {
            s.push_str(&format!("filter: {}{}\n", self.filter, if self.typing_filter { "_" } else { "" }));
        }
        if !self.number.is_empty() {
            s.push_str(&format!("number: {}_\n", self.number));
        }
        if !self.note.is_empty() {
            s.push_str(&format!("{}\n", shown(&self.note)));
        }
        s
    }
}

/// Text from a disk, without the control characters that would move the cursor.
fn shown(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// How long an Escape waits for the rest of an arrow key's sequence.
const ESCAPE_WAIT: Duration = Duration::from_millis(50);

/// One console, in raw mode while the menu runs.
struct Tty {
    file: File,
    saved: Option<Termios>,
    decoder: Decoder,
}

/// The consoles the kernel writes to (`/proc/consoles`: the screen and the serial line
/// when both are given), read without blocking: a console that hangs up or fails is
/// dropped, and the keys of all the others count.
struct Terminals {
    ttys: Vec<Tty>,
    keys: VecDeque<Key>,
}

impl Terminals {
    fn open() -> Terminals {
        let names: Vec<String> = std::fs::read_to_string("/proc/consoles")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(|n| format!("/dev/{n}")))
            .collect();
        let mut ttys = Vec::new();
        for name in names.iter().map(String::as_str).chain(["/dev/console"]) {
            if !ttys.is_empty() && name == "/dev/console" {
                break;
            }
            let flags = libc::O_NOCTTY | libc::O_NONBLOCK;
            let Ok(file) = OpenOptions::new().read(true).write(true).custom_flags(flags).open(name) else {
                continue;
            };
            let saved = termios::tcgetattr(&file).ok();
            if let Some(old) = &saved {
                let mut raw = old.clone();
                raw.local_flags.remove(LocalFlags::ICANON | LocalFlags::ECHO);
                raw.input_flags.remove(InputFlags::ICRNL | InputFlags::IXON);
                raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
                raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
                let _ = termios::tcsetattr(&file, SetArg::TCSANOW, &raw);
            }
            ttys.push(Tty { file, saved, decoder: Decoder::default() });
        }
        Terminals { ttys, keys: VecDeque::new() }
    }

    /// Writes to every console; a full output buffer (a slow serial line) is waited for a
    /// little, then the rest of the screen is dropped there.
    fn write(&mut self, text: &str) {
        for t in &mut self.ttys {
            let mut left = text.as_bytes();
            let mut tries = 0;
            while !left.is_empty() && tries < 200 {
                match t.file.write(left) {
                    Ok(n) => left = &left[n..],
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        }
    }

    /// The next key from any console, or `None` when `wait` passes first or no console is
    /// left to read.
    fn key(&mut self, wait: Option<Duration>) -> Option<Key> {
        let start = Instant::now();
        loop {
            if let Some(k) = self.keys.pop_front() {
                return Some(k);
            }
            let left = wait.map(|w| w.saturating_sub(start.elapsed()));
            if self.ttys.is_empty() || left == Some(Duration::ZERO) {
                return None;
            }
            let escape = self.ttys.iter().any(|t| t.decoder.pending == [0x1b]);
            // At most a second at a time: Ctrl-Alt-Del is looked at between turns.
            let mut ms = left.map_or(1000, |l| l.as_millis().clamp(1, 1000) as i32);
            if escape {
                ms = ms.min(ESCAPE_WAIT.as_millis() as i32);
            }
            let mut fds: Vec<libc::pollfd> = self
                .ttys
                .iter()
                .map(|t| libc::pollfd { fd: t.file.as_raw_fd(), events: libc::POLLIN, revents: 0 })
                .collect();
            // SAFETY: `fds` is a live array of `fds.len()` pollfd structures.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            crate::wait::tick(Duration::ZERO);
            if n == 0 && escape {
                for t in &mut self.ttys {
                    self.keys.extend(t.decoder.lone_escape());
                }
            }
            if n <= 0 {
                continue;
            }
            let mut gone = Vec::new();
            for (i, p) in fds.iter().enumerate().filter(|(_, p)| p.revents != 0) {
                let t = &mut self.ttys[i];
                let mut buf = [0u8; 64];
                match t.file.read(&mut buf) {
                    Ok(0) => gone.push(i),
                    Ok(got) => buf[..got].iter().for_each(|&b| t.decoder.feed(b, &mut self.keys)),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                        if p.revents & libc::POLLIN == 0 {
                            gone.push(i); // hung up or in error, nothing to read
                        }
                    }
                    Err(_) => gone.push(i),
                }
            }
            for i in gone.into_iter().rev() {
                self.ttys.remove(i);
            }
        }
    }
}

impl Drop for Terminals {
    fn drop(&mut self) {
        for t in &self.ttys {
            if let Some(saved) = &t.saved {
                let _ = termios::tcsetattr(&t.file, SetArg::TCSANOW, saved);
            }
        }
    }
}

/// Shows the menu until a key chooses an entry; without a key for `timeout`, or without a
/// console to ask on, `first` (the first that can boot) boots.
fn ask_user(entries: &[Entry], notes: &[String], first: usize, timeout: Option<Duration>) -> usize {
    let mut menu = Menu::new(entries);
    let mut term = Terminals::open();
    let start = Instant::now();
    let mut deadline = timeout;
    loop {
        let mut screen = menu.render(deadline.map(|d| d.saturating_sub(start.elapsed())));
        for n in notes {
            screen.push_str(&format!("not listed: {}\n", shown(n)));
        }
        term.write(&screen);
        let left = deadline.map(|d| d.saturating_sub(start.elapsed()));
        match term.key(left) {
            Some(k) => {
                // Any key stops the countdown: someone is choosing.
                deadline = None;
                if let Some(i) = menu.key(k) {
                    return i;
                }
            }
            None => {
                if term.ttys.is_empty() {
                    crate::warn!("no console to show the menu on: booting the first ISO that can boot");
                }
                return first;
            }
        }
    }
}

/// The kernel command line for the ISO's own kernel: the profile's tokens, isoroot's
/// `rdinit=` and `iso=`, then this boot's own words (`console=`, `--append`'s, isoroot's
/// other keys) without those that named this boot's files or the picker.
fn own_cmdline(c: &Cmdline, loc: &Location, tokens: &str) -> String {
    let mut words: Vec<String> = tokens.split_whitespace().map(String::from).collect();
    words.push("rdinit=/isoroot/init".into());
    words.push(word("iso", &loc.to_string()));
    let passed = |k: &str| !NOT_PASSED.contains(&k) && !ISO_FROM_FILE.contains(&k);
    for (k, v) in c.params.iter().filter(|(k, _)| passed(k)) {
        words.push(match v {
            Some(v) => word(k, v),
            None if k.contains(char::is_whitespace) => format!("\"{k}\""),
            None => k.clone(),
        });
    }
    words.join(" ")
}

/// Words of this boot that the ISO's own kernel does not get: the picker's and the files
/// this boot loaded; other tools' names for an ISO ([`ISO_FROM_FILE`]), which the distro's
/// initrd would follow, neither.
const NOT_PASSED: &[&str] = &["iso", "iso.ask.timeout", "iso.kernel", "BOOT_IMAGE", "initrd", "rdinit"];

/// The longest kernel command line on x86, with its NUL.
const MAX_CMDLINE: usize = 2048;

/// Copies a file of the ISO into `to` a chunk at a time (an initrd can be large).
fn copy_out(src: &impl ReadAt, node: &Node, to: &mut File) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    for &(start, len) in &node.extents {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            src.read_at(start + done, &mut buf[..n])?;
            to.write_all(&buf[..n])?;
            done += n as u64;
        }
        total += len;
    }
    Ok(total)
}

/// Boots the ISO's own kernel with its initrd and isoroot's addon; returns only why not.
fn kexec_own(c: &Cmdline, e: &Entry, files: &BootFiles, tokens: &str) -> Result<Infallible> {
    if e.loc.path.contains('"') {
        bail!("its path holds a double quote, which no kernel command line can carry");
    }
    let line = own_cmdline(c, &e.loc, tokens);
    if line.len() >= MAX_CMDLINE {
        bail!(
            "its kernel command line would have {} bytes, more than the {MAX_CMDLINE} the kernel takes",
            line.len()
        );
    }
    let addon = std::fs::read(ADDON).with_context(|| {
        format!(
            "this initramfs has no isoroot addon at {ADDON} to add to the ISO's initrd (isoroot install puts \
             one there; isoroot mkinitramfs --addon)"
        )
    })?;
    let dev = File::open(&e.dev).with_context(|| format!("opening {}", e.dev))?;
    let (mut k, mut i) = (kexec::memory_file("kernel")?, kexec::memory_file("initrd")?);
    let (kernel, initrds) = (&files.kernel, &files.initrds);
    with_iso(&dev, e.kind, &e.loc.path, |iso, file| {
        let find = |p: &str| iso.lookup(p)?.ok_or_else(|| anyhow!("{p} is not in the ISO"));
        let size = |n: &Node| n.extents.iter().map(|x| x.1).sum::<u64>();
        let kn = find(kernel)?;
        let inodes = initrds.iter().map(|p| find(p)).collect::<Result<Vec<_>>>()?;
        if size(&kn) > MAX_KERNEL {
            bail!("{kernel} has {} bytes: not a kernel", size(&kn));
        }
        let need = inodes.iter().map(size).fold(size(&kn) + addon.len() as u64, u64::saturating_add);
        if let Some(free) = meminfo::read("MemAvailable").filter(|&f| f < need.saturating_mul(2)) {
            bail!(
                "its kernel and initrds take {}, and only {} of RAM is free",
                human_size(need),
                human_size(free)
            );
        }
        copy_out(file, &kn, &mut k).with_context(|| format!("reading {kernel}"))?;
        for (node, path) in inodes.iter().zip(initrds) {
            let n = copy_out(file, node, &mut i).with_context(|| format!("reading {path}"))?;
            // The kernel unpacks archives one after the other, each starting 4-byte aligned.
            i.write_all(&vec![0u8; ((4 - n % 4) % 4) as usize])?;
        }
        i.write_all(&addon)?;
        Ok(())
    })?;
    crate::info!(
        "starting the ISO's own kernel {kernel} with {} and isoroot's addon (kexec; from {})",
        initrds.join(" + "),
        files.from
    );
    crate::info!("its command line: {line}");
    kexec::load(&k, &i, &line)?;
    Err(kexec::reboot_into())
}

/// `iso=ask`: lists the ISOs, lets the person at the console choose, and boots the choice
/// with its own kernel when it can; otherwise returns it for this kernel to boot.
pub fn pick(c: &Cmdline, ask: &Ask, profiles: &[Profile], hw: &mut Hardware) -> Result<Choice> {
    settle(hw, c.timeout);
    let (entries, notes) = scan(&hw.devices, profiles);
    if entries.is_empty() {
        let mut msg = String::from(
            "iso=ask: no ISO file on any disk isoroot can read (*.iso on ext4, FAT, exFAT or NTFS, at the top \
             level or two folders down)",
        );
        for n in &notes {
            msg.push_str(&format!("\n  {n}"));
        }
        bail!("{msg}\nblock devices seen:\n{}", hw.devices.listing());
    }
    let Some(first) = entries.iter().position(|e| e.boot.is_ok()) else {
        let why: Vec<String> = entries
            .iter()
            .map(|e| {
                format!("  {}: {}", shown(&e.title), shown(e.boot.as_ref().err().map_or("", String::as_str)))
            })
            .collect();
        bail!("iso=ask: isoroot can boot none of the ISO files it found:\n{}", why.join("\n"));
    };
    let e = &entries[ask_user(&entries, &notes, first, ask.timeout)];
    crate::info!("chosen: {} ({} on {})", shown(&e.title), shown(&e.loc.to_string()), e.dev);
    let init = e.boot.as_ref().ok().and_then(|b| b.init.clone());
    if let Ok(Boot { own: Some(files), tokens, .. }) = &e.boot {
        if !ask.host_kernel {
            let mut tokens = merged_args(tokens, &files.args);
            tokens.extend(init.clone().filter(|i| !tokens.contains(i)));
            let Err(why) = kexec_own(c, e, files, &tokens.join(" "));
            crate::warn!(
                "the ISO's own kernel cannot be started: {why:#}\nbooting it with this kernel instead"
            );
        }
    }
    let loc = Location { source: Some(Source::Dev(e.dev.clone())), path: e.loc.path.clone() };
    Ok(Choice { loc, init })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(title: &str, boot: bool) -> Entry {
        Entry {
            loc: Location { source: Some(Source::Uuid("1234-ABCD".into())), path: format!("/{title}.iso") },
            dev: "/dev/vda3".into(),
            kind: FsKind::Exfat,
            title: title.into(),
            size: 1 << 30,
            profile: Some("debian-live".into()),
            boot: if boot {
                Ok(Boot { own: None, tokens: String::new(), init: None })
            } else {
                Err("why".into())
            },
        }
    }

    fn keys(d: &mut Decoder, bytes: &[u8]) -> Vec<Key> {
        let mut out = VecDeque::new();
        bytes.iter().for_each(|&b| d.feed(b, &mut out));
        out.into()
    }

    #[test]
    fn terminals_send_arrows_text_and_enter() {
        let mut d = Decoder::default();
        assert_eq!(
            keys(&mut d, b"\x1b[A\x1bOB12\r"),
            [Key::Up, Key::Down, Key::Char('1'), Key::Char('2'), Key::Enter]
        );
        assert_eq!(keys(&mut d, "é/\x7f".as_bytes()), [Key::Char('é'), Key::Char('/'), Key::Back]);
        // Page Up (`ESC [ 5 ~`) is read whole and ignored; Escape then a key is both keys.
        assert_eq!(keys(&mut d, b"\x1b[5~x\x1bq"), [Key::Char('x'), Key::Esc, Key::Char('q')]);
        // Escape alone is the key once nothing follows it.
        assert_eq!(keys(&mut d, b"\x1b"), []);
        assert_eq!(d.lone_escape(), Some(Key::Esc));
        // A sequence longer than any key is dropped, not kept growing.
        let got = keys(&mut d, &[&b"\x1b["[..], &[b'1'; 40], b"z"].concat());
        assert_eq!(got.last(), Some(&Key::Char('z')));
        assert!(d.pending.is_empty());
    }

    #[test]
    fn numbers_arrows_and_the_filter_choose() {
        let entries = [entry("cannot", false), entry("debian", true), entry("fedora", true)];
        let mut m = Menu::new(&entries);
        // The first that can boot is marked.
        assert_eq!(m.at, 1);
        assert_eq!(m.key(Key::Down), None);
        assert_eq!(m.key(Key::Enter), Some(2));
        // A number, and one that cannot boot says why.
        assert_eq!(m.key(Key::Char('1')), None);
        assert_eq!(m.key(Key::Enter), None);
        assert!(m.note.contains("1 cannot be booted: why"), "{}", m.note);
        assert_eq!([Key::Char('2'), Key::Enter].map(|k| m.key(k)), [None, Some(1)]);
        assert_eq!([Key::Char('9'), Key::Enter].map(|k| m.key(k)), [None, None]);
        assert!(m.note.contains("no ISO number 9"));
        // The filter keeps the entries' numbers.
        for k in [Key::Char('/'), Key::Char('F'), Key::Char('e'), Key::Enter] {
            assert_eq!(m.key(k), None);
        }
        assert_eq!(m.shown, [2]);
        assert!(m.render(None).contains("  3) fedora  [debian-live, 1.0 GiB]  /dev/vda3 exfat"));
        assert_eq!(m.key(Key::Enter), Some(2));
    }

    #[test]
    fn the_own_kernel_gets_this_boots_words_but_not_its_files() {
        let c = crate::cmdline::parse(
            "BOOT_IMAGE=/isoroot/vmlinuz iso=ask iso.kernel=iso console=ttyS0 iso.debug \"x=a b\" initrd=/i.img",
        )
        .unwrap();
        let loc = Location { source: Some(Source::Uuid("AB-CD".into())), path: "/my isos/d.iso".into() };
        assert_eq!(
            own_cmdline(&c, &loc, "boot=live components"),
            "boot=live components rdinit=/isoroot/init iso=\"UUID=AB-CD:/my isos/d.iso\" console=ttyS0 iso.debug \
             x=\"a b\""
        );
    }
}
