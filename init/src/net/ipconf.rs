//! `ip=`, in the kernel's own syntax (Documentation/admin-guide/nfs/nfsroot.rst), which
//! dracut and initramfs-tools read too:
//! `ip=CLIENT:SERVER:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF:DNS0:DNS1:NTP0`, or
//! `ip=dhcp` (also `on`, `any`, `both`, `bootp`). Without `ip=` isoroot asks DHCP.

use crate::cmdline::{bad, CmdlineError};
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Static {
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Dhcp,
    Static(Static),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Only this interface; else the first with a link.
    pub device: Option<String>,
    pub method: Method,
}

const EXPECTED: &str =
    "dhcp, or CLIENT-IP:SERVER-IP:GATEWAY-IP:NETMASK:HOSTNAME:DEVICE:AUTOCONF:DNS0-IP:DNS1-IP \
                        (the kernel's syntax, IPv4)";

/// The prefix length of a netmask; None unless its ones are contiguous.
fn prefix_of(mask: Ipv4Addr) -> Option<u8> {
    let bits = u32::from(mask);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// The kernel's default for an empty netmask: the address's class.
fn classful(addr: Ipv4Addr) -> u8 {
    match addr.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

pub fn parse(value: Option<&str>) -> Result<IpConfig, CmdlineError> {
    let dhcp = |device: Option<String>| IpConfig { device, method: Method::Dhcp };
    let v = match value {
        None | Some("dhcp" | "on" | "any" | "both" | "bootp") => return Ok(dhcp(None)),
        Some(v) => v,
    };
    let err = || bad("ip", EXPECTED, v);
    if matches!(v, "off" | "none") {
        return Err(bad("ip", "an ISO named by URL needs the network: dhcp or a static address", v));
    }
    let f: Vec<&str> = v.split(':').collect();
    let field = |i: usize| f.get(i).copied().unwrap_or("");
    let ip = |i: usize| -> Result<Option<Ipv4Addr>, CmdlineError> {
        match field(i) {
            "" => Ok(None),
            s => s.parse().map(Some).map_err(|_| err()),
        }
    };
    if f.len() > 10 {
        return Err(err());
    }
    let device = Some(field(5)).filter(|d| !d.is_empty()).map(String::from);
    if device.as_deref().is_some_and(|d| d.contains('/') || d.len() > 15) {
        return Err(err());
    }
    let autoconf = field(6);
    let client = ip(0)?;
    match (client, autoconf) {
        (_, "dhcp" | "on" | "any" | "both" | "bootp") | (None, "") => Ok(dhcp(device)),
        (Some(addr), "" | "off" | "none") => {
            let prefix = match ip(3)? {
                Some(mask) => prefix_of(mask).ok_or_else(err)?,
                None => classful(addr),
            };
            let dns = [ip(7)?, ip(8)?].into_iter().flatten().collect();
            Ok(IpConfig { device, method: Method::Static(Static { addr, prefix, gateway: ip(2)?, dns }) })
        }
        _ => Err(err()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcp_forms() {
        assert_eq!(parse(None).unwrap(), IpConfig { device: None, method: Method::Dhcp });
        assert_eq!(parse(Some("dhcp")).unwrap().method, Method::Dhcp);
        let c = parse(Some(":::::eth1:dhcp")).unwrap();
        assert_eq!((c.device.as_deref(), c.method), (Some("eth1"), Method::Dhcp));
    }

    #[test]
    fn static_form() {
        let c = parse(Some("10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:10.0.2.3")).unwrap();
        let want = Static {
            addr: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            gateway: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![Ipv4Addr::new(10, 0, 2, 3)],
        };
        assert_eq!(c, IpConfig { device: Some("eth0".into()), method: Method::Static(want) });
        let Method::Static(s) = parse(Some("172.16.1.9")).unwrap().method else { panic!() };
        assert_eq!((s.prefix, s.gateway), (16, None));
    }

    #[test]
    fn bad_values() {
        for v in ["10.0.2.300", "10.0.2.15:::255.0.255.0", "off", "1.2.3.4::::::rarp", "::::::::::::"] {
            assert!(parse(Some(v)).is_err(), "{v}");
        }
        let e = parse(Some("off")).unwrap_err().to_string();
        assert!(e.contains("needs the network"), "{e}");
    }
}
