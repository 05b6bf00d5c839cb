//! Servers for the network boots, bound to 127.0.0.1 (QEMU's user networking shows it to
//! the guest as 10.0.2.2) and stopped when dropped.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A small HTTP/1.1 server: the files under a folder, a redirect from `/latest.iso` to
/// [`LATEST`], an answer without a size at [`NO_LENGTH`], 404 for anything else.
pub struct HttpServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

pub const LATEST: &str = "/isos/debian-live.iso";
/// Answered 200 with a body but no Content-Length (HTTP/1.0 style: the end of the body is
/// the end of the connection).
pub const NO_LENGTH: &str = "/nolength.iso";

fn serve(mut s: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    // The headers, up to the empty line.
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
    }
    let file = root.join(path.trim_start_matches('/'));
    if !path.contains("..") && file.is_file() {
        let data = std::fs::read(file)?;
        write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n", data.len())?;
        return s.write_all(&data);
    }
    if path == NO_LENGTH {
        write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n")?;
        return s.write_all(&[0u8; 4096]);
    }
    if path == "/latest.iso" {
        return write!(
            s,
            "HTTP/1.1 302 Found\r\nLocation: {LATEST}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
    write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

impl HttpServer {
    pub fn start(root: &Path) -> Result<HttpServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, root) = (Arc::clone(&stop), root.to_path_buf());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(s) = conn {
                    let root = root.clone();
                    std::thread::spawn(move || serve(s, &root));
                }
            }
        });
        Ok(HttpServer { port, stop, thread: Some(thread) })
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// nbdkit (Debian package nbdkit) serving one file read-only as the export `live`.
pub struct Nbdkit {
    pub port: u16,
    child: Child,
}

impl Nbdkit {
    /// `filters`: extra nbdkit words, such as `--filter=delay rdelay=1`.
    pub fn start(file: &Path, filters: &[&str]) -> Result<Nbdkit> {
        // A free port: bound, read, let go (nbdkit binds it a moment later).
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let (flags, params): (Vec<&str>, Vec<&str>) = filters.iter().partition(|w| w.starts_with("--"));
        let child = Command::new("nbdkit")
            .args(["--foreground", "--exit-with-parent", "--readonly", "--ipaddr", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["--filter=exportname"])
            .args(flags)
            .arg("file")
            .arg(format!("file={}", file.display()))
            .args(["exportname=live", "exportname-strict=true"])
            .args(params)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nbdkit (package nbdkit)")?;
        let mut server = Nbdkit { port, child };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(10) || !matches!(server.child.try_wait(), Ok(None)) {
                server.stop();
                bail!("nbdkit did not listen on 127.0.0.1:{port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nbdkit {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sha256 of a file, as `sha256sum` prints it.
pub fn sha256(file: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(file).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.split_whitespace().next().unwrap_or_default().to_string())
}
