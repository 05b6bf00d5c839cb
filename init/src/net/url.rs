//! `iso=http://…`, `https://…` and `nbd://…`: where a remote ISO is, as the command line says.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    Nbd,
}

impl Scheme {
    const ALL: [(Scheme, &'static str, u16); 3] =
        [(Scheme::Http, "http", 80), (Scheme::Https, "https", 443), (Scheme::Nbd, "nbd", 10809)];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|s| s.0 == self).map_or("", |s| s.1)
    }

    pub fn default_port(self) -> u16 {
        Self::ALL.iter().find(|s| s.0 == self).map_or(0, |s| s.2)
    }
}

/// `SCHEME://HOST[:PORT]/PATH`; for NBD the path (without its `/`) is the export name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Starts with `/`.
    pub path: String,
}

/// Whether a value names a remote ISO rather than a file on a disk.
pub fn is_remote(v: &str) -> bool {
    Scheme::ALL.iter().any(|(_, name, _)| v.strip_prefix(name).is_some_and(|r| r.starts_with("://")))
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') && !l.starts_with('-')
        })
}

impl Url {
    /// None for anything but `SCHEME://HOST[:PORT][/PATH]` with a DNS name or an IPv4
    /// address (the network is brought up with DHCPv4 or static IPv4 only).
    pub fn parse(v: &str) -> Option<Url> {
        let (scheme, rest) = Scheme::ALL.iter().find_map(|(s, name, _)| {
            v.strip_prefix(name).and_then(|r| r.strip_prefix("://")).map(|r| (*s, r))
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p != 0)?),
            None => (authority, scheme.default_port()),
        };
        if !valid_host(host) || path.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'#') {
            return None;
        }
        Some(Url { scheme, host: host.to_ascii_lowercase(), port, path: path.into() })
    }

    /// The NBD export: the path without its `/`, `%XX` escapes decoded.
    pub fn export(&self) -> String {
        let b = self.path.trim_start_matches('/').as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = (b[i] == b'%').then(|| b.get(i + 1..i + 3)).flatten();
            match hex.and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()) {
                Some(v) => {
                    out.push(v);
                    i += 3;
                }
                None => {
                    out.push(b[i]);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// `HOST:PORT`, for messages and for the HTTP Host header.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Where an HTTP redirect's `Location:` leads from here: an absolute URL or a path.
    pub fn join(&self, location: &str) -> Option<Url> {
        if is_remote(location) {
            return Url::parse(location).filter(|u| u.scheme != Scheme::Nbd);
        }
        location.starts_with('/').then(|| Url { path: location.into(), ..self.clone() })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.name(), self.host)?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        write!(f, "{}", self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_schemes() {
        let u = Url::parse("http://10.0.2.2:8080/isos/debian.iso").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
            (Scheme::Http, "10.0.2.2", 8080, "/isos/debian.iso")
        );
        assert_eq!(u.to_string(), "http://10.0.2.2:8080/isos/debian.iso");
        let u = Url::parse("https://Mirror.example.org/a.iso").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("mirror.example.org", 443));
        assert_eq!(u.to_string(), "https://mirror.example.org/a.iso");
        let u = Url::parse("nbd://server").unwrap();
        assert_eq!((u.scheme, u.port, u.path.as_str(), u.export()), (Scheme::Nbd, 10809, "/", String::new()));
        assert_eq!(Url::parse("nbd://h/debian%20live.iso").unwrap().export(), "debian live.iso");
        assert_eq!(Url::parse("nbd://h/a%2").unwrap().export(), "a%2");
        assert!(is_remote("nbd://x/y") && !is_remote("UUID=x:/http://a") && !is_remote("/isos/a.iso"));
    }

    #[test]
    fn refuses_what_it_cannot_reach() {
        for bad in [
            "http://",
            "http://:80/a",
            "http://h:0/a",
            "http://h:99999/a",
            "http://u@h/a",
            "http://h/a b",
            "ftp://h/a",
            "http://[::1]/a",
        ] {
            assert_eq!(Url::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn redirects_join() {
        let u = Url::parse("http://h:81/a/b.iso").unwrap();
        assert_eq!(u.join("/c.iso").unwrap().to_string(), "http://h:81/c.iso");
        assert_eq!(u.join("https://m/d.iso").unwrap().to_string(), "https://m/d.iso");
        assert_eq!(u.join("nbd://m/x"), None);
        assert_eq!(u.join("relative.iso"), None);
    }
}
