//! `iso=http://…` and `https://…`: the ISO downloaded into RAM (the same copy in /run as
//! `iso.toram`), its sha256 computed on the way, then attached to a loop device as a file.
//! HTTP/1.1 GET with `Content-Length` (the size must be known before RAM is spent) and up
//! to five redirects; TLS by rustls with the Mozilla roots of webpki-roots, no OpenSSL.

use super::dns;
use super::link::Net;
use super::url::{Scheme, Url};
use crate::attach::Attached;
use crate::cmdline::Cmdline;
use crate::loopdev::Window;
use crate::mount::Sys;
use crate::{toram, verify};
use anyhow::{anyhow, bail, Context, Result};
use isoroot_fs::human_size;
use isoroot_fs::iso9660;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A server silent this long has gone away.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_REDIRECTS: usize = 5;
const MAX_HEAD: usize = 64 * 1024;

trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

fn tls() -> Arc<rustls::ClientConfig> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

fn connect(url: &Url, net: &Net) -> Result<Box<dyn Conn>> {
    let ip = dns::resolve(&url.host, &net.dns)?;
    let addr = SocketAddr::from((ip, url.port));
    let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .with_context(|| format!("connecting to {} ({addr}) from {}", url.authority(), net.addr))?;
    tcp.set_read_timeout(Some(READ_TIMEOUT))?;
    if url.scheme != Scheme::Https {
        return Ok(Box::new(tcp));
    }
    let name = rustls::pki_types::ServerName::try_from(url.host.clone())
        .map_err(|e| anyhow!("{} is no TLS server name: {e}", url.host))?;
    let mut conn = rustls::ClientConnection::new(tls(), name)?;
    let mut tcp = tcp;
    // The handshake now, so that a refused certificate is said as such.
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).with_context(|| {
            format!(
                "TLS with {} (isoroot trusts the Mozilla roots it carries, from webpki-roots)",
                url.authority()
            )
        })?;
    }
    Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
}

/// A response's status line and headers.
struct Head {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
}

struct Response {
    head: Head,
    body: BufReader<Box<dyn Conn>>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body's size: digits only, and the same in every Content-Length header (RFC 9110
    /// §8.6; differing ones are how responses are smuggled).
    fn content_length(&self) -> Result<u64, String> {
        let mut values = self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("Content-Length"));
        let Some((_, first)) = values.next() else {
            return Err("no Content-Length: isoroot needs the size before it spends RAM".into());
        };
        if let Some((_, other)) = values.find(|(_, v)| v != first) {
            return Err(format!("two Content-Length headers that differ ({first}, {other})"));
        }
        match first.parse::<u64>() {
            Ok(len) if first.bytes().all(|b| b.is_ascii_digit()) => Ok(len),
            _ => Err(format!("Content-Length {first:?} is not a size in bytes")),
        }
    }
}

/// The status line and headers, up to the empty line: 64 KiB at most in all, however long
/// a line the server sends.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Head> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut lines = Vec::new();
    let mut total = 0;
    let too_long = || bad("the response's head passes 64 KiB");
    loop {
        if total == MAX_HEAD {
            return Err(too_long());
        }
        let mut line = Vec::new();
        let n = r.by_ref().take((MAX_HEAD - total) as u64).read_until(b'\n', &mut line)?;
        total += n;
        if n == 0 {
            return Err(bad("the server closed the connection or sent no HTTP response"));
        }
        if line.last() != Some(&b'\n') {
            return Err(too_long());
        }
        let line = String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let status_line = lines.first().ok_or_else(|| bad("an empty response"))?;
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let status = code
        .parse()
        .ok()
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| bad("no HTTP/1.x status line"))?;
    let reason = parts.next().unwrap_or("").to_string();
    let headers = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Head { status, reason, headers })
}

fn get(url: &Url, net: &Net) -> Result<Response> {
    let mut conn = connect(url, net)?;
    let host = if url.port == url.scheme.default_port() { url.host.clone() } else { url.authority() };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: isoroot/{}\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n",
        url.path,
        env!("CARGO_PKG_VERSION")
    );
    conn.write_all(request.as_bytes())
        .and_then(|()| conn.flush())
        .with_context(|| format!("sending GET {url}"))?;
    let mut body = BufReader::with_capacity(1 << 20, conn);
    let head = read_head(&mut body).with_context(|| format!("GET {url}"))?;
    Ok(Response { head, body })
}

/// Follows redirects to the response with the ISO; a redirect from HTTPS to plain HTTP
/// needs what plain HTTP needs (`iso.sha256=` or `iso.insecure`).
fn fetch(url: &Url, c: &Cmdline, net: &Net) -> Result<(Url, Response)> {
    let mut url = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let r = get(&url, net)?;
        match r.head.status {
            200 => return Ok((url, r)),
            301 | 302 | 303 | 307 | 308 => {
                let to = r.head.header("Location").and_then(|l| url.join(l)).ok_or_else(|| {
                    anyhow!(
                        "{url} redirects ({}) without a usable Location: {:?}",
                        r.head.status,
                        r.head.header("Location")
                    )
                })?;
                if url.scheme == Scheme::Https
                    && to.scheme == Scheme::Http
                    && c.sha256.is_none()
                    && !c.insecure
                {
                    bail!("{url} redirects to plain HTTP ({to}): give iso.sha256= (or iso.insecure) to accept that");
                }
                crate::info!("{url} redirects to {to}");
                url = to;
            }
            404 => bail!("the server {} has no {} (HTTP 404 {})", url.authority(), url.path, r.head.reason),
            s => bail!("GET {url}: HTTP {s} {}", r.head.reason),
        }
    }
    bail!("{url}: more than {MAX_REDIRECTS} redirects")
}

/// Downloads the ISO into RAM, checks it, and attaches the copy.
pub fn to_ram(sys: &mut dyn Sys, c: &Cmdline, url: &Url, net: &Net) -> Result<Attached> {
    let name = url.to_string();
    let (url, mut r) = fetch(url, c, net)?;
    if r.head.header("Transfer-Encoding").is_some_and(|t| !t.eq_ignore_ascii_case("identity")) {
        bail!("{url} came without a Content-Length (Transfer-Encoding: chunked): isoroot needs the size before it spends RAM");
    }
    let len = r.head.content_length().map_err(|why| anyhow!("{url}: {why}"))?;
    let free = crate::meminfo::free_ram()?;
    if len.saturating_add(toram::MARGIN) > free {
        bail!(
            "{name} is {} and {} of RAM is free; the system needs {} more to run: use a machine with more RAM, \
             or nbd:// (served block by block, no copy in RAM)",
            human_size(len),
            human_size(free),
            human_size(toram::MARGIN)
        );
    }
    let mut out = toram::create_copy()?;
    let mut hasher = Sha256::new();
    let fetched = crate::progress::stream(&mut r.body, len, &format!("downloading {url}"), |piece| {
        hasher.update(piece);
        out.write_all(piece).with_context(|| format!("writing {}", toram::COPY))
    });
    let checked = fetched.and_then(|()| match &c.sha256 {
        Some(want) => verify::expect(want, &hasher.finalize().into(), &name),
        None => Ok(()),
    });
    if let Err(e) = checked {
        drop(out);
        let _ = std::fs::remove_file(toram::COPY);
        return Err(e);
    }
    let file = std::fs::File::open(toram::COPY).with_context(|| format!("opening {}", toram::COPY))?;
    let iso = iso9660::check(&file, len, &name)?;
    let dev =
        sys.attach_loop(Path::new(toram::COPY), Window::default()).context("attaching the copy in RAM")?;
    Ok(Attached {
        dev,
        iso,
        source: None,
        source_unmounted: false,
        how: format!("downloaded from {url} into RAM"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_response_head() {
        let text = "HTTP/1.1 302 Found\r\nLocation: /b.iso\r\ncontent-length: 0\r\n\r\nBODY";
        let mut r = BufReader::new(text.as_bytes());
        let head = read_head(&mut r).unwrap();
        assert_eq!((head.status, head.reason.as_str()), (302, "Found"));
        assert_eq!(head.header("Content-Length"), Some("0"));
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "BODY");
        assert!(read_head(&mut BufReader::new("SSH-2.0-OpenSSH\r\n\r\n".as_bytes())).is_err());
        assert!(read_head(&mut BufReader::new("".as_bytes())).is_err());
    }

    #[test]
    fn an_endless_header_line_stops_at_64_kib() {
        // A server that never ends its line: read 64 KiB, not until memory runs out.
        let mut endless = std::io::repeat(b'a').take(1 << 30);
        let mut r = BufReader::new(&mut endless);
        let e = read_head(&mut r).err().unwrap().to_string();
        assert!(e.contains("passes 64 KiB"), "{e}");
        let text = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "b".repeat(MAX_HEAD));
        assert!(read_head(&mut BufReader::new(text.as_bytes())).is_err());
        // Whole lines that fill the limit exactly, the empty line still to come.
        let mut full = String::from("HTTP/1.1 200 OK\r\n");
        while full.len() + 12 <= MAX_HEAD {
            full.push_str("X: y\r\n");
        }
        full.push_str(&format!("Y: {}\r\n", "z".repeat(MAX_HEAD - full.len() - 5)));
        assert_eq!(full.len(), MAX_HEAD);
        let rest = format!("{full}\r\n");
        let e = read_head(&mut BufReader::new(rest.as_bytes())).err().unwrap().to_string();
        assert!(e.contains("passes 64 KiB"), "{e}");
    }

    #[test]
    fn content_length_is_one_plain_size() {
        let head = |lines: &[&str]| {
            let text = format!(
                "HTTP/1.1 200 OK\r\n{}\r\n",
                lines.iter().map(|l| format!("{l}\r\n")).collect::<String>()
            );
            read_head(&mut BufReader::new(text.as_bytes())).unwrap()
        };
        assert_eq!(head(&["Content-Length: 2048"]).content_length(), Ok(2048));
        assert_eq!(head(&["Content-Length: 7", "content-length: 7"]).content_length(), Ok(7));
        let max = head(&["Content-Length: 18446744073709551615"]).content_length().unwrap();
        assert_eq!(max.saturating_add(toram::MARGIN), u64::MAX);
        for bad in [
            &["Content-Length: 7", "Content-Length: 8"][..],
            &["Content-Length: +7"],
            &["Content-Length: 18446744073709551616"],
            &[],
        ] {
            assert!(head(bad).content_length().is_err(), "{bad:?}");
        }
    }
}
