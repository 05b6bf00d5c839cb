//! Network boots (`iso=http://…`, `https://…`, `nbd://…`): the guest has no disk, QEMU's user
//! networking gives it DHCP, and the servers run on this machine's loopback, started and
//! stopped by each test.

use crate::cases::{self, and, failure, marker, via, Expect, Outcome};
use crate::fixtures::Fixtures;
use crate::qemu::{Accel, BootFrom, Nic, Vm, VmSpec, Writes};
use crate::servers::{self, HttpServer, Nbdkit};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The host's 127.0.0.1 as the guest sees it.
const HOST: &str = "10.0.2.2";
const CONNECTED: &str = "nbd: connected to";

struct Net<'a> {
    f: &'a Fixtures,
    isoroot: &'a Path,
    accel: Accel,
    /// The web servers' folder: isos/debian-live.iso, the kernel and the network initramfs.
    www: PathBuf,
}

type Test = fn(&Net) -> Result<(), String>;

/// The folder a network-boot server holds, as the README lays it out.
fn www(f: &Fixtures) -> std::io::Result<PathBuf> {
    let www = f.dir.join("www");
    if www.exists() {
        std::fs::remove_dir_all(&www)?;
    }
    std::fs::create_dir_all(www.join("isos"))?;
    std::fs::copy(f.isos.join("debian-live.iso"), www.join("isos/debian-live.iso"))?;
    std::fs::copy(&f.kernel, www.join("vmlinuz"))?;
    std::fs::copy(&f.initrds["net"], www.join("isoroot-net.img"))?;
    Ok(www)
}

impl Net<'_> {
    fn iso(&self) -> PathBuf {
        self.www.join("isos/debian-live.iso")
    }

    fn http(&self) -> Result<HttpServer, String> {
        HttpServer::start(&self.www).map_err(|e| e.to_string())
    }

    /// Boots the kernel with the network initramfs.
    fn start(&self, append: &str, nic: Nic) -> Result<Vm, String> {
        let boot = BootFrom::Kernel {
            kernel: self.f.kernel.clone(),
            initrd: Some(self.f.initrds["net"].clone()),
            append: format!("console=ttyS0 panic=-1 {append}"),
        };
        self.start_from(boot, nic)
    }

    /// A diskless VM with 512 MiB.
    fn start_from(&self, boot: BootFrom, nic: Nic) -> Result<Vm, String> {
        let spec = VmSpec {
            boot,
            disks: vec![],
            writes: Writes::Watched,
            accel: self.accel,
            echo: false,
            monitor: None,
            memory_mb: 512,
            sector: 512,
            nic,
        };
        Vm::start(&spec).map_err(|e| format!("{e:#}"))
    }

    /// Checks a running VM and keeps its console as net-TAG.log.
    fn finish(&self, mut vm: Vm, tag: &str, expect: &Expect) -> Result<(), String> {
        let result = cases::check(&mut vm, expect).and_then(|()| vm.untouched());
        let log = self.f.dir.join(format!("net-{tag}.log"));
        vm.save(&log);
        result.map_err(|e| format!("{e}\n  console: {}", log.display()))
    }

    fn boot(&self, tag: &str, append: &str, nic: Nic, expect: &Expect) -> Result<(), String> {
        self.finish(self.start(append, nic)?, tag, expect)
    }
}

fn debian() -> Expect {
    marker("debian-live", "/run/live/medium", "debian", "debian")
}

fn http_ok(n: &Net) -> Result<(), String> {
    let server = n.http()?;
    let sum = servers::sha256(&n.iso()).map_err(|e| e.to_string())?;
    let url = format!("http://{HOST}:{}", server.port);
    let expect = and(
        via(debian(), "downloaded from"),
        &[
            "network: eth0 10.0.2.15/24 via 10.0.2.2 (DHCP from 10.0.2.2",
            &format!("{url}/latest.iso redirects to {url}/isos/debian-live.iso"),
            &format!("sha256 of {url}/latest.iso matches"),
            &format!("downloaded from {url}/isos/debian-live.iso into RAM"),
            "mount: /dev/loop0 /run/live/medium iso9660 ro",
        ],
        &[],
    );
    n.boot("http", &format!("iso={url}/latest.iso iso.sha256={sum}"), Nic::User, &expect)
}

fn http_wrong_sum(n: &Net) -> Result<(), String> {
    let server = n.http()?;
    let sum = servers::sha256(&n.iso()).map_err(|e| e.to_string())?;
    let url = format!("http://{HOST}:{}/isos/debian-live.iso", server.port);
    let expect = failure(&[
        &format!("{url} fails its check: iso.sha256= expects {}", "0".repeat(64)),
        &format!("the file's sha256 is {sum}"),
        "rebooting in",
    ]);
    n.boot("http-wrong-sum", &format!("iso={url} iso.sha256={}", "0".repeat(64)), Nic::User, &expect)
}

fn http_missing(n: &Net) -> Result<(), String> {
    let server = n.http()?;
    let expect =
        failure(&[&format!("the server {HOST}:{} has no /isos/nope.iso (HTTP 404 Not Found)", server.port)]);
    let append = format!("iso=http://{HOST}:{}/isos/nope.iso iso.insecure", server.port);
    n.boot("http-404", &append, Nic::User, &expect)
}

/// The iPXE script of `isoroot menu --ipxe`, run by the NIC's iPXE ROM: kernel, network
/// initramfs and ISO all from the web server.
fn ipxe_menu(n: &Net) -> Result<(), String> {
    let server = n.http()?;
    let url = format!("http://{HOST}:{}", server.port);
    let script = n.www.join("boot.ipxe");
    crate::sh::run(
        std::process::Command::new(n.isoroot)
            .args(["menu", "--ipxe"])
            .arg(&n.www)
            .args(["--url", &url, "--timeout", "1", "--append", "console=ttyS0 panic=-1", "-o"])
            .arg(&script),
    )
    .map_err(|e| e.to_string())?;
    let vm = n.start_from(BootFrom::Ipxe { script: format!("{url}/boot.ipxe") }, Nic::User)?;
    let iso = format!("{url}{}", servers::LATEST);
    let expect = and(
        via(debian(), "downloaded from"),
        &[&format!("sha256 of {iso} matches"), &format!("downloaded from {iso} into RAM")],
        &[],
    );
    n.finish(vm, "ipxe", &expect)
}

/// A server that does not say how big the ISO is: refused before any RAM is spent.
fn http_no_length(n: &Net) -> Result<(), String> {
    let server = n.http()?;
    let url = format!("http://{HOST}:{}{}", server.port, servers::NO_LENGTH);
    let expect =
        failure(&[&format!("{url}: no Content-Length: isoroot needs the size before it spends RAM")]);
    n.boot("http-no-length", &format!("iso={url} iso.insecure"), Nic::User, &expect)
}

/// rustls in the guest meets a certificate no bundled root signed (openssl s_server's
/// self-signed one) and says so.
fn https_untrusted(n: &Net) -> Result<(), String> {
    let dir = n.f.dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    crate::sh::run(
        std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
            ])
            .args(["-subj", "/CN=10.0.2.2", "-addext", "subjectAltName=IP:10.0.2.2"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    )
    .map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .current_dir(n.f.isos.as_path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("starting openssl s_server (package openssl): {e}"))?;
    let expect = failure(&[&format!("TLS with {HOST}:{port}"), "invalid peer certificate: UnknownIssuer"]);
    let result =
        n.boot("https-untrusted", &format!("iso=https://{HOST}:{port}/debian-live.iso"), Nic::User, &expect);
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// Three guests share one export at once; one of them has a static address (ip=).
fn nbd_three(n: &Net) -> Result<(), String> {
    let server = Nbdkit::start(&n.iso(), &[]).map_err(|e| e.to_string())?;
    let url = format!("nbd://{HOST}:{}/live", server.port);
    let statik = "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off";
    let vms: Vec<(String, Vm)> = ["", "", statik]
        .iter()
        .enumerate()
        .map(|(i, ip)| Ok((format!("nbd-{i}"), n.start(&format!("iso={url} {ip}"), Nic::User)?)))
        .collect::<Result<_, String>>()?;
    let how = |statik: bool| {
        if statik {
            "network: eth0 10.0.2.15/24 via 10.0.2.2 (ip=)"
        } else {
            "(DHCP from 10.0.2.2"
        }
    };
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = vms
            .into_iter()
            .enumerate()
            .map(|(i, (tag, vm))| {
                let connected = format!("{CONNECTED} {HOST}:{} export \"live\"", server.port);
                s.spawn(move || {
                    let expect = and(
                        via(debian(), "NBD export"),
                        &[
                            how(i == 2),
                            &connected,
                            "mount: /dev/nbd0 /run/live/medium iso9660 ro",
                            "@isoroot-nbd /dev/nbd0",
                        ],
                        &[],
                    );
                    n.finish(vm, &tag, &expect)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("panicked".into()))).collect()
    });
    let failed: Vec<String> = results
        .into_iter()
        .enumerate()
        .filter_map(|(i, r)| r.err().map(|e| format!("guest {i}: {e}")))
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("\n  "))
    }
}

/// The server stops while isoroot reads the export (every read is delayed a second, so
/// the stop lands mid-boot): the message names it, the kernel does not panic.
fn nbd_server_stops(n: &Net) -> Result<(), String> {
    let mut server = Nbdkit::start(&n.iso(), &["--filter=delay", "rdelay=1"]).map_err(|e| e.to_string())?;
    let mut vm = n.start(&format!("iso=nbd://{HOST}:{}/live", server.port), Nic::User)?;
    let connected = vm.wait_for_any(&[CONNECTED], Duration::from_secs(120));
    server.stop();
    if let Err(e) = connected {
        return n.finish(vm, "nbd-stops", &failure(&[CONNECTED])).map_err(|f| format!("{e}; {f}"));
    }
    let expect = failure(&[
        &format!("the NBD server {HOST}:{} went away (the connection was closed)", server.port),
        &format!("the NBD server {HOST}:{} went away during the boot", server.port),
        "rebooting in",
    ]);
    n.finish(vm, "nbd-stops", &expect)
}

fn nbd_unknown_export(n: &Net) -> Result<(), String> {
    let server = Nbdkit::start(&n.iso(), &[]).map_err(|e| e.to_string())?;
    let expect = failure(&["the server refused export \"nope\": no such export"]);
    n.boot("nbd-unknown-export", &format!("iso=nbd://{HOST}:{}/nope", server.port), Nic::User, &expect)
}

fn no_nic(n: &Net) -> Result<(), String> {
    let expect = failure(&[
        "no network: a network interface did not appear in 5 s",
        "interfaces: lo",
        "no PCI network controller is without a driver: is there a network card?",
    ]);
    n.boot("no-nic", &format!("iso=nbd://{HOST}/live iso.timeout=5"), Nic::None, &expect)
}

fn no_dhcp(n: &Net) -> Result<(), String> {
    let expect = failure(&["no DHCP server answered", "DISCOVER(s) on eth0 in"]);
    n.boot("no-dhcp", &format!("iso=nbd://{HOST}/live iso.timeout=5"), Nic::Silent, &expect)
}

pub fn run(f: &Fixtures, isoroot: &Path, accel: Accel, filter: Option<&str>) -> Vec<Outcome> {
    let tests: [(&str, Test); 11] = [
        ("network: HTTP download into RAM, redirect, sha256", http_ok),
        ("network: HTTP with a wrong sha256 stops", http_wrong_sum),
        ("network: HTTP 404 says what the server lacks", http_missing),
        ("network: HTTP without a Content-Length is refused", http_no_length),
        ("network: HTTPS with an untrusted certificate stops", https_untrusted),
        ("network: isoroot menu --ipxe, run by iPXE", ipxe_menu),
        ("network: NBD, three guests on one export at once", nbd_three),
        ("network: NBD server stopped mid-boot", nbd_server_stops),
        ("network: NBD export unknown to the server", nbd_unknown_export),
        ("network: no network card", no_nic),
        ("network: a link without a DHCP server", no_dhcp),
    ];
    let www = match www(f) {
        Ok(w) => w,
        Err(e) => {
            println!("FAILED network: the server's folder: {e}");
            let result = Err(format!("making the web server's folder: {e}"));
            return vec![Outcome::new("network: the server's folder", result, 0.0)];
        }
    };
    let n = Net { f, isoroot, accel, www };
    tests
        .iter()
        .filter(|(name, _)| filter.is_none_or(|s| name.contains(s)))
        .map(|(name, test)| {
            let start = Instant::now();
            let result = test(&n);
            let secs = start.elapsed().as_secs_f64();
            match &result {
                Ok(()) => println!("ok     {name} ({secs:.1} s)"),
                Err(e) => println!("FAILED {name} ({secs:.1} s): {e}"),
            }
            Outcome::new(name, result, secs)
        })
        .collect()
}
