//! Booting an ISO that lives on a server (`iso=http://…`, `https://…`, `nbd://…`): the
//! network brought up ([`link`]), then the ISO downloaded into RAM ([`http`]) or served
//! block by block over NBD ([`nbd`]).

pub mod dhcp;
pub mod dns;
pub mod http;
pub mod ipconf;
pub mod link;
pub mod nbd;
pub mod rtnl;
pub mod url;

use crate::attach::Attached;
use crate::cmdline::Cmdline;
use crate::devices::Hardware;
use crate::mount::Sys;
use anyhow::Result;
use url::{Scheme, Url};

/// The remote ISO as a block device: downloaded into RAM (HTTP) or served over NBD.
pub fn attach(sys: &mut dyn Sys, c: &Cmdline, url: &Url, hw: &mut Hardware) -> Result<Attached> {
    let net = link::bring_up(c, hw)?;
    match url.scheme {
        Scheme::Http | Scheme::Https => http::to_ram(sys, c, url, &net),
        Scheme::Nbd => nbd::attach(c, url, &net, hw),
    }
}
