//! `cargo xtask build|test|demo`. Each installs the Debian packages it needs (as root, with
//! apt-get), so that a fresh Debian 12 machine with Rust needs nothing else.

use anyhow::{bail, Context, Result};
use isoroot_tests::{
    cases, fixtures, initramfs_checks, inspect_checks, install_checks, menu_checks, net_cases, qemu, sh::run,
    target, verify_checks,
};
use std::path::PathBuf;
use std::process::Command;

/// What the build and the tests need: libkmod and libclang for the host tool (the `kmod`
/// crate generates its bindings), the rest for fixtures and boots.
const PACKAGES: &[&str] = &[
    "build-essential",
    "pkg-config",
    "libkmod-dev",
    "libclang-dev",
    "linux-image-amd64",
    "qemu-system-x86",
    // qemu-img: the tests' write-watching overlays.
    "qemu-utils",
    "busybox-static",
    "squashfs-tools",
    "xorriso",
    "e2fsprogs",
    "dosfstools",
    "mtools",
    "fdisk",
    "exfatprogs",
    "ntfs-3g",
    "exfat-fuse",
    "erofs-utils",
    "file",
    // Third-party initrds for the combined and handoff boots, and their repacking.
    "initramfs-tools",
    "live-boot",
    "live-boot-initramfs-tools",
    "dracut-core",
    "dracut-live",
    "cpio",
    "xz-utils",
    "zstd",
    // casper's and archiso's initrds, built from ../shared/third-party: udev and dmsetup
    // go into them (bash, kmod and util-linux are always there).
    "udev",
    "dmsetup",
    // Boot loaders and firmware for the `isoroot menu` tests.
    "grub-pc-bin",
    "grub-efi-amd64-bin",
    "grub2-common",
    "ovmf",
    "systemd-boot-efi",
    // The benchmark's Debian root.
    "debootstrap",
    // `isoroot verify` checks signatures with gpgv; the tests make keys with gpg.
    "gpgv",
    "gpg",
    "gpg-agent",
    // The network boots' NBD server, a TLS server with a self-signed certificate, and the
    // NIC's iPXE ROM.
    "nbdkit",
    "openssl",
    "ipxe-qemu",
];

const INIT_TARGET: &str = "x86_64-unknown-linux-gnu";

fn usage() -> ! {
    eprintln!(
        "usage: cargo xtask <command>\n\
         \n  build          build isoroot (host tool) and isoroot-init (static)\
         \n  test [FILTER]  unit tests, then the QEMU boot tests (names containing FILTER)\
         \n  demo           boot a sample debian-live ISO from an ext4 disk in QEMU\
         \n  fuzz [SECS]    every fuzz target for SECS seconds (default 60), two at a time\
         \n  deps           install the Debian packages the above need"
    );
    std::process::exit(2)
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn deps() -> Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages: {}\nrun as root: apt-get install {}",
            missing.join(" "),
            missing.join(" ")
        );
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    let mut install: Vec<String> = missing.iter().map(|p| p.to_string()).collect();
    if missing.contains(&"qemu-system-x86") {
        // A machine image may carry a newer qemu-utils (from backports) than Debian 12's
        // qemu-system-x86 can sit beside (it breaks qemu-system-common < 8): take the one
        // of the same version, even if that is a downgrade.
        install.retain(|p| p != "qemu-utils");
        install.push(format!("qemu-utils={}", candidate("qemu-system-x86")?));
    }
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends", "--allow-downgrades"])
        .args(&install)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}

/// The version apt would install of `pkg`.
fn candidate(pkg: &str) -> Result<String> {
    let out = Command::new("apt-cache").args(["show", "--no-all-versions", pkg]).output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .map(str::to_string)
        .with_context(|| format!("apt-cache knows no version of {pkg}"))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Builds both binaries; returns (isoroot, isoroot-init).
fn build() -> Result<(PathBuf, PathBuf)> {
    let status = cargo().args(["build", "--release", "-p", "isoroot"]).status()?;
    if !status.success() {
        bail!("building isoroot failed");
    }
    // Static and non-PIE so that `file` says "statically linked"; set for this target only,
    // so build scripts (run on the host) are unaffected.
    let status = cargo()
        .args(["build", "--release", "-p", "isoroot-init", "--target", INIT_TARGET])
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static -C relocation-model=static",
        )
        .status()?;
    if !status.success() {
        bail!("building isoroot-init failed");
    }
    let init = target().join(INIT_TARGET).join("release/isoroot-init");
    let file = run(Command::new("file").arg(&init))?;
    let described = String::from_utf8_lossy(&file.stdout);
    if !described.contains("statically linked") {
        bail!("{} is not statically linked: {described}", init.display());
    }
    Ok((target().join("release/isoroot"), init))
}

fn test(filter: Option<&str>) -> Result<()> {
    deps()?;
    let status = cargo().args(["test", "--workspace", "--quiet"]).status()?;
    if !status.success() {
        bail!("unit tests failed");
    }
    let (isoroot, init) = build()?;
    let f = fixtures::build(&isoroot, &init).context("building the fixtures")?;
    let accel = qemu::detect_accel(&f.kernel);
    println!("QEMU boot tests: kernel {} ({:?}), fixtures in {}", f.kver, accel, f.dir.display());
    let mut checks = inspect_checks::run(&isoroot, &f, filter);
    checks.extend(verify_checks::run(&isoroot, &f, filter));
    checks.extend(menu_checks::run(&isoroot, &f, filter));
    checks.extend(initramfs_checks::run(&isoroot, &init, &f, filter));
    checks.extend(install_checks::run(&isoroot, &init, &f, filter));
    let mut boots = cases::run(&f, accel, filter, 2);
    boots.extend(net_cases::run(&f, &isoroot, accel, filter));
    let failures = |o: &[cases::Outcome]| o.iter().filter(|o| o.result.is_err()).count();
    let skips = |o: &[cases::Outcome]| o.iter().filter(|o| o.skipped.is_some()).count();
    let passes = |o: &[cases::Outcome]| o.len() - failures(o) - skips(o);
    let total: f64 = boots.iter().map(|o| o.secs).sum();
    println!("QEMU boot tests took {total:.0} s of VM time");
    println!(
        "host checks (isoroot on fixture files): {} passed, {} failed",
        passes(&checks),
        failures(&checks)
    );
    println!("QEMU boots: {} passed, {} failed, {} skipped", passes(&boots), failures(&boots), skips(&boots));
    let outcomes: Vec<cases::Outcome> = checks.into_iter().chain(boots).collect();
    let failed = failures(&outcomes);
    // The plain closing line that CI reads; a skipped test is not counted as passed.
    println!("qemu: {} passed, {failed} failed", passes(&outcomes));
    if outcomes.len() == skips(&outcomes) {
        bail!("no case matches {filter:?} that can run here");
    }
    if failed > 0 {
        bail!("{failed} test(s) failed");
    }
    Ok(())
}

fn bench(arg: Option<&str>) -> Result<()> {
    let smoke = match arg {
        None => false,
        Some("--smoke") => true,
        Some(other) => bail!("bench takes --smoke or nothing, not {other:?}"),
    };
    deps()?;
    let (isoroot, init) = build()?;
    let (kernel, _) = fixtures::kernel()?;
    isoroot_tests::bench::run(&isoroot, &init, qemu::detect_accel(&kernel), smoke)
}

/// The fuzz targets, and the longest input each gets: the image readers a whole MiB, since
/// a crafted disk puts what they follow far from the start.
const FUZZ_TARGETS: &[(&str, usize)] = &[
    ("cmdline", 4096),
    ("map_file", 4096),
    ("profiles", 4096),
    ("nbd_handshake", 4096),
    ("superblock", 1 << 20),
    ("iso9660", 1 << 20),
    ("filemap", 1 << 20),
    ("modindex", 1 << 20),
    ("bootcfg", 64 << 10),
];

/// What `cargo fuzz` passes rustc, without a sanitizer (that needs a nightly toolchain):
/// libFuzzer's coverage hooks, `cfg(fuzzing)`, and overflow checks and debug assertions
/// on, so that an arithmetic overflow on hostile input is a crash here, not a wrapped
/// length in the init.
const FUZZ_RUSTFLAGS: &str = "-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
     -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
     -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Coverflow-checks=on -Cdebug-assertions=on";

/// Runs every fuzz target for `secs` seconds from its committed corpus (new inputs go to
/// a scratch folder, so the repository is not written), two at a time; a crash fails it.
fn fuzz(secs: Option<&str>) -> Result<()> {
    let secs: u64 = secs.unwrap_or("60").parse().context("fuzz takes a number of seconds")?;
    let dir = isoroot_tests::root().join("fuzz");
    let status = cargo()
        // With --target, RUSTFLAGS reach the targets and not the build scripts.
        .args(["build", "--release", "--bins", "--target", INIT_TARGET, "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("RUSTFLAGS", FUZZ_RUSTFLAGS)
        .status()?;
    if !status.success() {
        bail!("building the fuzz targets failed");
    }
    let work = target().join("fuzz-smoke");
    let _ = std::fs::remove_dir_all(&work);
    let mut failed = Vec::new();
    for pair in FUZZ_TARGETS.chunks(2) {
        let mut running = Vec::new();
        for &(name, max_len) in pair {
            let scratch = work.join(name);
            std::fs::create_dir_all(&scratch)?;
            let seeds = Some(dir.join("corpus").join(name)).filter(|d| d.is_dir());
            let child = Command::new(dir.join("target").join(INIT_TARGET).join("release").join(name))
                .arg(&scratch)
                .args(seeds)
                .arg(format!("-max_total_time={secs}"))
                .arg(format!("-max_len={max_len}"))
                .arg("-rss_limit_mb=2048")
                .arg(format!("-artifact_prefix={}/", scratch.display()))
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(work.join(format!("{name}.log")))?)
                .spawn()
                .with_context(|| format!("starting fuzz target {name}"))?;
            running.push((name, child));
        }
        for (name, mut child) in running {
            let ok = child.wait()?.success();
            let log = std::fs::read_to_string(work.join(format!("{name}.log"))).unwrap_or_default();
            let runs = log.lines().rev().find_map(|l| l.strip_prefix("Done ")).unwrap_or("?");
            if ok {
                println!("ok     fuzz {name} ({secs} s: {runs})");
            } else {
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                println!("FAILED fuzz {name}: see {}/{name}.log\n{tail}", work.display());
                failed.push(name);
            }
        }
    }
    println!("fuzz: {} passed, {} failed", FUZZ_TARGETS.len() - failed.len(), failed.len());
    if !failed.is_empty() {
        bail!("fuzz targets crashed: {}", failed.join(", "));
    }
    Ok(())
}

fn demo() -> Result<()> {
    deps()?;
    let (isoroot, init) = build()?;
    let f = fixtures::demo(&isoroot, &init)?;
    let accel = qemu::detect_accel(&f.kernel);
    println!(
        "\nBooting {} ({accel:?}) with isoroot's initramfs; the disk is an ext4 image holding \
         /isos/debian-live.iso.\n",
        f.kver
    );
    cases::demo(&f, accel).map_err(|e| anyhow::anyhow!(e))?;
    println!("\nThe live root came up: the ISOROOT-OK line above was printed by its /sbin/init.");
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("build") => {
            deps()?;
            let (isoroot, init) = build()?;
            println!("{}\n{}", isoroot.display(), init.display());
            Ok(())
        }
        Some("test") => test(args.get(1).map(String::as_str)),
        Some("demo") => demo(),
        Some("bench") => bench(args.get(1).map(String::as_str)),
        Some("deps") => deps(),
        Some("fuzz") => fuzz(args.get(1).map(String::as_str)),
        _ => usage(),
    }
}
