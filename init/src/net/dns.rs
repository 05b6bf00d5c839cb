//! A host name in an `iso=` URL, resolved to an IPv4 address by asking the DNS servers
//! that DHCP or `ip=` named (hickory-proto's messages, one UDP query per server and try).

use anyhow::{anyhow, bail, Result};
use hickory_proto::op::{Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

fn query(host: &str, id: u16) -> Result<Vec<u8>> {
    let name = Name::from_ascii(format!("{host}.")).map_err(|e| anyhow!("{host} is not a DNS name: {e}"))?;
    let mut m = Message::new();
    m.set_id(id).set_message_type(MessageType::Query).set_recursion_desired(true);
    m.add_query(Query::query(name, RecordType::A));
    Ok(m.to_vec()?)
}

/// The first A record of a reply to `id`; Err for a reply that says the name has none.
fn answer(buf: &[u8], id: u16) -> Option<Result<Ipv4Addr, ResponseCode>> {
    let m =
        Message::from_vec(buf).ok().filter(|m| m.id() == id && m.message_type() == MessageType::Response)?;
    let a = m.answers().iter().find_map(|r| match r.data() {
        RData::A(a) => Some(a.0),
        _ => None,
    });
    Some(a.ok_or(match m.response_code() {
        ResponseCode::NoError => ResponseCode::NXDomain,
        code => code,
    }))
}

pub fn resolve(host: &str, servers: &[Ipv4Addr]) -> Result<Ipv4Addr> {
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    if servers.is_empty() {
        bail!("cannot look up {host}: no DNS server (DHCP named none; ip= takes them as DNS0-IP:DNS1-IP)");
    }
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    let mut buf = [0u8; 1500];
    for (try_no, server) in (0..3u16).flat_map(|t| servers.iter().map(move |s| (t, s))) {
        let id = 0x1500 ^ try_no ^ (u16::from(server.octets()[3]) << 8);
        sock.send_to(&query(host, id)?, SocketAddrV4::new(*server, 53))?;
        sock.set_read_timeout(Some(Duration::from_secs(1 + u64::from(try_no))))?;
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            match answer(&buf[..n], id) {
                Some(Ok(ip)) => return Ok(ip),
                Some(Err(code)) => bail!("{host}: the DNS server {server} says {code}"),
                None => continue,
            }
        }
    }
    let list: Vec<String> = servers.iter().map(ToString::to_string).collect();
    bail!("cannot look up {host}: no answer from the DNS server(s) {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{rdata::A, Record};

    #[test]
    fn reads_the_a_record_of_its_own_query() {
        let q = query("mirror.example.org", 7).unwrap();
        let mut m = Message::from_vec(&q).unwrap();
        assert_eq!(m.queries()[0].name().to_ascii(), "mirror.example.org.");
        m.set_message_type(MessageType::Response);
        let name = m.queries()[0].name().clone();
        m.add_answer(Record::from_rdata(name, 60, RData::A(A::new(192, 0, 2, 7))));
        let reply = m.to_vec().unwrap();
        assert_eq!(answer(&reply, 7), Some(Ok(Ipv4Addr::new(192, 0, 2, 7))));
        assert_eq!(answer(&reply, 8), None);
        m.answers_mut().clear();
        m.set_response_code(ResponseCode::NXDomain);
        assert_eq!(answer(&m.to_vec().unwrap(), 7), Some(Err(ResponseCode::NXDomain)));
        assert_eq!(resolve("10.0.2.2", &[]).unwrap(), Ipv4Addr::new(10, 0, 2, 2));
    }
}
