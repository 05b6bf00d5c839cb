//! Just enough rtnetlink (rtnetlink(7)) to bring a link up and give it an address and a
//! default route: three requests, each acknowledged by the kernel.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_OIF: u16 = 4;
const RT_TABLE_MAIN: u8 = 254;
/// The route came from the boot (RTPROT_BOOT), as the kernel's own ip= autoconfiguration marks it.
const RTPROT_BOOT: u8 = 3;
const RTN_UNICAST: u8 = 1;

/// One request: the netlink header is filled in by [`Rtnl::request`].
struct Message {
    kind: u16,
    flags: u16,
    body: Vec<u8>,
}

impl Message {
    fn attr(mut self, kind: u16, data: &[u8]) -> Self {
        let len = 4 + data.len();
        self.body.extend_from_slice(&(len as u16).to_ne_bytes());
        self.body.extend_from_slice(&kind.to_ne_bytes());
        self.body.extend_from_slice(data);
        self.body.resize(self.body.len().next_multiple_of(4), 0);
        self
    }

    fn encode(&self, seq: u32) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.body.len());
        out.extend_from_slice(&(16 + self.body.len() as u32).to_ne_bytes());
        out.extend_from_slice(&self.kind.to_ne_bytes());
        out.extend_from_slice(&(self.flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

fn link_up(index: u32) -> Message {
    let mut body = vec![0u8; 16]; // struct ifinfomsg
    body[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    let up = libc::IFF_UP as u32;
    body[8..12].copy_from_slice(&up.to_ne_bytes());
    body[12..16].copy_from_slice(&up.to_ne_bytes());
    Message { kind: RTM_NEWLINK, flags: 0, body }
}

fn address(index: u32, addr: Ipv4Addr, prefix: u8) -> Message {
    // struct ifaddrmsg: family, prefix length, flags, scope (universe), index
    let mut body = vec![libc::AF_INET as u8, prefix, 0, 0];
    body.extend_from_slice(&index.to_ne_bytes());
    let mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    let broadcast = Ipv4Addr::from(u32::from(addr) | mask);
    Message { kind: RTM_NEWADDR, flags: NLM_F_CREATE | NLM_F_REPLACE, body }
        .attr(IFA_LOCAL, &addr.octets())
        .attr(IFA_ADDRESS, &addr.octets())
        .attr(IFA_BROADCAST, &broadcast.octets())
}

fn default_route(index: u32, gateway: Ipv4Addr) -> Message {
    // struct rtmsg: family, dst_len 0 (default), src_len, tos, table, protocol, scope, type, flags
    let mut body = vec![libc::AF_INET as u8, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST];
    body.extend_from_slice(&0u32.to_ne_bytes());
    Message { kind: RTM_NEWROUTE, flags: NLM_F_CREATE | NLM_F_REPLACE, body }
        .attr(RTA_GATEWAY, &gateway.octets())
        .attr(RTA_OIF, &index.to_ne_bytes())
}

pub struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

impl Rtnl {
    pub fn open() -> io::Result<Rtnl> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let fd = unsafe {
            libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        Ok(Rtnl { fd: unsafe { OwnedFd::from_raw_fd(fd) }, seq: 0 })
    }

    /// Sends one request and reads the kernel's acknowledgement: its errno, if any.
    fn request(&mut self, m: Message) -> io::Result<()> {
        self.seq += 1;
        let out = m.encode(self.seq);
        // SAFETY: the buffers outlive the calls; lengths are theirs.
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), out.as_ptr().cast(), out.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 4096];
        loop {
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut msg = &buf[..n as usize];
            while msg.len() >= 20 {
                let len = u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(msg[4..6].try_into().unwrap());
                let seq = u32::from_ne_bytes(msg[8..12].try_into().unwrap());
                if kind == NLMSG_ERROR && seq == self.seq {
                    let errno = i32::from_ne_bytes(msg[16..20].try_into().unwrap());
                    return if errno == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-errno)) };
                }
                if len < 16 || len > msg.len() {
                    break;
                }
                msg = &msg[len.next_multiple_of(4).min(msg.len())..];
            }
        }
    }

    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        self.request(link_up(index))
    }

    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> io::Result<()> {
        self.request(address(index, addr, prefix))
    }

    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> io::Result<()> {
        self.request(default_route(index, gateway))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_laid_out_as_the_kernel_reads_them() {
        let m = address(2, Ipv4Addr::new(10, 0, 2, 15), 24).encode(7);
        assert_eq!(m.len(), 16 + 8 + 3 * 8);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
        assert_eq!(u16::from_ne_bytes(m[4..6].try_into().unwrap()), RTM_NEWADDR);
        assert_eq!(&m[16..24], &[2, 24, 0, 0, 2, 0, 0, 0]);
        // IFA_BROADCAST, last: 10.0.2.255
        assert_eq!(&m[m.len() - 4..], &[10, 0, 2, 255]);
        let r = default_route(3, Ipv4Addr::new(10, 0, 2, 2)).encode(1);
        assert_eq!(r.len(), 16 + 12 + 8 + 8);
        assert_eq!(&r[32..36], &[10, 0, 2, 2]);
    }
}
