//! `cargo xtask bench`: isoroot against live-boot's `findiso=` and dracut's
//! `iso-scan/filename=` on the same ISO, disk, kernel and QEMU settings; one table, printed
//! and written to docs/bench.md with an SVG timeline. `--smoke` boots each row-1 entry once.

mod fixtures;
mod svg;

use crate::qemu::{Accel, BootFrom, Nic, Vm, VmSpec, Writes};
use crate::servers::{self, HttpServer, Nbdkit};
use anyhow::{bail, Context, Result};
use fixtures::{BenchFixtures, ARCH_ISO, DISK_UUID, LIVEOS_ISO, LIVEOS_LABEL, LIVE_ISO};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// What one boot's console said.
#[derive(Debug, Default)]
struct Boot {
    /// /proc/uptime when the root's init started.
    uptime: f64,
    /// When the kernel ran the initramfs' init (its log record "Run /init as init process").
    initramfs_start: Option<f64>,
    timings: Option<serde_json::Value>,
    read_mib_s: Option<f64>,
}

fn parse(console: &str) -> Result<Boot> {
    let mut b = Boot::default();
    for line in console.lines() {
        if let Some(v) = line.strip_prefix("BENCH-INITRAMFS-START ") {
            b.initramfs_start = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("BENCH-UPTIME ") {
            b.uptime = v.trim().parse().context("BENCH-UPTIME")?;
        } else if let Some(v) = line.strip_prefix("BENCH-TIMINGS ") {
            b.timings = Some(serde_json::from_str(v).context("BENCH-TIMINGS")?);
        } else if let Some(v) = line.strip_prefix("BENCH-READ ") {
            b.read_mib_s = v.split_whitespace().rev().nth(1).and_then(|n| n.parse().ok());
        }
    }
    Ok(b)
}

struct Entry {
    name: &'static str,
    initrd: PathBuf,
    append: String,
    nic: Nic,
}

impl Entry {
    /// A boot from the benchmark's disk, without a network card.
    fn local(name: &'static str, initrd: &Path, append: String) -> Entry {
        Entry { name, initrd: initrd.to_path_buf(), append, nic: Nic::None }
    }
}

struct Bench<'a> {
    f: &'a BenchFixtures,
    accel: Accel,
    logs: PathBuf,
}

impl Bench<'_> {
    /// One boot; its console is kept as logs/NAME-TAG.log.
    fn boot(&self, e: &Entry, extra: &str, tag: &str) -> Result<(Boot, String)> {
        let spec = VmSpec {
            boot: BootFrom::Kernel {
                kernel: self.f.kernel.clone(),
                initrd: Some(e.initrd.clone()),
                // quiet, as distributions boot: the serial console is slow under emulation.
                append: format!("console=ttyS0 panic=-1 quiet {} {extra}", e.append).trim_end().to_string(),
            },
            disks: vec![self.f.disk.clone()],
            writes: Writes::Refused,
            accel: self.accel,
            echo: false,
            monitor: None,
            memory_mb: 1536,
            sector: 512,
            nic: e.nic,
        };
        let mut vm = Vm::start(&spec)?;
        let done = vm.wait_for_any(&["BENCH-DONE", "Startup finished in"], BOOT_TIMEOUT);
        if done.as_deref() == Ok("Startup finished in") {
            let _ = vm.wait_for_any(&["reboot: Power down"], Duration::from_secs(60));
        }
        let slug = format!("{}-{tag}", e.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
        let log = self.logs.join(format!("{slug}.log"));
        vm.save(&log);
        done.map_err(|why| anyhow::anyhow!("{}: {why}; console in {}", e.name, log.display()))?;
        Ok((parse(&vm.console())?, vm.console()))
    }

    fn boots(&self, e: &Entry, extra: &str, n: usize, what: &str) -> Result<Vec<Boot>> {
        (0..n)
            .map(|i| {
                let (b, _) = self.boot(e, extra, &format!("{what}{i}"))?;
                eprintln!(
                    "bench: {} #{}: {:.2} s{}",
                    e.name,
                    i + 1,
                    b.uptime,
                    b.read_mib_s.map(|r| format!(", {r:.1} MiB/s")).unwrap_or_default()
                );
                Ok(b)
            })
            .collect()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

/// Seconds for one run of a command.
fn timed(c: &mut Command) -> Result<f64> {
    let start = Instant::now();
    crate::sh::run(c)?;
    Ok(start.elapsed().as_secs_f64())
}

/// One table row: what, value, the ratio, the target, whether it is met.
struct Row {
    group: &'static str,
    what: String,
    value: String,
    ratio: String,
    target: String,
    met: Option<bool>,
}

fn row(
    group: &'static str,
    what: &str,
    value: String,
    ratio: String,
    target: &str,
    met: Option<bool>,
) -> Row {
    Row { group, what: what.into(), value, ratio, target: target.into(), met }
}

fn table(rows: &[Row]) -> String {
    let mut s = String::from("| row | measure | value | ratio | target | met |\n|---|---|---|---|---|---|\n");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let _ =
            writeln!(s, "| {} | {} | {} | {} | {} | {met} |", r.group, r.what, r.value, r.ratio, r.target);
    }
    s
}

pub fn run(isoroot: &Path, init: &Path, accel: Accel, smoke: bool) -> Result<()> {
    let f = fixtures::build(isoroot, init)?;
    let logs = f.dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let b = Bench { f: &f, accel, logs };
    let iso = format!("iso=UUID={DISK_UUID}:{LIVE_ISO}");
    let mut entries = vec![
        Entry::local("isoroot standalone (loop)", &f.isoroot, format!("{iso} iso.attach=loop")),
        Entry::local("isoroot, extent hints (dm-linear)", &f.isoroot, f.hints.clone()),
        Entry::local("isoroot combined (ISO's initrd + addon)", &f.combined, format!("rdinit=/isoroot/init {iso}")),
        Entry::local("live-boot findiso= (ISO's initrd)", &f.liveboot, format!("boot=live findiso={LIVE_ISO}")),
        Entry::local(
            "dracut iso-scan/filename=",
            &f.dracut,
            format!(
                "root=live:CDLABEL={LIVEOS_LABEL} rd.live.image rd.live.overlay.overlayfs=1 iso-scan/filename={LIVEOS_ISO}"
            ),
        ),
    ];
    // archiso finds its ISO on a disk itself (img_dev=, img_loop=): a peer row where
    // Arch's initrd could be built.
    match &f.archiso {
        Some(initrd) => entries.push(Entry::local(
            "archiso img_dev= img_loop= (Arch's mkinitcpio initrd)",
            initrd,
            // copytoram=n: archiso's default copies the root to RAM when the guest has 2 GiB more
            // than it; the row measures booting from the disk at any guest size.
            format!("img_dev=UUID={DISK_UUID} img_loop={ARCH_ISO} archisobasedir=arch copytoram=n"),
        )),
        None => println!("bench: no archiso row: ../shared/third-party/ (its sources) is not there"),
    }
    let n = if smoke { 1 } else { 5 };
    let mut rows = Vec::new();
    let mut all_boots: Vec<(&str, Vec<Boot>)> = Vec::new();
    for e in &entries {
        all_boots.push((e.name, b.boots(e, "init=/bench-init", n, "time")?));
    }
    let medians: Vec<f64> =
        all_boots.iter().map(|(_, v)| median(v.iter().map(|b| b.uptime).collect())).collect();
    let reference = medians[0];
    for (i, ((name, boots), m)) in all_boots.iter().zip(&medians).enumerate() {
        let spread =
            boots.iter().map(|b| b.uptime).fold((f64::MAX, 0f64), |(lo, hi), u| (lo.min(u), hi.max(u)));
        let peer = i >= 3;
        let (target, met) = if peer { ("≥ 5× isoroot", Some(m / reference >= 5.0)) } else { ("", None) };
        rows.push(row(
            "1 kernel → root's init",
            name,
            format!("{m:.2} s (n={}, {:.2}–{:.2})", boots.len(), spread.0, spread.1),
            format!("{:.1}× isoroot standalone", m / reference),
            target,
            met,
        ));
    }
    for ((name, boots), m) in all_boots.iter().zip(&medians) {
        let share = median(boots.iter().filter_map(|b| Some(b.uptime - b.initramfs_start?)).collect());
        let reference =
            median(all_boots[0].1.iter().filter_map(|b| Some(b.uptime - b.initramfs_start?)).collect());
        rows.push(row(
            "1 of which the initramfs (Run /init → root's init)",
            name,
            format!("{share:.2} s of {m:.2} s"),
            format!("{:.1}× isoroot standalone", share / reference),
            "",
            None,
        ));
    }
    let mut sizes = vec![
        ("isoroot standalone initramfs", size(&f.isoroot)),
        ("isoroot addon (--no-modules)", size(&f.addon)),
        ("ISO's initrd + isoroot addon", size(&f.combined)),
        ("live-boot: the ISO's initrd", size(&f.liveboot)),
        ("dracut initrd (dmsquash-live)", size(&f.dracut)),
    ];
    if let Some(archiso) = &f.archiso {
        sizes.push(("archiso: Arch's mkinitcpio initrd", size(archiso)));
    }
    for (i, (what, bytes)) in sizes.iter().enumerate() {
        let peer = i >= 3;
        let ratio = format!("{:.1}× isoroot standalone", *bytes as f64 / sizes[0].1 as f64);
        let (target, met) =
            if peer { ("≥ 10× isoroot", Some(*bytes >= 10 * sizes[0].1)) } else { ("", None) };
        rows.push(row("2 initramfs size (compressed)", what, mib(*bytes), ratio, target, met));
    }
    if !smoke {
        build_rows(&f, isoroot, init, &mut rows)?;
        read_rows(&b, &entries, &iso, &mut rows)?;
    }
    let peak = all_boots[..3]
        .iter()
        .flat_map(|(_, v)| v.iter())
        .filter_map(|b| b.timings.as_ref()?.get("vmhwm_kib")?.as_u64())
        .max()
        .context("no isoroot boot reported its peak memory")?;
    rows.push(row(
        "5 peak memory of the init",
        "isoroot-init VmHWM, before exec",
        format!("{:.1} MiB", peak as f64 / 1024.0),
        String::new(),
        "≤ 8 MiB",
        Some(peak <= 8 * 1024),
    ));
    network_rows(&b, (entries[1].name, &all_boots[1].1), n, smoke, &mut rows)?;
    let analyze = analyze(&b, &entries[1])?;
    let text = table(&rows);
    println!("\n{text}\nsystemd-analyze in the booted root (isoroot, extent hints): {analyze}");
    if smoke {
        return Ok(());
    }
    let timeline = all_boots[1]
        .1
        .iter()
        .min_by(|a, c| (a.uptime - medians[1]).abs().total_cmp(&(c.uptime - medians[1]).abs()));
    let svg_text = svg::timeline(
        timeline.context("no hints boot")?.timings.as_ref(),
        timeline.map_or(0.0, |t| t.uptime),
        &entries.iter().map(|e| e.name).zip(medians.iter().copied()).collect::<Vec<_>>(),
    );
    let docs = crate::root().join("docs");
    std::fs::write(docs.join("bench.svg"), svg_text)?;
    let notes = std::fs::read_to_string(docs.join("bench-notes.md")).unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let md = format!(
        "# Benchmark\n\nWritten by `cargo xtask bench` (do not edit: edit docs/bench-notes.md). Kernel {} under QEMU \
         ({accel:?}, {cores} host cores, 1.5 GiB guest), one ext4 disk holding the ISOs; root: Debian 12 minbase with systemd and udev, \
         squashfs (zstd) of {}.\n\n{text}\n![one isoroot boot, phase by phase, beside the totals](bench.svg)\n\n\
         `systemd-analyze` in the root booted through isoroot (extent hints, the root's own systemd):\n\n```\n{analyze}\n```\n\n{notes}",
        f.kver,
        mib(f.root_bytes)
    );
    std::fs::write(docs.join("bench.md"), md)?;
    println!("wrote docs/bench.md and docs/bench.svg");
    Ok(())
}

fn used_mib(boots: &[Boot]) -> f64 {
    median(
        boots
            .iter()
            .filter_map(|b| b.timings.as_ref()?.get("mem_used_kib")?.as_f64())
            .map(|k| k / 1024.0)
            .collect(),
    )
}

/// Rows 6 and 7: the same ISO from a web server (into RAM) and from an NBD export beside
/// the local disk's boot; the guest's RAM in use when the root's init starts; and (not with
/// `--smoke`) three guests booting at once from one nbdkit against one alone.
fn network_rows(b: &Bench, local: (&str, &[Boot]), n: usize, smoke: bool, rows: &mut Vec<Row>) -> Result<()> {
    let f = b.f;
    let iso = f.www.join(&LIVE_ISO[1..]);
    let http = HttpServer::start(&f.www)?;
    let nbd = Nbdkit::start(&iso, &[])?;
    let sum = servers::sha256(&iso)?;
    let entries = [
        Entry {
            name: "isoroot over HTTP, into RAM",
            initrd: f.isoroot_net.clone(),
            append: format!("iso=http://10.0.2.2:{}{LIVE_ISO} iso.sha256={sum}", http.port),
            nic: Nic::User,
        },
        Entry {
            name: "isoroot over NBD",
            initrd: f.isoroot_net.clone(),
            append: format!("iso=nbd://10.0.2.2:{}/live", nbd.port),
            nic: Nic::User,
        },
    ];
    let boots: Vec<Vec<Boot>> =
        entries.iter().map(|e| b.boots(e, "init=/bench-init", n, "time")).collect::<Result<_>>()?;
    let reference = median(local.1.iter().map(|b| b.uptime).collect());
    let runs = [(local.0, local.1)]
        .into_iter()
        .chain(entries.iter().map(|e| e.name).zip(boots.iter().map(Vec::as_slice)));
    let g = "6 the same ISO: local disk, HTTP, NBD (kernel → root's init)";
    let ram = "6 guest RAM in use when the root's init starts";
    for (name, boots) in runs.clone() {
        let m = median(boots.iter().map(|b| b.uptime).collect());
        let ratio = format!("{:.2}× local disk", m / reference);
        rows.push(row(g, name, format!("{m:.2} s (n={})", boots.len()), ratio, "", None));
    }
    for (name, boots) in runs {
        rows.push(row(ram, name, format!("{:.0} MiB", used_mib(boots)), String::new(), "", None));
    }
    if smoke {
        return Ok(());
    }
    // Three guests at once, each on its own thread, all reading the one export.
    let over_nbd = &entries[1];
    let together: Vec<Boot> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|i| s.spawn(move || b.boot(over_nbd, "init=/bench-init", &format!("together{i}"))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a boot thread panicked"))?.map(|(b, _)| b))
            .collect::<Result<_>>()
    })?;
    let alone = median(boots[1].iter().map(|b| b.uptime).collect());
    let at_once = median(together.iter().map(|b| b.uptime).collect());
    let g = "7 guests on one NBD server (kernel → root's init)";
    rows.push(row(g, "one guest", format!("{alone:.2} s"), String::new(), "", None));
    rows.push(row(
        g,
        "three guests at once (median)",
        format!("{at_once:.2} s"),
        format!("{:.2}× one guest", at_once / alone),
        "",
        None,
    ));
    Ok(())
}

/// Row 3: building the initramfs for the same kernel, median of 3.
fn build_rows(f: &BenchFixtures, isoroot: &Path, init: &Path, rows: &mut Vec<Row>) -> Result<()> {
    let out = f.dir.join("build-test.img");
    let kver = f.kver.as_str();
    let measure = |c: &mut dyn FnMut() -> Command| -> Result<f64> {
        Ok(median((0..3).map(|_| timed(&mut c())).collect::<Result<Vec<f64>>>()?))
    };
    let ours = measure(&mut || {
        let mut c = Command::new(isoroot);
        c.args(["mkinitramfs", "-k", kver, "--init"]).arg(init).arg("-o").arg(&out);
        c
    })?;
    let dracut = measure(&mut || {
        let mut c = Command::new("dracut");
        c.args(["--quiet", "--force", "--no-hostonly", "--no-hostonly-cmdline", "--add", "dmsquash-live"])
            .arg(&out)
            .arg(kver);
        c
    })?;
    let itools = measure(&mut || {
        let mut c = Command::new("mkinitramfs");
        c.arg("-o").arg(&out).arg(kver);
        c
    })?;
    let _ = std::fs::remove_file(&out);
    let g = "3 time to build (median of 3)";
    rows.push(row(g, "isoroot mkinitramfs", format!("{ours:.2} s"), String::new(), "", None));
    rows.push(row(
        g,
        "dracut",
        format!("{dracut:.1} s"),
        format!("{:.0}× isoroot", dracut / ours),
        "≥ 20× isoroot",
        Some(dracut / ours >= 20.0),
    ));
    rows.push(row(
        g,
        "initramfs-tools mkinitramfs",
        format!("{itools:.1} s"),
        format!("{:.0}× isoroot", itools / ours),
        "",
        None,
    ));
    Ok(())
}

/// Row 4: reading the whole root image inside the booted guest, median of 3.
fn read_rows(b: &Bench, entries: &[Entry], iso: &str, rows: &mut Vec<Row>) -> Result<()> {
    let bytes = b.f.root_bytes;
    // On the dm-linear path loop0 is the root image on /dev/mapper/…; on the loop path
    // loop0 is the ISO file and loop1 the root image on it.
    let runs = [
        ("dm-linear (extent hints)", &entries[1], "bench.read=/dev/loop0".to_string()),
        ("loop", &entries[0], "bench.read=/dev/loop1".to_string()),
        ("raw disk (the VM's limit)", &entries[1], format!("bench.read=/dev/vda:{bytes}")),
    ];
    let mut rates = Vec::new();
    for (what, e, read) in runs {
        let boots = b.boots(e, &format!("init=/bench-init {read}"), 3, "read")?;
        let rate = median(boots.iter().filter_map(|b| b.read_mib_s).collect());
        if rate.is_nan() {
            bail!("no read rate from the {what} boots ({iso})");
        }
        rates.push((what, rate));
    }
    let raw = rates[2].1;
    let g = "4 sequential read of the root image";
    let targets = [("≥ 95 % of raw", 0.95), ("≥ 80 % of raw", 0.80)];
    for (i, (what, rate)) in rates.iter().enumerate() {
        let (target, met) = match targets.get(i) {
            Some((t, min)) => (*t, Some(rate / raw >= *min)),
            None => ("", None),
        };
        rows.push(row(
            g,
            what,
            format!("{rate:.1} MiB/s"),
            format!("{:.0} % of raw", rate / raw * 100.0),
            target,
            met,
        ));
    }
    Ok(())
}

/// Boots the root's own systemd through isoroot and returns systemd-analyze's line.
fn analyze(b: &Bench, e: &Entry) -> Result<String> {
    let (_, console) = b.boot(e, "bench.analyze", "systemd")?;
    console
        .lines()
        .find(|l| l.contains("Startup finished in"))
        .map(|l| l.trim().to_string())
        .context("no systemd-analyze line")
}
