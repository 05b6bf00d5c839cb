//! A DHCPv4 client for one boot (RFC 2131 §3.1): DISCOVER, OFFER, REQUEST, ACK on a UDP
//! socket bound to the interface, with the broadcast flag set because the interface has no
//! address yet. Messages are dhcproto's; retries double from 1 s up to 4 s.

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub server: Ipv4Addr,
    pub seconds: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error("no DHCP server answered {sent} DISCOVER(s) on {iface} in {secs} s")]
    NoOffer { iface: String, sent: u32, secs: u64 },
    #[error("the DHCP server {server} offered {addr} on {iface} and did not acknowledge the request")]
    NoAck { iface: String, server: Ipv4Addr, addr: Ipv4Addr },
    #[error("DHCP on {iface}: {what}: {source}")]
    Io { iface: String, what: &'static str, source: std::io::Error },
}

fn socket_on(iface: &str) -> Result<UdpSocket, std::io::Error> {
    let fd = socket::socket(AddressFamily::Inet, SockType::Datagram, SockFlag::SOCK_CLOEXEC, None)?;
    socket::setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(iface))?;
    socket::setsockopt(&fd, sockopt::Broadcast, &true)?;
    socket::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    socket::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::new(0, 0, 0, 0, 68))?;
    Ok(UdpSocket::from(fd))
}

/// A BOOTREQUEST with the broadcast flag and no options, decoded from bytes laid out here:
/// dhcproto's constructors call `rand::random()`, which blocks until the kernel's RNG is
/// seeded, and early in a boot on a machine without RDRAND (QEMU's TCG CPU) that is minutes.
fn blank(xid: u32, mac: &[u8; 6]) -> Message {
    let mut b = vec![1, 1, 6, 0];
    b.extend_from_slice(&xid.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0x80, 0]); // secs, flags: broadcast
    b.extend_from_slice(&[0; 16]); // ciaddr, yiaddr, siaddr, giaddr
    b.extend_from_slice(mac);
    b.resize(b.len() + 10 + 64 + 128, 0); // the rest of chaddr, sname, file
    b.extend_from_slice(&[99, 130, 83, 99, 255]); // the magic cookie, the end option
    Message::decode(&mut Decoder::new(&b)).expect("a BOOTP header decodes")
}

fn request(kind: MessageType, xid: u32, mac: &[u8; 6], offer: Option<(Ipv4Addr, Ipv4Addr)>) -> Vec<u8> {
    let mut m = blank(xid, mac);
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::DomainNameServer,
    ]));
    if let Some((addr, server)) = offer {
        opts.insert(DhcpOption::RequestedIpAddress(addr));
        opts.insert(DhcpOption::ServerIdentifier(server));
    }
    let mut buf = Vec::with_capacity(300);
    m.encode(&mut Encoder::new(&mut buf)).expect("a DHCP request encodes");
    buf
}

/// A reply to this transaction of one of the `kinds`, or None for anything else.
fn reply(buf: &[u8], xid: u32, kinds: &[MessageType]) -> Option<Message> {
    let m = Message::decode(&mut Decoder::new(buf)).ok()?;
    let kind = m.opts().msg_type()?;
    (m.opcode() == Opcode::BootReply && m.xid() == xid && kinds.contains(&kind)).then_some(m)
}

fn lease_of(m: &Message) -> Option<Lease> {
    let opts = m.opts();
    let server = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(s)) => *s,
        _ => return None,
    };
    let prefix = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) => u32::from(*mask).leading_ones() as u8,
        _ => 24,
    };
    let router = match opts.get(OptionCode::Router) {
        Some(DhcpOption::Router(r)) => r.first().copied(),
        _ => None,
    };
    let dns = match opts.get(OptionCode::DomainNameServer) {
        Some(DhcpOption::DomainNameServer(d)) => d.clone(),
        _ => vec![],
    };
    let seconds = match opts.get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(s)) => Some(*s),
        _ => None,
    };
    Some(Lease { addr: m.yiaddr(), prefix, router, dns, server, seconds })
}

/// Sends `packet` and waits for a matching reply, resending with a doubling wait, until
/// `deadline` or `tries` sends; returns the reply and how many were sent.
fn exchange(
    sock: &UdpSocket,
    packet: &[u8],
    xid: u32,
    kinds: &[MessageType],
    deadline: Instant,
    tries: u32,
) -> std::io::Result<(Option<Message>, u32)> {
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let mut wait = Duration::from_secs(1);
    let mut buf = [0u8; 1500];
    for sent in 1..=tries {
        sock.send_to(packet, to)?;
        let until = (Instant::now() + wait).min(deadline);
        while let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
            sock.set_read_timeout(Some(left))?;
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    if let Some(m) = reply(&buf[..n], xid, kinds) {
                        return Ok((Some(m), sent));
                    }
                }
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
        }
        if Instant::now() >= deadline {
            return Ok((None, sent));
        }
        wait = (wait * 2).min(Duration::from_secs(4));
    }
    Ok((None, tries))
}

/// A lease for `iface`, or why there is none by `deadline`.
pub fn obtain(iface: &str, mac: &[u8; 6], deadline: Instant) -> Result<Lease, DhcpError> {
    let start = Instant::now();
    let io = |what| move |source| DhcpError::Io { iface: iface.into(), what, source };
    let sock = socket_on(iface).map_err(io("opening a socket on port 68"))?;
    // Unique enough for one boot on one link: the MAC's tail and the clock.
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let xid = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]) ^ nanos;
    crate::debug!("DHCP: DISCOVER on {iface}");
    loop {
        let discover = request(MessageType::Discover, xid, mac, None);
        let (offer, sent) = exchange(&sock, &discover, xid, &[MessageType::Offer], deadline, u32::MAX)
            .map_err(io("sending DISCOVER"))?;
        let Some(offer) = offer.as_ref().and_then(lease_of) else {
            return Err(DhcpError::NoOffer { iface: iface.into(), sent, secs: start.elapsed().as_secs() });
        };
        crate::debug!("DHCP: {} offers {} on {iface}", offer.server, offer.addr);
        let req = request(MessageType::Request, xid, mac, Some((offer.addr, offer.server)));
        let kinds = [MessageType::Ack, MessageType::Nak];
        let (ack, _) = exchange(&sock, &req, xid, &kinds, deadline, 3).map_err(io("sending REQUEST"))?;
        match ack {
            Some(m) if m.opts().msg_type() == Some(MessageType::Ack) => {
                return lease_of(&m).ok_or_else(|| DhcpError::NoAck {
                    iface: iface.into(),
                    server: offer.server,
                    addr: offer.addr,
                })
            }
            // A NAK: the offer was taken meanwhile; start over.
            Some(_) if Instant::now() < deadline => {
                crate::info!("DHCP: {} declined; asking again", offer.server)
            }
            _ => {
                return Err(DhcpError::NoAck { iface: iface.into(), server: offer.server, addr: offer.addr })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_becomes_a_lease() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let any = Ipv4Addr::UNSPECIFIED;
        let mut ack = Message::new_with_id(7, any, Ipv4Addr::new(10, 0, 2, 15), any, any, &mac);
        ack.set_opcode(Opcode::BootReply);
        let o = ack.opts_mut();
        o.insert(DhcpOption::MessageType(MessageType::Ack));
        o.insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 0, 2, 2)));
        o.insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
        o.insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 0, 2, 2)]));
        o.insert(DhcpOption::DomainNameServer(vec![Ipv4Addr::new(10, 0, 2, 3)]));
        let mut buf = Vec::new();
        ack.encode(&mut Encoder::new(&mut buf)).unwrap();
        assert!(reply(&buf, 8, &[MessageType::Ack]).is_none(), "another transaction");
        assert!(reply(&buf, 7, &[MessageType::Offer]).is_none(), "another kind");
        let lease = lease_of(&reply(&buf, 7, &[MessageType::Ack]).unwrap()).unwrap();
        assert_eq!(
            lease,
            Lease {
                addr: Ipv4Addr::new(10, 0, 2, 15),
                prefix: 24,
                router: Some(Ipv4Addr::new(10, 0, 2, 2)),
                dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
                server: Ipv4Addr::new(10, 0, 2, 2),
                seconds: None,
            }
        );
        // The blank request is what dhcproto's constructor makes, without its random xid.
        let mut made = Message::new_with_id(9, any, any, any, any, &mac);
        made.set_flags(dhcproto::v4::Flags::default().set_broadcast());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        made.encode(&mut Encoder::new(&mut a)).unwrap();
        blank(9, &mac).encode(&mut Encoder::new(&mut b)).unwrap();
        assert_eq!(a, b);
        // Our own requests decode as requests of this transaction, broadcast flag set.
        let req = request(MessageType::Request, 9, &mac, Some((lease.addr, lease.server)));
        let m = Message::decode(&mut Decoder::new(&req)).unwrap();
        assert_eq!(
            (m.xid(), m.opts().msg_type(), m.flags().broadcast()),
            (9, Some(MessageType::Request), true)
        );
    }
}
