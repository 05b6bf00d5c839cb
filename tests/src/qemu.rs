//! Booting a VM and reading its serial console.

use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Kvm,
    Tcg,
}

/// KVM when a trial boot under it reaches the kernel's "no root" panic quickly; the CI
/// machines have a /dev/kvm that aborts or hangs, so its existence proves nothing.
pub fn detect_accel(kernel: &Path) -> Accel {
    if !Path::new("/dev/kvm").exists() {
        return Accel::Tcg;
    }
    let spec = VmSpec {
        boot: BootFrom::Kernel {
            kernel: kernel.to_path_buf(),
            initrd: None,
            append: "console=ttyS0 panic=-1".into(),
        },
        disks: vec![],
        writes: Writes::Refused,
        accel: Accel::Kvm,
        echo: false,
        monitor: None,
        memory_mb: 512,
        sector: 512,
        nic: Nic::None,
    };
    let works = Vm::start(&spec)
        .is_ok_and(|mut vm| vm.wait_for_any(&["Kernel panic"], Duration::from_secs(15)).is_ok());
    if works {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

/// How the VM starts.
pub enum BootFrom {
    /// QEMU loads the kernel and initrd itself.
    Kernel { kernel: PathBuf, initrd: Option<PathBuf>, append: String },
    /// SeaBIOS boots the first disk.
    Bios,
    /// OVMF (UEFI) boots the first disk; its variables live in this copy of OVMF_VARS, or,
    /// with `secure`, of [`OVMF_VARS_MS`] on a machine with SMM and Secure Boot on.
    Uefi { vars: PathBuf, secure: bool },
    /// SeaBIOS boots the NIC's iPXE ROM (package ipxe-qemu), which runs this script (a URL,
    /// handed out by QEMU's DHCP as the boot file).
    Ipxe { script: String },
}

/// Debian's OVMF (package ovmf).
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/// OVMF built for Secure Boot (it stops without SMM), and variables with Microsoft's keys
/// enrolled and Secure Boot on, as a PC ships.
const OVMF_CODE_SECURE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
pub const OVMF_VARS_MS: &str = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd";

/// The guest's network card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nic {
    None,
    /// QEMU's user networking: DHCP gives 10.0.2.15, and the host's 127.0.0.1 is 10.0.2.2.
    User,
    /// A link with carrier that carries nothing back: frames go to a UDP port on the host
    /// that nobody reads.
    Silent,
}

/// What becomes of the guest's writes to its disks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writes {
    /// Read-only disks: a write fails in the guest (the benchmark, the KVM probe).
    Refused,
    /// Written to the images (persistence cases, on copies of their own).
    Kept,
    /// Writable, through a qcow2 overlay over each image that [`Vm::untouched`] then reads:
    /// a write is not refused (which could hide it) but seen, and the image stays as it was.
    Watched,
}

pub struct VmSpec {
    pub boot: BootFrom,
    /// Raw images, attached as virtio disks in this order (vda, vdb, …).
    pub disks: Vec<PathBuf>,
    pub writes: Writes,
    pub accel: Accel,
    /// Copy the console to this terminal as it arrives.
    pub echo: bool,
    /// A QEMU monitor socket, for keys and hot-plugged disks.
    pub monitor: Option<PathBuf>,
    pub memory_mb: u32,
    pub nic: Nic,
    /// The disks' logical and physical sector size: 512, or 4096 for a 4Kn disk.
    pub sector: u32,
}

pub struct Vm {
    child: Child,
    console: Arc<Mutex<String>>,
    monitor: Option<PathBuf>,
    /// (image, its overlay) for [`Writes::Watched`] disks.
    overlays: Vec<(PathBuf, PathBuf)>,
}

/// A qcow2 overlay over `image`, named after it and this VM, in the temporary directory.
fn overlay(image: &Path) -> Result<PathBuf> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = image.file_name().unwrap_or_default().to_string_lossy();
    let path = std::env::temp_dir().join(format!("isoroot-{}-{n}-{name}.qcow2", std::process::id()));
    let image = std::path::absolute(image)?;
    crate::sh::run(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&image)
            .arg(&path),
    )?;
    Ok(path)
}

impl Vm {
    pub fn start(spec: &VmSpec) -> Result<Vm> {
        let mut c = Command::new("qemu-system-x86_64");
        match spec.accel {
            Accel::Kvm => c.args(["-accel", "kvm", "-cpu", "host"]),
            Accel::Tcg => c.args(["-accel", "tcg"]),
        };
        c.arg("-m").arg(spec.memory_mb.to_string());
        c.args(["-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot"]);
        match &spec.boot {
            BootFrom::Kernel { kernel, initrd, append } => {
                c.arg("-kernel").arg(kernel).arg("-append").arg(append);
                if let Some(initrd) = initrd {
                    c.arg("-initrd").arg(initrd);
                }
            }
            BootFrom::Bios => {}
            BootFrom::Ipxe { .. } => {
                c.args(["-boot", "n"]);
            }
            BootFrom::Uefi { vars, secure } => {
                let code = if *secure {
                    c.args([
                        "-machine",
                        "q35,smm=on",
                        "-global",
                        "driver=cfi.pflash01,property=secure,value=on",
                    ]);
                    OVMF_CODE_SECURE
                } else {
                    OVMF_CODE
                };
                c.arg("-drive").arg(format!("if=pflash,format=raw,readonly=on,file={code}"));
                c.arg("-drive").arg(format!("if=pflash,format=raw,file={}", vars.display()));
            }
        }
        let mut overlays = Vec::new();
        for (i, d) in spec.disks.iter().enumerate() {
            let drive = match spec.writes {
                Writes::Refused => format!("file={},format=raw,if=virtio,readonly=on", d.display()),
                Writes::Kept => format!("file={},format=raw,if=virtio", d.display()),
                Writes::Watched => {
                    let top = overlay(d)?;
                    // writethrough: each write's qcow2 metadata is on disk before the guest
                    // hears it is done, so a VM killed afterwards still shows it.
                    let drive = format!("file={},format=qcow2,if=virtio,cache=writethrough", top.display());
                    overlays.push((d.clone(), top));
                    drive
                }
            };
            if spec.sector == 512 {
                c.arg("-drive").arg(drive);
            } else {
                let id = format!("disk{i}");
                let drive = drive.replace("if=virtio", &format!("if=none,id={id}"));
                c.arg("-drive").arg(drive).arg("-device").arg(format!(
                    "virtio-blk-pci,drive={id},logical_block_size={0},physical_block_size={0}",
                    spec.sector
                ));
            }
        }
        let nic = match (spec.nic, &spec.boot) {
            (Nic::None, _) => None,
            (Nic::User, BootFrom::Ipxe { script }) => Some(format!("user,id=n0,bootfile={script}")),
            (Nic::User, _) => Some("user,id=n0".to_string()),
            // Port 9 (discard) on loopback: nothing listens, nothing answers.
            (Nic::Silent, _) => Some("socket,id=n0,udp=127.0.0.1:9,localaddr=127.0.0.1:0".to_string()),
        };
        if let Some(netdev) = nic {
            // virtio-rng too: TCG's CPU has no RDRAND, and TLS needs a seeded RNG.
            c.arg("-netdev").arg(netdev).args([
                "-device",
                "virtio-net-pci,netdev=n0",
                "-device",
                "virtio-rng-pci",
            ]);
        }
        if let Some(m) = &spec.monitor {
            let _ = std::fs::remove_file(m);
            c.arg("-monitor").arg(format!("unix:{},server=on,wait=off", m.display()));
        }
        // The serial console's input is a pipe the test owns (CI has no standard input, and
        // QEMU must not read the terminal's).
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().context("starting qemu-system-x86_64 (package qemu-system-x86)")?;
        let console = Arc::new(Mutex::new(String::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let console = Arc::clone(&console);
            let echo = spec.echo;
            std::thread::spawn(move || pump(stream, &console, echo));
        }
        Ok(Vm { child, console, monitor: spec.monitor.clone(), overlays })
    }

    pub fn console(&self) -> String {
        self.console.lock().unwrap().clone()
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until the console holds one of `needles`; returns it. Errors when the kernel
    /// panics, QEMU exits, or time runs out.
    pub fn wait_for_any(&mut self, needles: &[&str], timeout: Duration) -> Result<String, String> {
        let start = Instant::now();
        loop {
            let text = self.console();
            if let Some(n) = needles.iter().find(|n| text.contains(**n)) {
                return Ok(n.to_string());
            }
            if text.contains("Kernel panic") {
                return Err("the kernel panicked".into());
            }
            if !self.running() {
                // Let the readers drain what QEMU wrote last.
                std::thread::sleep(Duration::from_millis(200));
                if let Some(n) = needles.iter().find(|n| self.console().contains(**n)) {
                    return Ok(n.to_string());
                }
                return Err("QEMU exited".into());
            }
            if start.elapsed() > timeout {
                return Err(format!("nothing after {} s", timeout.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends one command to the QEMU monitor (human monitor protocol).
    pub fn monitor(&self, command: &str) -> Result<String, String> {
        use std::os::unix::net::UnixStream;
        let path = self.monitor.as_ref().ok_or("this VM has no monitor")?;
        let mut s = UnixStream::connect(path).map_err(|e| format!("connecting to the monitor: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
        writeln!(s, "{command}").map_err(|e| e.to_string())?;
        // The reply follows the greeting and the echoed command; read what comes.
        std::thread::sleep(Duration::from_millis(500));
        let mut reply = vec![0u8; 4096];
        let n = s.read(&mut reply).unwrap_or(0);
        Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
    }

    /// Types on the serial console.
    pub fn type_text(&mut self, text: &str) -> Result<(), String> {
        let input = self.child.stdin.as_mut().ok_or("no console input")?;
        input.write_all(text.as_bytes()).and_then(|()| input.flush()).map_err(|e| format!("typing: {e}"))
    }

    /// Waits for QEMU to exit by itself (the guest powered off); false on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if !self.running() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Stops the VM and says whether it wrote to any [`Writes::Watched`] disk: a byte
    /// written (even the same byte) is a cluster in the overlay, which `qemu-img map` shows
    /// at depth 0.
    pub fn untouched(&mut self) -> Result<(), String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut written = Vec::new();
        for (image, top) in &self.overlays {
            let out = crate::sh::run(Command::new("qemu-img").args(["map", "--output=json"]).arg(top))
                .map_err(|e| format!("{e:#}"))?;
            let map: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
            for e in map.as_array().into_iter().flatten().filter(|e| e["depth"] == 0 && e["present"] == true)
            {
                written.push(format!("{} bytes {}+{}", image.display(), e["start"], e["length"]));
            }
        }
        if written.is_empty() {
            Ok(())
        } else {
            Err(format!("the guest wrote to its disks, which nothing asked for: {}", written.join(", ")))
        }
    }

    pub fn save(&self, path: &Path) {
        let _ = std::fs::write(path, self.console());
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for (_, top) in &self.overlays {
            let _ = std::fs::remove_file(top);
        }
    }
}

fn pump(mut from: Box<dyn Read + Send>, to: &Mutex<String>, echo: bool) {
    let mut buf = [0u8; 4096];
    // A serial console delivers a byte at a time: a character split between two reads
    // waits here for its end instead of becoming two replacement characters.
    let mut pending = Vec::new();
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        pending.extend_from_slice(&buf[..n]);
        let keep = match std::str::from_utf8(&pending) {
            Err(e) if e.error_len().is_none() => pending.len() - e.valid_up_to(),
            _ => 0,
        };
        let done: Vec<u8> = pending.drain(..pending.len() - keep).collect();
        let text = String::from_utf8_lossy(&done).replace('\r', "");
        if echo {
            let _ = std::io::stdout().write_all(text.as_bytes());
        }
        to.lock().unwrap().push_str(&text);
    }
}
