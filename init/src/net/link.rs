//! The boot's network: the NIC driver by modalias (the same coldplug as for disks), the
//! link, and an IPv4 address from DHCP or `ip=`, written down for the booted system.

use super::{dhcp, ipconf, rtnl};
use crate::cmdline::Cmdline;
use crate::devices::Hardware;
use anyhow::{anyhow, bail, Context, Result};
use ipconf::Method;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

/// What the boot's network looks like, written for the booted system as `key=value` lines.
pub const STATE: &str = "/run/isoroot/net";
const ARPHRD_ETHER: &str = "1";

/// The configured interface.
#[derive(Debug)]
pub struct Net {
    pub iface: String,
    pub addr: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    /// "DHCP from 10.0.2.2" or "ip=".
    pub how: String,
}

struct Iface {
    name: String,
    index: u32,
    mac: [u8; 6],
}

impl std::fmt::Display for Iface {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let mac: Vec<String> = self.mac.iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "{} ({})", self.name, mac.join(":"))
    }
}

fn sysfs(name: &str, attr: &str) -> Option<String> {
    fs::read_to_string(Path::new("/sys/class/net").join(name).join(attr)).ok().map(|s| s.trim().to_string())
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = s.split(':').map(|b| u8::from_str_radix(b, 16)).collect::<Result<_, _>>().ok()?;
    bytes.try_into().ok()
}

/// Ethernet interfaces, by name.
fn interfaces() -> Vec<Iface> {
    let mut out: Vec<Iface> = fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if sysfs(&name, "type").as_deref() != Some(ARPHRD_ETHER) {
                return None;
            }
            let index = sysfs(&name, "ifindex")?.parse().ok()?;
            let mac = parse_mac(&sysfs(&name, "address")?)?;
            Some(Iface { name, index, mac })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// PCI network controllers (class 02xxxx) that no driver took: the likeliest reason for
/// a machine without an interface.
fn driverless_nics() -> Vec<String> {
    let Ok(entries) = fs::read_dir("/sys/bus/pci/devices") else { return vec![] };
    entries
        .flatten()
        .filter(|e| fs::read_to_string(e.path().join("class")).is_ok_and(|c| c.starts_with("0x02")))
        .filter(|e| !e.path().join("driver").exists())
        .map(|e| {
            let id = |f: &str| {
                fs::read_to_string(e.path().join(f))
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches("0x")
                    .to_string()
            };
            format!("{} [{}:{}]", e.file_name().to_string_lossy(), id("vendor"), id("device"))
        })
        .collect()
}

fn no_interface(device: Option<&str>, timeout: Duration) -> anyhow::Error {
    let present: Vec<String> = fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let wanted =
        device.map_or("a network interface".to_string(), |d| format!("the network interface {d} (ip=)"));
    let nics = driverless_nics();
    let drivers = if nics.is_empty() {
        "no PCI network controller is without a driver: is there a network card?".to_string()
    } else {
        format!("network controllers without a driver in this initramfs: {}", nics.join(", "))
    };
    anyhow!(
        "no network: {wanted} did not appear in {} s\ninterfaces: {}\n{drivers}",
        timeout.as_secs(),
        if present.is_empty() { "none".into() } else { present.join(", ") }
    )
}

/// Brings the links up and waits for the first with carrier.
fn first_link(ifaces: Vec<Iface>, rtnl: &mut rtnl::Rtnl, deadline: Instant) -> Result<Iface> {
    for i in &ifaces {
        rtnl.set_up(i.index).with_context(|| format!("setting {} up", i.name))?;
        crate::debug!("{i} is up");
    }
    let mut announced = false;
    loop {
        if let Some(pos) = ifaces.iter().position(|i| sysfs(&i.name, "carrier").as_deref() == Some("1")) {
            return Ok(ifaces.into_iter().nth(pos).expect("position is in range"));
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = ifaces.iter().map(ToString::to_string).collect();
            bail!("no link: {} without carrier; is the cable in and the switch port up?", names.join(", "));
        }
        if !announced {
            crate::info!(
                "waiting for a link on {}",
                ifaces.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
            );
            announced = true;
        }
        crate::wait::tick(Duration::from_millis(50));
    }
}

/// An address on the first interface with a link, by `ip=` or DHCP, within `iso.timeout`.
pub fn bring_up(c: &Cmdline, hw: &mut Hardware) -> Result<Net> {
    let conf = ipconf::parse(c.get("ip"))?;
    let device = conf.device.as_deref();
    let ifaces = crate::devices::poll(c.timeout, "a network interface", hw, |_| {
        let found: Vec<Iface> =
            interfaces().into_iter().filter(|i| device.is_none_or(|d| d == i.name)).collect();
        Ok((!found.is_empty()).then_some(found))
    })?;
    hw.settle();
    let ifaces = ifaces.ok_or_else(|| no_interface(device, c.timeout))?;
    // The link and the lease get iso.timeout from here, once the drivers are in.
    let deadline = Instant::now() + c.timeout;
    let mut rtnl = rtnl::Rtnl::open().context("opening a netlink socket")?;
    let iface = first_link(ifaces, &mut rtnl, deadline)?;
    let net = match conf.method {
        Method::Dhcp => {
            let lease = dhcp::obtain(&iface.name, &iface.mac, deadline)?;
            let how = match lease.seconds {
                Some(s) => format!("DHCP from {}, lease {s} s", lease.server),
                None => format!("DHCP from {}", lease.server),
            };
            Net {
                iface: iface.name,
                addr: lease.addr,
                prefix: lease.prefix,
                gateway: lease.router,
                dns: lease.dns,
                how,
            }
        }
        Method::Static(s) => Net {
            iface: iface.name,
            addr: s.addr,
            prefix: s.prefix,
            gateway: s.gateway,
            dns: s.dns,
            how: "ip=".into(),
        },
    };
    rtnl.add_address(iface.index, net.addr, net.prefix)
        .with_context(|| format!("adding {}/{} to {}", net.addr, net.prefix, net.iface))?;
    if let Some(gw) = net.gateway {
        rtnl.add_default_route(iface.index, gw)
            .with_context(|| format!("adding a default route via {gw}"))?;
    }
    let via = net.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
    crate::info!("network: {} {}/{}{via} ({})", net.iface, net.addr, net.prefix, net.how);
    let dns: Vec<String> = net.dns.iter().map(ToString::to_string).collect();
    let state = format!(
        "interface={}\naddress={}/{}\ngateway={}\ndns={}\nhow={}\n",
        net.iface,
        net.addr,
        net.prefix,
        net.gateway.map(|g| g.to_string()).unwrap_or_default(),
        dns.join(" "),
        net.how
    );
    fs::create_dir_all("/run/isoroot").context("creating /run/isoroot")?;
    fs::write(STATE, state).with_context(|| format!("writing {STATE}"))?;
    crate::timings::mark("network");
    Ok(net)
}
