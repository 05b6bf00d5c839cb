//! `isoroot install` on the host: nothing written without `--yes`, `--update` leaving the
//! partition table and the data partition as they were, each refusal, and a block device
//! (a loop device) as the target. The sticks it makes are booted by the QEMU cases.

use crate::cases::Outcome;
use crate::fixtures::{Fixtures, Loop};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

type Check = fn(&Path, &Path, &Fixtures) -> Result<(), String>;

fn err(e: anyhow::Error) -> String {
    format!("{e:#}")
}

/// `isoroot install TARGET ARGS…` with the fixtures' kernel and init: its output, or the
/// error with its output.
fn install(
    isoroot: &Path,
    init: &Path,
    f: &Fixtures,
    target: &Path,
    args: &[&str],
) -> Result<String, String> {
    let out = crate::sh::run(
        Command::new(isoroot).arg("install").arg(target).args(["-k", &f.kver, "--init"]).arg(init).args(args),
    )
    .map_err(err)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// sha256 of `len` bytes of `file` at `offset`.
fn hash(file: &Path, offset: u64, len: u64) -> Result<String, String> {
    let mut f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdin = child.stdin.take().ok_or("sha256sum's input")?;
    std::io::copy(&mut f.take(len), &mut stdin).map_err(|e| e.to_string())?;
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string())
}

fn whole(file: &Path) -> Result<String, String> {
    hash(file, 0, u64::MAX)
}

fn expect(out: &str, wanted: &[&str]) -> Result<(), String> {
    match wanted.iter().find(|w| !out.contains(*w)) {
        Some(w) => Err(format!("wanted {w:?} in:\n{out}")),
        None => Ok(()),
    }
}

/// An image with an ext4 filesystem over it, as a stick that holds data.
fn used_disk(f: &Fixtures, name: &str) -> Result<PathBuf, String> {
    let img = f.dir.join(name);
    let _ = std::fs::remove_file(&img);
    std::fs::File::create(&img).and_then(|h| h.set_len(300 << 20)).map_err(|e| e.to_string())?;
    crate::sh::run(Command::new("mkfs.ext4").args(["-q", "-L", "HOLIDAYS"]).arg(&img)).map_err(err)?;
    Ok(img)
}

/// Without --yes, and with --dry-run, the plan says what is there and what would be
/// erased, and the disk is byte-identical afterwards.
fn writes_nothing(isoroot: &Path, init: &Path, f: &Fixtures) -> Result<(), String> {
    let img = used_disk(f, "install-plan.img")?;
    let before = whole(&img)?;
    for args in [&[][..], &["--yes", "--dry-run"][..]] {
        let out = install(isoroot, init, f, &img, args)?;
        expect(
            &out,
            &["the whole disk: ext4 labelled \"HOLIDAYS\"", "partition 3: data", "nothing was written"],
        )?;
    }
    if whole(&img)? != before {
        return Err(format!("{} changed without --yes", img.display()));
    }
    Ok(())
}

/// `--update` on a stick with ISOs on it: the ESP is new, the partition table (both GPT
/// copies) and the data partition are byte-identical.
fn update_keeps_data(isoroot: &Path, init: &Path, f: &Fixtures) -> Result<(), String> {
    let img = f.dir.join("install-update.img");
    std::fs::copy(f.disks.get("stick-exfat").ok_or("no stick-exfat fixture")?, &img)
        .map_err(|e| e.to_string())?;
    let (data, size) = crate::sticks::data_partition(&img).map_err(err)?;
    let total = std::fs::metadata(&img).map_err(|e| e.to_string())?.len();
    let kept = |img: &Path| -> Result<[String; 3], String> {
        Ok([hash(img, 512, 33 * 512)?, hash(img, data, size)?, hash(img, total - 33 * 512, 33 * 512)?])
    };
    let (before, esp_before) = (kept(&img)?, hash(&img, 2 << 20, 128 << 20)?);
    let out = install(isoroot, init, f, &img, &["--update", "--yes"])?;
    expect(&out, &["replaces isoroot ", "the data partition (exfat UUID", "done"])?;
    if kept(&img)? != before {
        return Err("--update changed the partition table or the data partition".into());
    }
    if hash(&img, 2 << 20, 128 << 20)? == esp_before {
        return Err("--update left the ESP as it was".into());
    }
    Ok(())
}

/// Each refusal names its reason, and the disk is byte-identical afterwards.
fn refusals(isoroot: &Path, init: &Path, f: &Fixtures) -> Result<(), String> {
    let refused = |target: &Path, args: &[&str], why: &str| -> Result<(), String> {
        match install(isoroot, init, f, target, args) {
            Ok(out) => Err(format!("{} was not refused ({why}):\n{out}", target.display())),
            Err(e) if e.contains(why) => Ok(()),
            Err(e) => Err(format!("want {why:?}, got: {e}")),
        }
    };
    let small = f.dir.join("install-small.img");
    let _ = std::fs::remove_file(&small);
    refused(&small, &["--size", "100", "--yes"], "is too small: 100.0 MiB")?;
    let img = used_disk(f, "install-refused.img")?;
    let before = whole(&img)?;
    refused(
        &img,
        &["--yes", "--fs", "fat32", "--label", "ISO STICK 2026"],
        "a FAT32 label has 1 to 11 characters",
    )?;
    refused(&img, &["--yes", "--secure-boot"], "--secure-boot needs --fs fat32 or --fs ext4")?;
    // A stick made for Secure Boot keeps shim: an update without the flag is refused (where
    // that stick could be made: it needs Debian's signed packages).
    if let Some(made) = f.disks.get("stick-secure-boot") {
        let secure = f.dir.join("install-secure-update.img");
        std::fs::copy(made, &secure).map_err(|e| e.to_string())?;
        let before_update = whole(&secure)?;
        refused(
            &secure,
            &["--update", "--yes"],
            "was made with --secure-boot: run the update with --secure-boot too",
        )?;
        if whole(&secure)? != before_update {
            return Err(format!("{} changed while --update refused it", secure.display()));
        }
    }
    // Nor can an exFAT stick be updated into one for Secure Boot.
    let exfat = f.dir.join("install-exfat-update.img");
    std::fs::copy(f.disks.get("stick-exfat").ok_or("no stick-exfat fixture")?, &exfat)
        .map_err(|e| e.to_string())?;
    refused(&exfat, &["--update", "--yes", "--secure-boot"], "--secure-boot needs --fs fat32 or --fs ext4")?;
    {
        let dev = Loop::new(&img, &[]).map_err(err)?;
        refused(&img, &["--yes"], &format!("it is attached to {}", dev.0))?;
        let mnt = f.dir.join("install-refused-mnt");
        std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
        crate::sh::run(Command::new("mount").args(["-o", "ro"]).arg(&dev.0).arg(&mnt)).map_err(err)?;
        let at = std::fs::canonicalize(&mnt).map_err(|e| e.to_string())?;
        let mounted =
            refused(Path::new(&dev.0), &["--yes"], &format!("{} is mounted on {}", dev.0, at.display()));
        let _ = Command::new("umount").arg(&mnt).status();
        mounted?;
    }
    {
        let dev = Loop::new(&img, &["--read-only"]).map_err(err)?;
        let name = dev.0.trim_start_matches("/dev/");
        refused(Path::new(&dev.0), &["--yes"], &format!("{name} is read-only"))?;
    }
    if whole(&img)? != before {
        return Err(format!("{} changed while install refused it", img.display()));
    }
    // The partition types of a stick, made by hand: --update must not take it for one.
    let other = f.dir.join("install-not-ours.img");
    std::fs::copy(&img, &other).map_err(|e| e.to_string())?;
    let table = "label: gpt\nsize=1MiB, type=21686148-6449-6E6F-744E-656564454649\n\
                 size=128MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\ntype=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n";
    crate::sh::run_input(Command::new("sfdisk").arg("--quiet").arg(&other), table.as_bytes()).map_err(err)?;
    let before = whole(&other)?;
    refused(&other, &["--update", "--yes"], "partition 2 is not the ESP of isoroot install")?;
    if whole(&other)? != before {
        return Err(format!("{} changed while --update refused it", other.display()));
    }
    Ok(())
}

/// A block device as the target (a loop device stands for a stick): the plan names it, and
/// the table sfdisk reads back has the three partitions.
fn block_device(isoroot: &Path, init: &Path, f: &Fixtures) -> Result<(), String> {
    let img = used_disk(f, "install-block.img")?;
    let dev = Loop::new(&img, &[]).map_err(err)?;
    let name = dev.0.trim_start_matches("/dev/");
    let out = install(isoroot, init, f, Path::new(&dev.0), &["--yes", "--fs", "ext4"])?;
    expect(&out, &[&format!("({name}), 300.0 MiB"), "labelled \"HOLIDAYS\"", "done"])?;
    let table = crate::sh::run(Command::new("sfdisk").arg("-d").arg(&dev.0)).map_err(err)?;
    let table = String::from_utf8_lossy(&table.stdout).to_uppercase();
    expect(
        &table,
        &[
            "21686148-6449-6E6F-744E-656564454649",
            "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
            "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
        ],
    )
}

pub fn run(isoroot: &Path, init: &Path, f: &Fixtures, filter: Option<&str>) -> Vec<Outcome> {
    let checks: [(&str, Check); 4] = [
        ("install writes nothing without --yes, nor with --dry-run", writes_nothing),
        ("install --update keeps the partition table and the data partition", update_keeps_data),
        ("install refuses a bad label, exFAT with --secure-boot, a small, attached, mounted or read-only target; --update a disk it did not make, or without --secure-boot on a stick made with it", refusals),
        ("install onto a block device", block_device),
    ];
    Outcome::checks(checks.into(), filter, |check| check(isoroot, init, f))
}
