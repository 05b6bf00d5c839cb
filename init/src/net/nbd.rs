//! `iso=nbd://HOST[:PORT]/EXPORT`: the kernel's NBD client (nbd.ko) reads the export block
//! by block; isoroot does the fixed-newstyle handshake (NBD_OPT_GO, falling back to
//! NBD_OPT_EXPORT_NAME for old servers) and hands the socket over with the ioctl interface.
//! NBD_DO_IT blocks for as long as the device lives, so a child process makes that call and
//! stays behind when PID 1 execs the new root's init; when the server goes away, it says so.

use super::dns;
use super::link::Net;
use super::url::Url;
use crate::attach::{self, Attached};
use crate::cmdline::Cmdline;
use crate::devices::Hardware;
use anyhow::{bail, Context, Result};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const OPT_EXPORT_NAME: u32 = 1;
const OPT_GO: u32 = 7;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const REP_ERR_UNSUP: u32 = (1 << 31) | 1;
const INFO_EXPORT: u16 = 0;
/// Transmission flags: the export is read-only (and isoroot treats it so either way).
const FLAG_HAS_FLAGS: u16 = 1;
const FLAG_READ_ONLY: u16 = 2;

/// The export as the server describes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Export {
    pub size: u64,
    pub flags: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("this is not an NBD server with the fixed newstyle handshake (it sent {0:#x}…)")]
    NotNbd(u64),
    #[error("the server refused export {export:?}: {kind}{}", if .message.is_empty() { String::new() } else { format!(" ({})", .message) })]
    Refused { export: String, kind: &'static str, message: String },
    #[error("the server's reply broke the protocol: {0}")]
    Protocol(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

fn read_u16(r: &mut impl Read) -> io::Result<u16> {
    let mut b = [0; 2];
    r.read_exact(&mut b).map(|()| u16::from_be_bytes(b))
}
fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0; 4];
    r.read_exact(&mut b).map(|()| u32::from_be_bytes(b))
}
fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0; 8];
    r.read_exact(&mut b).map(|()| u64::from_be_bytes(b))
}

fn error_kind(reply: u32) -> &'static str {
    match reply & !(1 << 31) {
        1 => "unsupported option",
        2 => "forbidden by the server's policy",
        3 => "invalid request",
        5 => "the server requires TLS, which isoroot does not speak",
        6 => "no such export",
        7 => "the server is shutting down",
        8 => "the server requires block size negotiation",
        _ => "error",
    }
}

/// The handshake, client side, up to the transmission phase (the NBD protocol's
/// "Fixed newstyle negotiation").
pub fn handshake(s: &mut (impl Read + Write), export: &str) -> Result<Export, HandshakeError> {
    let magic = read_u64(s)?;
    let opt_magic = read_u64(s)?;
    if magic != NBDMAGIC || opt_magic != IHAVEOPT {
        return Err(HandshakeError::NotNbd(magic));
    }
    let server = read_u16(s)?;
    if server & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(HandshakeError::NotNbd(opt_magic));
    }
    let no_zeroes = server & FLAG_NO_ZEROES != 0;
    let client = u32::from(FLAG_FIXED_NEWSTYLE) | if no_zeroes { u32::from(FLAG_NO_ZEROES) } else { 0 };
    s.write_all(&client.to_be_bytes())?;
    let option = |s: &mut dyn Write, opt: u32, data: &[u8]| -> io::Result<()> {
        let mut m = Vec::with_capacity(16 + data.len());
        m.extend_from_slice(&IHAVEOPT.to_be_bytes());
        m.extend_from_slice(&opt.to_be_bytes());
        m.extend_from_slice(&(data.len() as u32).to_be_bytes());
        m.extend_from_slice(data);
        s.write_all(&m)
    };
    // NBD_OPT_GO: export name, no information requests beyond the default.
    let mut go = Vec::new();
    go.extend_from_slice(&(export.len() as u32).to_be_bytes());
    go.extend_from_slice(export.as_bytes());
    go.extend_from_slice(&0u16.to_be_bytes());
    option(s, OPT_GO, &go)?;
    let mut info = None;
    loop {
        if read_u64(s)? != REPLY_MAGIC {
            return Err(HandshakeError::Protocol("bad option reply magic".into()));
        }
        let (opt, reply, len) = (read_u32(s)?, read_u32(s)?, read_u32(s)?);
        if opt != OPT_GO || len > 64 * 1024 {
            return Err(HandshakeError::Protocol(format!("reply to option {opt} of {len} bytes")));
        }
        let mut data = vec![0; len as usize];
        s.read_exact(&mut data)?;
        match reply {
            REP_INFO if data.len() >= 12 && u16::from_be_bytes([data[0], data[1]]) == INFO_EXPORT => {
                let size = u64::from_be_bytes(data[2..10].try_into().expect("8 bytes"));
                info = Some(Export { size, flags: u16::from_be_bytes([data[10], data[11]]) });
            }
            REP_INFO => {}
            REP_ACK => {
                return info.ok_or_else(|| {
                    HandshakeError::Protocol("NBD_OPT_GO acknowledged without NBD_INFO_EXPORT".into())
                })
            }
            REP_ERR_UNSUP => break,
            r if r & (1 << 31) != 0 => {
                let message = String::from_utf8_lossy(&data).into_owned();
                return Err(HandshakeError::Refused { export: export.into(), kind: error_kind(r), message });
            }
            r => return Err(HandshakeError::Protocol(format!("unknown reply type {r}"))),
        }
    }
    // An old server: NBD_OPT_EXPORT_NAME has no reply header, and a missing export closes
    // the connection.
    option(s, OPT_EXPORT_NAME, export.as_bytes())?;
    let size = read_u64(s).map_err(|_| HandshakeError::Refused {
        export: export.into(),
        kind: "no such export",
        message: "the server closed the connection".into(),
    })?;
    let flags = read_u16(s)?;
    if !no_zeroes {
        s.read_exact(&mut [0; 124])?;
    }
    Ok(Export { size, flags })
}

// linux/nbd.h: _IO(0xab, n)
const NBD_SET_SOCK: libc::c_ulong = 0xab00;
const NBD_SET_SIZE: libc::c_ulong = 0xab02;
const NBD_DO_IT: libc::c_ulong = 0xab03;
const NBD_CLEAR_SOCK: libc::c_ulong = 0xab04;
const NBD_SET_TIMEOUT: libc::c_ulong = 0xab09;
const NBD_SET_FLAGS: libc::c_ulong = 0xab0a;
/// Requests that get no answer in this long fail, and NBD_DO_IT returns.
const IO_TIMEOUT_SECS: libc::c_ulong = 30;

fn ioctl(dev: &std::fs::File, request: libc::c_ulong, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the NBD ioctls used here take an integer argument, not a pointer.
    if unsafe { libc::ioctl(dev.as_raw_fd(), request as _, arg) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The first NBD device without a connection (`pid` appears in sysfs once one runs).
fn free_device() -> Option<PathBuf> {
    (0..64)
        .map(|i| format!("nbd{i}"))
        .take_while(|n| Path::new("/sys/block").join(n).exists())
        .find(|n| !Path::new("/sys/block").join(n).join("pid").exists())
        .map(|n| Path::new("/dev").join(n))
}

/// Connects, retrying a refused or unreachable server until the deadline.
fn connect(url: &Url, net: &Net, timeout: Duration) -> Result<TcpStream> {
    let ip = dns::resolve(&url.host, &net.dns)?;
    let addr = SocketAddr::from((ip, url.port));
    let deadline = Instant::now() + timeout;
    let mut announced = false;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                bail!(
                    "cannot reach the NBD server {} ({addr}) from {} in {} s: {e}",
                    url.authority(),
                    net.addr,
                    timeout.as_secs()
                )
            }
            Err(e) if !announced => {
                crate::info!(
                    "waiting up to {} s for the NBD server {}: {e}",
                    timeout.as_secs(),
                    url.authority()
                );
                announced = true;
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Gives the keeper the command line `@isoroot-nbd DEVICE`: systemd leaves processes whose
/// argv[0] starts with '@' alive when it kills everything at shutdown (its "storage daemons
/// for the root filesystem" convention), and the live root lives on this connection. The
/// child's argv is the init's own, so the kernel is pointed at a new one (PID 1 is root).
fn name_keeper(path: &Path) {
    let mut argv = format!("@isoroot-nbd\0{}\0", path.display()).into_bytes();
    let (start, end) =
        (argv.as_mut_ptr() as libc::c_ulong, (argv.as_ptr() as usize + argv.len()) as libc::c_ulong);
    // Lives as long as the process.
    std::mem::forget(argv);
    // The kernel keeps arg_start <= arg_end at each step: move the end first when the new
    // area lies above the old one, the start first when below.
    let above = {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // Field 48 (arg_start), counted after the ")" that ends the command name.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        after
            .split_whitespace()
            .nth(45)
            .and_then(|v| v.parse::<libc::c_ulong>().ok())
            .is_some_and(|old| start > old)
    };
    let order = if above {
        [(libc::PR_SET_MM_ARG_END, end), (libc::PR_SET_MM_ARG_START, start)]
    } else {
        [(libc::PR_SET_MM_ARG_START, start), (libc::PR_SET_MM_ARG_END, end)]
    };
    for (what, at) in order {
        // SAFETY: PR_SET_MM only changes what /proc/PID/cmdline reads; `at` is in this
        // process's (leaked) heap.
        if unsafe {
            libc::prctl(libc::PR_SET_MM, what as libc::c_ulong, at, 0 as libc::c_ulong, 0 as libc::c_ulong)
        } != 0
        {
            crate::debug!("naming the NBD keeper: {}", std::io::Error::last_os_error());
            return;
        }
    }
}

/// In the child: serve the device until the connection ends, then say why and exit.
fn keep(dev: &std::fs::File, path: &Path, url: &Url) -> ! {
    name_keeper(path);
    let result = ioctl(dev, NBD_DO_IT, 0);
    let _ = ioctl(dev, NBD_CLEAR_SOCK, 0);
    let why = match result {
        Ok(()) => "the connection was closed".to_string(),
        Err(e) => e.to_string(),
    };
    crate::error!(
        "the NBD server {} went away ({why}): {} has no data any more and every read of the live system \
         fails; restart the server and reboot",
        url.authority(),
        path.display()
    );
    // SAFETY: _exit is async-signal-safe; the child owns nothing that needs unwinding.
    unsafe { libc::_exit(1) }
}

fn keeper_alive(child: nix::unistd::Pid) -> bool {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    matches!(waitpid(child, Some(WaitPidFlag::WNOHANG)), Ok(WaitStatus::StillAlive))
}

/// The kernel gives the device its size when the connection starts and takes it away (0)
/// the moment the connection dies, before the keeper's NBD_DO_IT has returned.
fn has_size(size_file: &Path) -> bool {
    std::fs::read_to_string(size_file).is_ok_and(|s| s.trim() != "0")
}

/// After a failed read: whether the connection is gone, given up to 2 s to show it.
fn went_away(child: nix::unistd::Pid, size_file: &Path) -> bool {
    (0..100).any(|_| {
        let gone = !keeper_alive(child) || !has_size(size_file);
        if !gone {
            std::thread::sleep(Duration::from_millis(20));
        }
        gone
    })
}

pub fn attach(c: &Cmdline, url: &Url, net: &Net, hw: &mut Hardware) -> Result<Attached> {
    if !hw.modules.load("nbd") {
        bail!("the kernel module nbd did not load: {}", hw.modules.failed.join("; "));
    }
    let export = url.export();
    let export = export.as_str();
    let name = url.to_string();
    let mut sock = connect(url, net, c.timeout)?;
    sock.set_read_timeout(Some(Duration::from_secs(IO_TIMEOUT_SECS)))?;
    let info =
        handshake(&mut sock, export).with_context(|| format!("NBD handshake with {}", url.authority()))?;
    sock.set_read_timeout(None)?;
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::KeepAlive, &true)?;
    // udev is not running: the node appears with the module (devtmpfs); give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let path = loop {
        if let Some(p) = free_device().filter(|p| p.exists()) {
            break p;
        }
        if Instant::now() >= deadline {
            bail!("no free /dev/nbd* device after loading nbd");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let setup =
        |req, arg, what: &str| ioctl(&dev, req, arg).with_context(|| format!("{what} on {}", path.display()));
    setup(NBD_SET_SIZE, info.size as libc::c_ulong, "NBD_SET_SIZE")?;
    // Read-only whatever the server allows: nothing is ever written to the boot medium.
    setup(NBD_SET_FLAGS, libc::c_ulong::from(info.flags | FLAG_HAS_FLAGS | FLAG_READ_ONLY), "NBD_SET_FLAGS")?;
    setup(NBD_SET_TIMEOUT, IO_TIMEOUT_SECS, "NBD_SET_TIMEOUT")?;
    setup(NBD_SET_SOCK, sock.as_raw_fd() as libc::c_ulong, "NBD_SET_SOCK")?;
    // SAFETY: the module loader thread has been joined (bring_up settles it): this process
    // has one thread, so the child may do anything.
    let child = match unsafe { nix::unistd::fork() }.context("fork for NBD_DO_IT")? {
        nix::unistd::ForkResult::Child => keep(&dev, &path, url),
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(sock);
    let size_file = Path::new("/sys/block").join(path.file_name().expect("/dev/nbdN")).join("size");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_size(&size_file) {
        if !keeper_alive(child) || Instant::now() >= deadline {
            bail!("{} did not come up with the NBD connection to {}", path.display(), url.authority());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    crate::info!(
        "nbd: connected to {} export {export:?} ({} bytes) on {}",
        url.authority(),
        info.size,
        path.display()
    );
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let iso = attach::check_image(&file, info.size, c, &name).map_err(|e| {
        let e = e.context(format!("reading {name} through {}", path.display()));
        if went_away(child, &size_file) {
            e.context(format!("the NBD server {} went away during the boot", url.authority()))
        } else {
            e
        }
    })?;
    let how = format!("NBD export {export:?} from {}, read-only, not copied", url.authority());
    Ok(Attached { dev: path, iso, source: None, source_unmounted: false, how })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scripted server: what it sends, and what the client then wrote.
    struct Script {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Script {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.input.read(b)
        }
    }
    impl Write for Script {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.output.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn greeting(flags: u16) -> Vec<u8> {
        [&NBDMAGIC.to_be_bytes()[..], &IHAVEOPT.to_be_bytes(), &flags.to_be_bytes()].concat()
    }

    fn reply(kind: u32, data: &[u8]) -> Vec<u8> {
        let head = [
            REPLY_MAGIC.to_be_bytes().to_vec(),
            OPT_GO.to_be_bytes().to_vec(),
            kind.to_be_bytes().to_vec(),
            (data.len() as u32).to_be_bytes().to_vec(),
        ];
        [head.concat(), data.to_vec()].concat()
    }

    fn run(server: Vec<u8>) -> (Result<Export, HandshakeError>, Vec<u8>) {
        let mut s = Script { input: io::Cursor::new(server), output: vec![] };
        let r = handshake(&mut s, "live");
        (r, s.output)
    }

    #[test]
    fn go_with_export_info() {
        let info =
            [&INFO_EXPORT.to_be_bytes()[..], &(1u64 << 30).to_be_bytes(), &3u16.to_be_bytes()].concat();
        let server = [greeting(3), reply(REP_INFO, &info), reply(REP_ACK, &[])].concat();
        let (r, out) = run(server);
        assert_eq!(r.unwrap(), Export { size: 1 << 30, flags: 3 });
        // Client flags, then NBD_OPT_GO for "live" with no information requests.
        assert_eq!(&out[..4], &3u32.to_be_bytes());
        assert_eq!(&out[12..16], &OPT_GO.to_be_bytes());
        assert_eq!(&out[16..20], &10u32.to_be_bytes());
        assert_eq!(&out[24..28], b"live");
    }

    #[test]
    fn unknown_export_and_old_servers() {
        let server = [greeting(3), reply((1 << 31) | 6, b"no export named live")].concat();
        let e = run(server).0.unwrap_err().to_string();
        assert_eq!(e, "the server refused export \"live\": no such export (no export named live)");
        // NBD_OPT_GO unsupported: NBD_OPT_EXPORT_NAME, with the 124 zeroes of old servers.
        let old = [
            greeting(1),
            reply(REP_ERR_UNSUP, &[]),
            (4096u64).to_be_bytes().to_vec(),
            1u16.to_be_bytes().to_vec(),
            vec![0; 124],
        ]
        .concat();
        assert_eq!(run(old).0.unwrap(), Export { size: 4096, flags: 1 });
        assert!(matches!(run(b"SSH-2.0-OpenSSH_9.2p1\r\n".to_vec()).0, Err(HandshakeError::NotNbd(_))));
    }
}
