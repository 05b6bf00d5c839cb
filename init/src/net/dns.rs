//! A host name in an `iso=` URL, resolved to an IPv4 address by asking the DNS servers
//! that DHCP or `ip=` named (hickory-proto's messages, one UDP query per server and try).
//! A reply is taken only from the server asked (a connected socket on a fresh port), to the
//! query's random id, and for the question asked; the whole lookup has one deadline, however
//! many replies arrive.

use anyhow::{anyhow, bail, Result};
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// How long one lookup may take in all.
const DEADLINE: Duration = Duration::from_secs(10);

fn query(name: &Name, id: u16) -> Result<Vec<u8>> {
    let mut m = Message::new();
    m.set_id(id).set_message_type(MessageType::Query).set_recursion_desired(true);
    m.add_query(Query::query(name.clone(), RecordType::A));
    Ok(m.to_vec()?)
}

/// A query id an off-path sender cannot guess. GRND_INSECURE never blocks: under emulation
/// without RDRAND the kernel's pool may not be seeded for minutes, and an id needs only to
/// be unpredictable, not a key.
fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // SAFETY: getrandom writes at most the 2 bytes it is given.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), libc::GRND_INSECURE) };
    if n == 2 {
        return u16::from_ne_bytes(b);
    }
    // Kernels before 5.6 refuse the flag: the clock's low bits then.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (nanos.subsec_nanos() ^ (nanos.subsec_nanos() >> 16)) as u16
}

/// A reply's answer: an address, a server's "no such name", or None for no reply to us.
type Verdict = Option<Result<Ipv4Addr, ResponseCode>>;

/// The first A record of a reply to query `id` for `name`; Err for a reply that says the
/// name has none; None for anything else (another id, another question, not a reply).
fn answer(buf: &[u8], id: u16, name: &Name) -> Verdict {
    let m =
        Message::from_vec(buf).ok().filter(|m| m.id() == id && m.message_type() == MessageType::Response)?;
    match m.queries() {
        [q] if q.name() == name && q.query_type() == RecordType::A => {}
        _ => return None,
    }
    let a = m.answers().iter().find_map(|r| match r.data() {
        RData::A(a) => Some(a.0),
        _ => None,
    });
    Some(a.ok_or(match m.response_code() {
        ResponseCode::NoError => ResponseCode::NXDomain,
        code => code,
    }))
}

/// Asks `server` once and waits until `until` for its answer.
fn ask(name: &Name, server: SocketAddrV4, until: Instant) -> std::io::Result<Verdict> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.connect(server)?;
    let id = random_id();
    sock.send(&query(name, id).map_err(std::io::Error::other)?)?;
    let mut buf = [0u8; 1500];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv(&mut buf) {
            Ok(n) => {
                if let Some(verdict) = answer(&buf[..n], id, name) {
                    return Ok(Some(verdict));
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
}

pub fn resolve(host: &str, servers: &[Ipv4Addr]) -> Result<Ipv4Addr> {
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    if servers.is_empty() {
        bail!("cannot look up {host}: no DNS server (DHCP named none; ip= takes them as DNS0-IP:DNS1-IP)");
    }
    let name = Name::from_ascii(format!("{host}.")).map_err(|e| anyhow!("{host} is not a DNS name: {e}"))?;
    let end = Instant::now() + DEADLINE;
    let mut errors = Vec::new();
    for (try_no, server) in (0..3u64).flat_map(|t| servers.iter().map(move |s| (t, *s))) {
        let until = (Instant::now() + Duration::from_secs(1 + try_no)).min(end);
        match ask(&name, SocketAddrV4::new(server, 53), until) {
            Ok(Some(Ok(ip))) => return Ok(ip),
            Ok(Some(Err(code))) => bail!("{host}: the DNS server {server} says {code}"),
            Ok(None) => {}
            // An ICMP error (nothing listens there) comes back on the connected socket.
            Err(e) => errors.push(format!("{server}: {e}")),
        }
        if Instant::now() >= end {
            break;
        }
    }
    let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
    let errors = if errors.is_empty() { String::new() } else { format!(" ({})", errors.join("; ")) };
    bail!(
        "cannot look up {host}: no answer from the DNS server(s) {} within {} s{errors}",
        list.join(", "),
        DEADLINE.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{rdata::A, Record};

    #[test]
    fn reads_the_a_record_of_its_own_query() {
        let asked = Name::from_ascii("mirror.example.org.").unwrap();
        let q = query(&asked, 7).unwrap();
        let mut m = Message::from_vec(&q).unwrap();
        assert_eq!(m.queries()[0].name().to_ascii(), "mirror.example.org.");
        m.set_message_type(MessageType::Response);
        let name = m.queries()[0].name().clone();
        m.add_answer(Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, 7))));
        let reply = m.to_vec().unwrap();
        assert_eq!(answer(&reply, 7, &asked), Some(Ok(Ipv4Addr::new(192, 0, 2, 7))));
        assert_eq!(answer(&reply, 8, &asked), None);
        // A reply to another question, even with the right id, is not the answer.
        let other = Name::from_ascii("evil.example.org.").unwrap();
        assert_eq!(answer(&reply, 7, &other), None);
        m.answers_mut().clear();
        m.set_response_code(ResponseCode::NXDomain);
        assert_eq!(answer(&m.to_vec().unwrap(), 7, &asked), Some(Err(ResponseCode::NXDomain)));
        assert_eq!(resolve("10.0.2.2", &[]).unwrap(), Ipv4Addr::new(10, 0, 2, 2));
    }

    /// A server on loopback that answers each query with `replies(query)`, one datagram each.
    fn server(replies: impl Fn(&Message) -> Vec<Vec<u8>> + Send + 'static) -> SocketAddrV4 {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = match sock.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            other => panic!("{other}"),
        };
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let q = Message::from_vec(&buf[..n]).unwrap();
                for r in replies(&q) {
                    let _ = sock.send_to(&r, from);
                }
            }
        });
        addr
    }

    fn reply(q: &Message, id: u16, name: &Name, ip: [u8; 4]) -> Vec<u8> {
        let mut m = q.clone();
        m.set_id(id).set_message_type(MessageType::Response);
        m.queries_mut()[0] = Query::query(name.clone(), RecordType::A);
        m.add_answer(Record::from_rdata(name.clone(), 60, RData::A(A::new(ip[0], ip[1], ip[2], ip[3]))));
        m.to_vec().unwrap()
    }

    #[test]
    fn only_the_answer_to_the_question_asked_counts() {
        let asked = Name::from_ascii("mirror.example.org.").unwrap();
        let evil = Name::from_ascii("evil.example.org.").unwrap();
        let (a, e) = (asked.clone(), evil.clone());
        let addr = server(move |q| {
            vec![
                reply(q, q.id().wrapping_add(1), &a, [192, 0, 2, 66]), // another id
                reply(q, q.id(), &e, [192, 0, 2, 66]),                 // another question
                reply(q, q.id(), &a, [192, 0, 2, 7]),
            ]
        });
        let until = Instant::now() + Duration::from_secs(5);
        assert_eq!(ask(&asked, addr, until).unwrap(), Some(Ok(Ipv4Addr::new(192, 0, 2, 7))));
    }

    #[test]
    fn a_flood_of_wrong_replies_ends_at_the_deadline() {
        let asked = Name::from_ascii("mirror.example.org.").unwrap();
        let a = asked.clone();
        let addr =
            server(move |q| (0..2000).map(|_| reply(q, q.id() ^ 0x8000, &a, [192, 0, 2, 66])).collect());
        let start = Instant::now();
        let verdict = ask(&asked, addr, start + Duration::from_millis(300)).unwrap();
        assert_eq!(verdict, None);
        assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    }

    #[test]
    fn query_ids_vary() {
        let ids: std::collections::BTreeSet<u16> = (0..16).map(|_| random_id()).collect();
        assert!(ids.len() > 8, "{ids:?}");
    }
}
