//! The boot cases: what is attached, what the kernel is told, and what the console must say.

use crate::fixtures::{
    Fixtures, BAD_UUID, EMPTY_UUID, EXFAT_LABEL, EXFAT_PATH, EXT4_UUID, FAT_DISK_ID, FAT_LABEL, FOURK_UUID,
    FRAG_EXFAT_LABEL, FRAG_FAT_LABEL, FRAG_UUID, NTFS_DIRTY_LABEL, NTFS_FRAG_LABEL, NTFS_LABEL, NTFS_PATH,
    PERSIST_HOST_UUID, PERSIST_UUID, RECOVER_UUID,
};
use crate::qemu::{Accel, BootFrom, Nic, Vm, VmSpec, Writes, OVMF_VARS, OVMF_VARS_MS};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Generous for TCG on a loaded two-core machine: a boot takes 8–15 s there.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// After a failure message, how long the VM must keep running without a panic.
const STAYS_UP: Duration = Duration::from_secs(3);

pub enum Expect {
    /// The booted root's whole marker line, how isoroot said it attached the ISO (see
    /// [`via`]), then lines that must be on the console (the root prints its mount table as
    /// `mount: …`) and text that must not.
    Marker { line: String, attached: Option<String>, present: Vec<String>, absent: Vec<String> },
    /// A failed boot: every one of these on the console, then the VM stays up.
    Failure(Vec<String>),
    /// Every one of these on the console, then the VM ends by itself (a reboot).
    Exits(Vec<String>),
}

pub struct Case {
    pub name: &'static str,
    pub disks: Vec<&'static str>,
    pub append: String,
    /// A key of [`Fixtures::initrds`].
    pub initrd: &'static str,
    pub expect: Expect,
    /// A second boot on the same disks, made writable copies for the case, then a check of
    /// the disks on the host.
    pub then: Option<Then>,
    /// While booting, in order: when the console shows a step's text, wait, then give the
    /// monitor its commands or type its keys (a key press, a disk plugged in late, a menu).
    pub during: Vec<During>,
    pub memory_mb: u32,
    /// The disks' sector size: 512, or 4096 for 4Kn disks.
    pub sector: u32,
    /// Boot the first disk through this firmware and its boot loader instead of handing
    /// QEMU the kernel (`append` and `initrd` are then unused).
    pub firmware: Option<Firmware>,
}

#[derive(Clone, Copy)]
pub enum Firmware {
    Bios,
    Uefi,
    /// UEFI with Microsoft's keys enrolled and Secure Boot on.
    UefiSecureBoot,
}

pub struct During {
    pub when: &'static str,
    pub after: Duration,
    pub actions: Vec<Action>,
}

pub enum Action {
    /// A QEMU monitor command.
    Monitor(String),
    /// Text typed on the serial console.
    Type(&'static str),
}

/// Keys typed in isoroot's own menu (`iso=ask`) once it shows.
pub fn picker_keys(keys: &'static str) -> During {
    During {
        when: "isoroot: pick an ISO to boot",
        after: Duration::from_secs(1),
        actions: vec![Action::Type(keys)],
    }
}

pub struct Then {
    pub append: String,
    pub expect: Expect,
    pub check: fn(&[PathBuf]) -> Result<(), String>,
}

impl Case {
    /// A boot of the standalone initramfs with 512 MiB of RAM.
    pub fn new(name: &'static str, disks: &[&'static str], append: String, expect: Expect) -> Case {
        Case {
            name,
            disks: disks.to_vec(),
            append,
            initrd: "plain",
            expect,
            then: None,
            during: vec![],
            memory_mb: 512,
            sector: 512,
            firmware: None,
        }
    }
}

/// The marker line of the fixtures' init (tests/fixtures/init.sh).
pub fn marker_line(profile: &str, root: &str, medium: &str, top: &str, layers: &str, init: &str) -> Expect {
    let line = format!(
        "ISOROOT-OK profile={profile} root={root} medium={medium}:iso9660 top={top} layers={layers} init={init}"
    );
    Expect::Marker { line, attached: None, present: vec![], absent: vec![] }
}

pub fn marker(profile: &str, medium: &str, top: &str, layers: &str) -> Expect {
    marker_line(profile, "overlay", medium, top, layers, "/sbin/init")
}

/// A marker plus console lines that must and must not appear.
pub fn and(expect: Expect, must: &[&str], must_not: &[&str]) -> Expect {
    match expect {
        Expect::Marker { line, attached, .. } => Expect::Marker {
            line,
            attached,
            present: must.iter().map(|s| s.to_string()).collect(),
            absent: must_not.iter().map(|s| s.to_string()).collect(),
        },
        failure => failure,
    }
}

/// The ISO attached by extent hints, by a scan of the host filesystem, or by a loop device on
/// the mounted file: the start of what the init says after `found NAME on DEVICE: `.
pub const HINTS: &str = "dm-linear from extent hints";
pub const LOOP: &str = "loop device on the read-only mounted file";
pub fn scan(fs: &str) -> String {
    format!("dm-linear from a scan of {fs} (")
}

/// A marker that also names how the ISO was attached: every booting case says it, so that
/// a case named for one path cannot pass by another (hints that fell back to a scan).
pub fn via(expect: Expect, how: &str) -> Expect {
    match expect {
        Expect::Marker { line, present, absent, .. } => {
            Expect::Marker { line, attached: Some(how.to_string()), present, absent }
        }
        other => other,
    }
}

/// What the init said it attached the ISO by: the rest of its `found NAME on DEVICE: HOW`
/// line (under `iso.debug`, `found DEVICE` lines without a HOW come first).
fn attached_by(console: &str) -> Option<&str> {
    console.lines().find_map(|l| {
        let (_, rest) = l.split_once("isoroot: found ")?;
        rest.split_once(": ").map(|(_, how)| how)
    })
}

pub fn failure(lines: &[&str]) -> Expect {
    Expect::Failure(lines.iter().map(|s| s.to_string()).collect())
}

pub fn all(f: &Fixtures) -> Vec<Case> {
    let debian = || marker("debian-live", "/run/live/medium", "debian", "debian");
    let ubuntu = || {
        marker(
            "ubuntu-casper",
            "/cdrom",
            "minimal.standard.live",
            "minimal,minimal.standard,minimal.standard.live",
        )
    };
    let case = Case::new;
    // The host filesystem must never be mounted on the dm-linear path.
    let host = "/run/isoroot/host";
    let dm_medium = "mount: /dev/mapper/debian-live /run/live/medium iso9660 ro";
    let dm_layer = "loop: loop0 /dev/mapper/debian-live offset=";
    let loop_host = "mount: /dev/vda /run/isoroot/host ext4 ro";
    let plug_in_late = || {
        vec![
            Action::Monitor(format!(
                "drive_add 0 if=none,id=late,format=raw,readonly=on,file={}",
                f.disks["ext4-debian"].display()
            )),
            Action::Monitor("device_add virtio-blk-pci,drive=late,id=latedisk".into()),
        ]
    };
    let persist = format!(
        "iso=UUID={PERSIST_HOST_UUID}:/isos/debian-live.iso iso.persist=/persist.img iso.persist.uuid={PERSIST_UUID}"
    );
    vec![
        // By default the ISO is mapped from a scan of the filesystem (this one is sparse:
        // holes become zero targets), the host is never mounted, and the root image is read
        // from the ISO's device at its offset, not through a loop on a file inside isofs.
        case(
            "debian-live on ext4 by UUID",
            &["ext4-debian"],
            format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso"),
            and(via(debian(), &scan("ext4")), &[dm_medium, dm_layer, "isoroot-data: isos|"], &[host]),
        ),
        case(
            "the loop path (iso.attach=loop)",
            &["ext4-debian"],
            format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso iso.attach=loop"),
            and(via(debian(), LOOP), &[loop_host, "loop: loop0 /run/isoroot/host/isos/debian-live.iso offset=0", "loop: loop1 /dev/loop0 offset="], &[]),
        ),
        case("ubuntu layers on FAT32 by LABEL", &["fat32-ubuntu"], format!("iso=LABEL={FAT_LABEL}:/isos/ubuntu.iso"), via(ubuntu(), &scan("vfat"))),
        case(
            "generic on exFAT, spaces in label and path",
            &["exfat-generic"],
            format!("iso=\"LABEL={EXFAT_LABEL}:{EXFAT_PATH}\""),
            via(marker("generic", "/run/isoroot/medium", "rootfs", "rootfs"), &scan("exfat")),
        ),
        case(
            "search every disk (no SOURCE), init=",
            &["ext4-empty", "ext4-debian"],
            "iso=/isos/debian-live.iso init=/sbin/init-alt".into(),
            via(marker_line("debian-live", "overlay", "/run/live/medium", "debian", "debian", "/sbin/init-alt"), LOOP),
        ),
        case(
            "ubuntu by PARTUUID",
            &["fat32-ubuntu"],
            format!("iso=PARTUUID={}-01:/isos/ubuntu.iso", FAT_DISK_ID.trim_start_matches("0x")),
            via(ubuntu(), &scan("vfat")),
        ),
        case(
            // A GPT partition name, as `isoroot install` writes it (sfdisk's name=).
            "debian by PARTLABEL on a GPT stick, a space and non-ASCII in the path",
            &["stick-exfat"],
            "iso=\"PARTLABEL=ISOROOT:/Linux ISOs/débian live.iso\"".into(),
            and(
                via(debian(), &scan("exfat")),
                &[
                    "PARTLABEL=ISOROOT:/Linux ISOs/débian live.iso on /dev/vda3 ",
                    // The whole data partition, read-only, beside the ISO's map.
                    "isoroot-data: Linux ISOs|archlinux.iso|more|",
                ],
                &[],
            ),
        ),
        case(
            "archiso spelling img_dev= img_loop=",
            &["fat32-ubuntu"],
            format!("img_dev=/dev/disk/by-label/{FAT_LABEL} img_loop=/isos/ubuntu.iso"),
            via(ubuntu(), &scan("vfat")),
        ),
        case(
            "no such file",
            &["ext4-debian"],
            format!("iso=UUID={EXT4_UUID}:/isos/nope/nope.iso"),
            failure(&[
                "has no file /isos/nope/nope.iso",
                "/isos on it holds: debian-live.iso, notiso.iso",
                "rebooting in 120 s",
            ]),
        ),
        case(
            "wrong UUID",
            &["ext4-debian", "ext4-empty"],
            "iso=UUID=deadbeef-0000-0000-0000-000000000000:/isos/debian-live.iso iso.timeout=3".into(),
            failure(&[
                "no block device with UUID=deadbeef-0000-0000-0000-000000000000 appeared within 3 s",
                &format!("/dev/vda (64.0 MiB) ext4 UUID={EXT4_UUID} LABEL=\"isodisk\""),
                &format!("/dev/vdb (64.0 MiB) ext4 UUID={EMPTY_UUID} LABEL=\"empty\""),
            ]),
        ),
        case(
            "a file that is not an ISO",
            &["ext4-debian"],
            format!("iso=UUID={EXT4_UUID}:/isos/notiso.iso"),
            failure(&[
                "what the ext4 scan mapped for /isos/notiso.iso is no ISO (isoroot's reader may have misread the filesystem)",
                "mounting it read-only instead",
                "/isos/notiso.iso is not an ISO 9660 or UDF image: expected \"CD001\" at byte 32769, found \"ZZZZZ\"",
            ]),
        ),
        case(
            "debian-live by extent hints (dm-linear)",
            &["ext4-hints"],
            f.hints.good.clone(),
            and(via(debian(), HINTS), &["dm-linear from extent hints (they match the ext4 allocation)", dm_medium, dm_layer], &[host]),
        ),
        Case {
            initrd: "map",
            ..case(
                "extent map as an extra initrd",
                &["ext4-hints"],
                "iso.map=/etc/isoroot/maps/debian-live.map".into(),
                and(via(debian(), HINTS), &[dm_medium], &[host]),
            )
        },
        case(
            "wrong fingerprint falls back to a scan",
            &["ext4-hints"],
            f.hints.good.split(' ').map(|w| if w.starts_with("iso.fingerprint=") { "iso.fingerprint=sha256-extents:0000000000000000000000000000000000000000000000000000000000000000" } else { w }).collect::<Vec<_>>().join(" "),
            and(
                via(debian(), &scan("ext4")),
                &["extent hints not used: the mapped sectors have fingerprint sha256-extents:", "falling back to a scan", dm_medium],
                &[host],
            ),
        ),
        case(
            "stale hints (file rewritten) fall back and boot the new file",
            &["ext4-hints"],
            f.stale_hints.clone(),
            and(
                via(marker("generic", "/run/isoroot/medium", "rootfs", "rootfs"), &scan("ext4")),
                &["the file moved or changed since the hints were made", "mount: /dev/mapper/stale /run/isoroot/medium iso9660"],
                &[host],
            ),
        ),
        // A copy made, the old file deleted, its freed sectors reused by another file except
        // at the old copy's ends: hints that an ends-only fingerprint would pass. Where
        // isoroot reads the allocation (ext4) the hints must be it; where it cannot
        // (ext3's block maps) only a fingerprint that samples every extent is trusted.
        case(
            "moved ISO, freed sectors reused: ext4 hints refused by the allocation, scan boots the copy",
            &["ext4-hints"],
            f.hints.moved.clone(),
            and(
                via(debian(), &scan("ext4")),
                &[
                    "extent hints not used: iso.extents= is not where /isos/moved.iso lies in the ext4 allocation",
                    "may belong to another file now",
                                        "mount: /dev/mapper/moved /run/live/medium iso9660 ro",
                ],
                &[host],
            ),
        ),
        case(
            "old fingerprint form (ends only) on ext4: hints used, proven by the allocation",
            &["ext4-hints"],
            f.hints.ends_only.clone(),
            and(via(debian(), HINTS), &["dm-linear from extent hints (they match the ext4 allocation)", dm_medium], &[host, "extent hints not used"]),
        ),
        case(
            "block-mapped ext3 by extent hints: fingerprint of every extent",
            &["ext3-hints"],
            f.ext3_hints.good.clone(),
            and(
                via(debian(), HINTS),
                &["dm-linear from extent hints (its fingerprint samples every extent: the file uses ext2/ext3 block maps", dm_medium],
                &[host],
            ),
        ),
        case(
            "moved ISO on ext3, freed sectors reused: every-extent fingerprint refuses the hints, loop boots the copy",
            &["ext3-hints"],
            f.ext3_hints.moved.clone(),
            and(
                via(debian(), LOOP),
                &[
                    "extent hints not used: the mapped sectors have fingerprint sha256-extents:",
                    "loop device on the read-only mounted file",
                    "loop: loop0 /run/isoroot/host/isos/moved.iso offset=0",
                ],
                &["dm-linear from extent hints"],
            ),
        ),
        case(
            "old fingerprint form (ends only) on ext3: refused, it cannot see reused sectors",
            &["ext3-hints"],
            f.ext3_hints.ends_only.clone(),
            and(
                via(debian(), LOOP),
                &[
                    "block maps, which isoroot's reader does not follow, and iso.fingerprint=sha256: covers only the file's ends",
                    "loop: loop0 /run/isoroot/host/isos/debian-live.iso offset=0",
                ],
                &["dm-linear from extent hints"],
            ),
        ),
        case(
            "fragmented ISO on ext4 (200+ runs), scan",
            &["ext4-frag"],
            format!("iso=UUID={FRAG_UUID}:/isos/debian-live.iso"),
            and(via(debian(), &scan("ext4")), &[dm_medium], &[host]),
        ),
        Case {
            initrd: "frag-map",
            ..case(
                "200+-extent map as an extra initrd",
                &["ext4-frag"],
                "iso.map=/etc/isoroot/maps/debian-live.map".into(),
                and(via(debian(), HINTS), &["dm-linear from extent hints (they match the ext4 allocation)", dm_medium], &[host]),
            )
        },
        case(
            "fragmented ISO on FAT32, scan",
            &["fat32-frag"],
            format!("iso=LABEL={FRAG_FAT_LABEL}:/isos/debian-live.iso"),
            and(via(debian(), &scan("vfat")), &[dm_medium], &[host]),
        ),
        case(
            "fragmented ISO on exFAT, scan, path in another case",
            &["exfat-frag"],
            format!("iso=LABEL={FRAG_EXFAT_LABEL}:/ISOS/Debian-Live.iso"),
            and(
                via(debian(), &scan("exfat")),
                &["mount: /dev/mapper/Debian-Live /run/live/medium iso9660 ro"],
                &[host],
            ),
        ),
        // Debian's kernel has no NTFS driver: these boots prove that nothing was mounted.
        case(
            "NTFS by LABEL, a space in the path (no kernel driver)",
            &["ntfs"],
            format!("iso=\"LABEL={NTFS_LABEL}:{NTFS_PATH}\""),
            and(
                via(debian(), &scan("ntfs")),
                &["mount: /dev/mapper/debian_live /run/live/medium iso9660 ro"],
                &[host],
            ),
        ),
        case(
            "fragmented ISO on NTFS, scan",
            &["ntfs-frag"],
            format!("iso=LABEL={NTFS_FRAG_LABEL}:/isos/debian-live.iso"),
            and(via(debian(), &scan("ntfs")), &[dm_medium], &[host]),
        ),
        case(
            "NTFS marked dirty: refused with the reason",
            &["ntfs-dirty"],
            format!("iso=LABEL={NTFS_DIRTY_LABEL}:/debian-live.iso"),
            failure(&[
                "NTFS is marked dirty (not shut down cleanly); run chkdsk on Windows",
                "is NTFS, which Debian's kernel cannot mount",
            ]),
        ),
        case(
            "ext4 that needs journal recovery: read-only mount, no replay",
            &["ext4-recover"],
            format!("iso=UUID={RECOVER_UUID}:/isos/debian-live.iso"),
            and(
                via(debian(), LOOP),
                &[
                    "the filesystem is not clean: its journal needs recovery",
                    "was not cleanly unmounted; reading it without replaying its journal",
                    loop_host,
                ],
                &[],
            ),
        ),
        Case {
            then: Some(Then {
                append: persist.clone(),
                expect: and(via(debian(), &scan("ext4")), &["PERSIST: kept across boots"], &[host]),
                check: persistence_is_clean,
            }),
            ..case(
                "persistence: written in one boot, read in the next, fsck clean",
                &["ext4-persist"],
                format!("{persist} persist_write=\"kept across boots\""),
                and(
                    via(debian(), &scan("ext4")),
                    &["mount: /dev/mapper/isoroot-persist /run/live/overlay ext4 rw", "PERSIST: kept across boots"],
                    &[host],
                ),
            )
        },
        case(
            "stale persistence hints are never written to",
            &["ext4-persist"],
            format!("{persist} iso.persist.extents=2048+8"),
            and(
                via(debian(), &scan("ext4")),
                &["is not where /persist.img lies now", "stale hints, and a stale map is never written to", "booting without persistence", "PERSIST: \n"],
                &["isoroot-persist"],
            ),
        ),
        case(
            "persistence beside an ISO on the loop path: refused at once with the reason",
            &["ext4-persist"],
            format!("{persist} iso.attach=loop"),
            and(
                via(debian(), LOOP),
                &[
                    "iso.persist: /dev/vda (",
                    "is mounted read-only on /run/isoroot/host (where the ISO was found",
                    "booting without persistence",
                    "PERSIST: \n",
                ],
                &["isoroot-persist", "Device or resource busy"],
            ),
        ),
        case(
            "a persistence image with another UUID is never written",
            &["ext4-persist"],
            format!(
                "iso=UUID={PERSIST_HOST_UUID}:/isos/debian-live.iso iso.persist=/persist.img \
                 iso.persist.uuid=99999999-0000-0000-0000-000000000000"
            ),
            and(
                via(debian(), &scan("ext4")),
                &[
                    &format!("has ext4 UUID {PERSIST_UUID}, iso.persist.uuid= says 99999999-0000-0000-0000-000000000000: not writing to it"),
                    "booting without persistence",
                    "mount: tmpfs /run/live/overlay tmpfs",
                ],
                &[],
            ),
        ),
        case(
            "a corrupt persistence image: boot without it, say why",
            &["ext4-persist"],
            format!(
                "iso=UUID={PERSIST_HOST_UUID}:/isos/debian-live.iso iso.persist=/corrupt.img iso.persist.uuid={PERSIST_UUID}"
            ),
            and(
                via(debian(), &scan("ext4")),
                &["/corrupt.img holds", "not an ext4 filesystem", "booting without persistence: changes stay in RAM"],
                &["isoroot-persist"],
            ),
        ),
        Case {
            memory_mb: 192,
            ..case(
                "iso.toram with too little RAM boots from the device",
                &["ext4-debian"],
                format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso iso.toram"),
                and(via(debian(), &scan("ext4")), &["iso.toram: UUID=", "booting from the device instead", dm_medium], &["ram.iso"]),
            )
        },
        // One read: the sum is taken while the copy is made, so what was checked is the copy.
        case(
            "iso.toram with iso.sha256: hashed while copied, the boot disk is let go",
            &["ext4-debian"],
            format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso iso.toram iso.sha256={}", f.debian_sha256),
            and(
                via(debian(), &scan("ext4")),
                &[
                    &format!("copying UUID={EXT4_UUID}:/isos/debian-live.iso to RAM: done"),
                    &format!("sha256 of UUID={EXT4_UUID}:/isos/debian-live.iso matches"),
                    "), copied to RAM",
                    "loop: loop0 /run/isoroot/ram.iso offset=0",
                    "mount: /dev/loop0 /run/live/medium iso9660 ro",
                    "disk: vda holders=[]",
                ],
                &["mount: /dev/vda", "/dev/mapper", "checking sha256 of"],
            ),
        ),
        case(
            "iso.toram with a wrong iso.sha256: the copy is refused",
            &["ext4-debian"],
            format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso iso.toram iso.sha256={}", "0".repeat(64)),
            failure(&[
                &format!("copying UUID={EXT4_UUID}:/isos/debian-live.iso to RAM: done"),
                &format!("fails its check: iso.sha256= expects {}, the file's sha256 is {}", "0".repeat(64), f.debian_sha256),
            ]),
        ),
        Case {
            during: vec![During {
                when: "waiting up to 30 s for the block device",
                after: Duration::from_secs(4),
                actions: plug_in_late(),
            }],
            ..case(
                "the boot device appears 5 s late (hot-plugged)",
                &[],
                format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso"),
                and(via(debian(), &scan("ext4")), &["waiting up to 30 s for the block device UUID=", dm_medium], &[]),
            )
        },
        // The boot fails (no disk yet), the rescue shell starts; the disk is plugged in and
        // `exit` in the shell retries the boot, which now succeeds.
        Case {
            initrd: "rescue",
            during: vec![During {
                when: "type `exit` to retry the boot",
                after: Duration::from_secs(1),
                actions: plug_in_late().into_iter().chain([Action::Type("exit\n")]).collect(),
            }],
            ..case(
                "`exit` in the rescue shell retries the boot",
                &[],
                format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso iso.timeout=2"),
                and(via(debian(), &scan("ext4")), &["no block device with UUID=", "retrying the boot", dm_medium], &[]),
            )
        },
        Case {
            during: vec![During {
                when: "waiting up to 30 s for the block device",
                after: Duration::from_secs(1),
                actions: vec![Action::Monitor("sendkey ctrl-alt-delete".into())],
            }],
            ..case(
                "Ctrl-Alt-Del during the device wait reboots cleanly",
                &[],
                format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso"),
                Expect::Exits(vec!["Ctrl-Alt-Del: rebooting".into(), "reboot: Restarting system".into()]),
            )
        },
        // isoroot's own menu reads the four sticks' data partitions itself (exFAT, ext4,
        // FAT32, NTFS: three ISOs each, in device then path order) and boots the tenth,
        // the NTFS stick's first, with this kernel.
        Case {
            during: vec![picker_keys("10\r")],
            ..case(
                "iso=ask: isoroot's menu lists the ISOs of four sticks (exFAT, ext4, FAT32, NTFS), the tenth by number boots with this kernel",
                &["stick-exfat", "stick-ext4", "stick-fat32", "stick-ntfs"],
                "iso=ask iso.kernel=host".into(),
                and(
                    via(debian(), &scan("ntfs")),
                    &[
                        " 1) ",
                        "12) ",
                        "/dev/vda3 exfat",
                        "/dev/vdb3 ext4",
                        "/dev/vdc3 vfat",
                        "/dev/vdd3 ntfs",
                        "[archiso, ",
                        "chosen: ",
                        ":/Linux ISOs/débian live.iso on /dev/vdd3 ",
                    ],
                    // Twelve rows, each ISO once; the host kernel as asked.
                    &["13) ", "starting the ISO's own kernel"],
                ),
            )
        },
        case(
            "two filesystems with the same label: a warning, the first is used",
            &["ext4-debian", "ext4-twin"],
            "iso=LABEL=isodisk:/isos/debian-live.iso".into(),
            and(via(debian(), &scan("ext4")), &["2 devices match LABEL=isodisk, using the first:"], &[]),
        ),
        case(
            "a command line at the 2048-byte limit",
            &["ext4-debian"],
            {
                let base = format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso isoroot_pad=");
                // With "console=ttyS0 panic=-1 " in front: 2047 bytes and the NUL.
                let room = 2047 - "console=ttyS0 panic=-1 ".len() - base.len();
                format!("{base}{}", "x".repeat(room))
            },
            via(debian(), &scan("ext4")),
        ),
        case(
            "iso.overlay.size: the overlay's tmpfs has that size",
            &["ext4-debian"],
            format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso iso.overlay.size=64M"),
            and(via(debian(), &scan("ext4")), &["mount: tmpfs /run/live/overlay tmpfs rw,", ",size=65536k,"], &[]),
        ),
        // On a disk of 4096-byte sectors the kernel refuses a dm table whose last target ends
        // mid-sector (the ISO's last half-used block is mapped whole), and isofs refuses a
        // device with sectors above 2048 bytes (a loop device over the dm device has 512).
        Case {
            sector: 4096,
            ..case(
                "4Kn disk, an ISO of an odd number of 2048-byte blocks: dm-linear from a scan",
                &["ext4-4kn"],
                format!("iso=UUID={FOURK_UUID}:/isos/debian-live.iso"),
                and(
                    via(debian(), &scan("ext4")),
                    &[
                        "read through a loop device (4096-byte sectors)",
                        "loop: loop0 /dev/mapper/debian-live offset=0",
                        "mount: /dev/loop0 /run/live/medium iso9660 ro",
                    ],
                    &[host],
                ),
            )
        },
        // A forced way fails with its reason instead of falling back to the next one.
        case(
            "iso.attach=scan on a filesystem that needs recovery: fails, no loop fallback",
            &["ext4-recover"],
            format!("iso=UUID={RECOVER_UUID}:/isos/debian-live.iso iso.attach=scan"),
            failure(&[
                "iso.attach=scan: ",
                "the filesystem is not clean: its journal needs recovery",
                "rebooting in 120 s",
            ]),
        ),
        case(
            "iso.attach=hints without hints: fails, no scan fallback",
            &["ext4-debian"],
            format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso iso.attach=hints"),
            failure(&["iso.attach=hints: no extent hints on the command line", "rebooting in 120 s"]),
        ),
        case(
            "a symlink loop in the path",
            &["ext4-bad"],
            format!("iso=UUID={BAD_UUID}:/isos/loop1/x.iso"),
            failure(&["too many levels of symbolic links", "Too many levels of symbolic links (os error 40)"]),
        ),
        case(
            "a truncated ISO",
            &["ext4-bad"],
            format!("iso=UUID={BAD_UUID}:/isos/truncated.iso"),
            // The ISO cut at 1 MiB; what its volume descriptor says depends on the fixture.
            failure(&["/isos/truncated.iso is truncated: its volume descriptor says ", ", the file has 1.0 MiB (1048576 bytes); copy it again"]),
        ),
        case(
            "an empty ISO",
            &["ext4-bad"],
            format!("iso=UUID={BAD_UUID}:/isos/empty.iso"),
            failure(&["/isos/empty.iso is not an ISO image: it has 0 bytes"]),
        ),
        case(
            "a directory where the ISO was expected",
            &["ext4-bad"],
            format!("iso=UUID={BAD_UUID}:/isos/adir.iso"),
            failure(&["/isos/adir.iso on /dev/vda (64.0 MiB) ext4 UUID=33333333-4444-5555-6666-777777777777 LABEL=\"broken\" is a directory, not an ISO file"]),
        ),
        case(
            "a corrupt root image",
            &["ext4-bad"],
            format!("iso=UUID={BAD_UUID}:/isos/corrupt-root.iso"),
            failure(&["mounting /run/isoroot/medium/live/filesystem.squashfs (squashfs, /dev/loop0) on /run/live/rootfs/filesystem.squashfs; is the image corrupt?"]),
        ),
        case(
            "a layout no profile knows",
            &["ext4-bad"],
            format!("iso=UUID={BAD_UUID}:/isos/unknown.iso"),
            failure(&[
                "no profile matches this ISO",
                "its top level holds: .disk/, boot/",
                "debian-live (needs /live); ubuntu-casper (needs /casper); void (needs /LiveOS/squashfs.img and label VOID_*)",
            ]),
        ),
        case(
            "an unterminated quote",
            &["ext4-debian"],
            format!("iso=\"UUID={EXT4_UUID}:/isos/debian-live.iso"),
            failure(&["the kernel command line has an unterminated quote: \"UUID="]),
        ),
        case(
            "'..' in the path",
            &["ext4-debian"],
            "iso=/isos/../isos/debian-live.iso".into(),
            failure(&["bad value for iso: expected [SOURCE:]/PATH with SOURCE one of UUID=, LABEL=, PARTUUID=, PARTLABEL=, /dev/NAME, and PATH absolute without '..', found \"/isos/../isos/debian-live.iso\""]),
        ),
        case(
            "a misspelt iso.* key",
            &["ext4-debian"],
            format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso iso.tiemout=5"),
            failure(&["unknown key \"iso.tiemout\" on the kernel command line; isoroot knows: iso iso.extents"]),
        ),
        Case {
            initrd: "rescue",
            ..case(
                "bad cmdline value, rescue shell",
                &["ext4-debian"],
                format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso iso.timeout=soon"),
                failure(&[
                    "bad value for iso.timeout: expected whole seconds from 0 to 3600, found \"soon\"",
                    "starting a rescue shell (/bin/sh); type `exit` to retry the boot",
                ]),
            )
        },
    ]
}

pub struct Outcome {
    pub name: String,
    pub result: Result<(), String>,
    pub secs: f64,
    /// Why the test could not run; it then counts as neither passed nor failed.
    pub skipped: Option<String>,
}

impl Outcome {
    /// Runs a host check, prints its result and times it.
    pub fn timed(name: &str, check: impl FnOnce() -> Result<(), String>) -> Outcome {
        let start = Instant::now();
        let result = check();
        match &result {
            Ok(()) => println!("ok     {name}"),
            Err(e) => println!("FAILED {name}: {e}"),
        }
        Outcome::new(name, result, start.elapsed().as_secs_f64())
    }

    /// A test that ran.
    pub fn new(name: &str, result: Result<(), String>, secs: f64) -> Outcome {
        Outcome { name: name.to_string(), result, secs, skipped: None }
    }

    /// Runs each named host check whose name contains `filter` (all without one), timed.
    pub fn checks<C>(
        checks: Vec<(&str, C)>,
        filter: Option<&str>,
        run: impl Fn(C) -> Result<(), String>,
    ) -> Vec<Outcome> {
        checks
            .into_iter()
            .filter(|(name, _)| filter.is_none_or(|s| name.contains(s)))
            .map(|(name, check)| Outcome::timed(name, || run(check)))
            .collect()
    }

    /// A test that cannot run here, which says so.
    pub fn skipped(name: &str, why: String) -> Outcome {
        println!("skip   {name}: {why}");
        Outcome { name: name.to_string(), result: Ok(()), secs: 0.0, skipped: Some(why) }
    }
}

fn run_one(f: &Fixtures, case: &Case, accel: Accel, echo: bool) -> Result<(), String> {
    let slug = case.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
    let mut disks: Vec<PathBuf> = case.disks.iter().map(|d| f.disks[d].clone()).collect();
    if case.then.is_some() {
        // The case writes: give it its own copies.
        for (i, d) in disks.iter_mut().enumerate() {
            let copy = f.dir.join(format!("{slug}-{i}.img"));
            std::fs::copy(&*d, &copy).map_err(|e| format!("copying {}: {e}", d.display()))?;
            *d = copy;
        }
    }
    let boot = |append: &str, expect: &Expect, log: PathBuf| -> Result<(), String> {
        let boot = match case.firmware {
            None => BootFrom::Kernel {
                kernel: f.kernel.clone(),
                initrd: Some(f.initrds[case.initrd].clone()),
                append: format!("console=ttyS0 panic=-1 {append}"),
            },
            Some(Firmware::Bios) => BootFrom::Bios,
            Some(firmware @ (Firmware::Uefi | Firmware::UefiSecureBoot)) => {
                let secure = matches!(firmware, Firmware::UefiSecureBoot);
                let from = if secure { OVMF_VARS_MS } else { OVMF_VARS };
                // UEFI variables are written at boot: each VM gets its own copy.
                let vars = f.dir.join(format!("{slug}.vars"));
                std::fs::copy(from, &vars).map_err(|e| format!("copying {from} (package ovmf): {e}"))?;
                BootFrom::Uefi { vars, secure }
            }
        };
        let spec = VmSpec {
            boot,
            disks: disks.clone(),
            writes: if case.then.is_some() { Writes::Kept } else { Writes::Watched },
            accel,
            echo,
            monitor: (!case.during.is_empty()).then(|| monitor_socket(&slug)),
            memory_mb: case.memory_mb,
            sector: case.sector,
            nic: Nic::None,
        };
        let mut vm = Vm::start(&spec).map_err(|e| format!("{e:#}"))?;
        for d in &case.during {
            if let Err(e) = vm.wait_for_any(&[d.when], BOOT_TIMEOUT) {
                vm.save(&log);
                return Err(format!("waiting for {:?}: {e}\n  console: {}", d.when, log.display()));
            }
            std::thread::sleep(d.after);
            for a in &d.actions {
                match a {
                    Action::Monitor(c) => drop(vm.monitor(c)?),
                    Action::Type(t) => vm.type_text(t)?,
                }
            }
        }
        let result = check(&mut vm, expect);
        // The disks are read on the host next: QEMU must have finished writing them.
        if result.is_ok() && case.then.is_some() && !vm.wait_exit(Duration::from_secs(30)) {
            return Err("the guest did not power off".into());
        }
        let result = result.and_then(|()| vm.untouched());
        vm.save(&log);
        result.map_err(|e| format!("{e}\n  console: {}", log.display()))
    };
    boot(&case.append, &case.expect, f.dir.join(format!("{slug}.log")))?;
    if let Some(then) = &case.then {
        boot(&then.append, &then.expect, f.dir.join(format!("{slug}-2.log")))?;
        (then.check)(&disks)?;
    }
    Ok(())
}

/// A short path for a case's monitor socket: a Unix socket path has at most 107 bytes,
/// which the fixtures' directory plus a case name can pass in a deep checkout.
fn monitor_socket(slug: &str) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    slug.hash(&mut h);
    std::env::temp_dir().join(format!("isoroot-{}-{:016x}.mon", std::process::id(), h.finish()))
}

/// After the persistence boots: both the host filesystem and the image inside it pass
/// `e2fsck -fn` (nothing fixed, nothing to fix).
fn persistence_is_clean(disks: &[PathBuf]) -> Result<(), String> {
    let fsck = |img: &std::path::Path| -> Result<(), String> {
        let out =
            std::process::Command::new("e2fsck").arg("-fn").arg(img).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "e2fsck -fn {}: {}\n{}{}",
                img.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    };
    fsck(&disks[0])?;
    let image = disks[0].with_extension("persist.img");
    let dump = std::process::Command::new("debugfs")
        .arg("-R")
        .arg(format!("dump /persist.img {}", image.display()))
        .arg(&disks[0])
        .output()
        .map_err(|e| e.to_string())?;
    if !dump.status.success() || !image.exists() {
        return Err(format!(
            "debugfs could not copy /persist.img out: {}",
            String::from_utf8_lossy(&dump.stderr)
        ));
    }
    fsck(&image)
}

pub fn check(vm: &mut Vm, expect: &Expect) -> Result<(), String> {
    match expect {
        Expect::Marker { line: want, attached, present, absent } => {
            vm.wait_for_any(&["ISOROOT-OK"], BOOT_TIMEOUT)?;
            // The root prints its mount table next, then powers off.
            let _ = vm.wait_for_any(&["reboot: Power down"], Duration::from_secs(20));
            let text = vm.console();
            let got = text.lines().find(|l| l.starts_with("ISOROOT-OK")).unwrap_or_default();
            if got != want {
                return Err(format!("marker differs:\n  want: {want}\n  got:  {got}"));
            }
            let Some(attached) = attached else {
                return Err("the case does not say how the ISO must be attached (cases::via)".into());
            };
            match attached_by(&text) {
                Some(how) if how.starts_with(attached.as_str()) => {}
                Some(how) => return Err(format!("attached by {how:?}, not by {attached:?}")),
                None => return Err("the console has no `isoroot: found …: HOW` line".into()),
            }
            if let Some(p) = present.iter().find(|p| !text.contains(p.as_str())) {
                return Err(format!("the console lacks {p:?}"));
            }
            if let Some(a) = absent.iter().find(|a| text.contains(a.as_str())) {
                return Err(format!("the console shows {a:?}, which must not happen"));
            }
            Ok(())
        }
        Expect::Exits(lines) => {
            for line in lines {
                vm.wait_for_any(&[line], BOOT_TIMEOUT).map_err(|e| format!("waiting for {line:?}: {e}"))?;
            }
            if !vm.wait_exit(Duration::from_secs(30)) {
                return Err("the VM did not reboot".into());
            }
            if vm.console().contains("Kernel panic") {
                return Err("the kernel panicked".into());
            }
            Ok(())
        }
        Expect::Failure(lines) => {
            for line in lines {
                vm.wait_for_any(&[line], BOOT_TIMEOUT).map_err(|e| format!("waiting for {line:?}: {e}"))?;
            }
            std::thread::sleep(STAYS_UP);
            if vm.console().contains("Kernel panic") {
                return Err("the kernel panicked after the message".into());
            }
            if !vm.running() {
                return Err("the VM stopped instead of waiting for the user".into());
            }
            Ok(())
        }
    }
}

/// Runs the cases whose names contain `filter`, `jobs` at a time.
pub fn run(f: &Fixtures, accel: Accel, filter: Option<&str>, jobs: usize) -> Vec<Outcome> {
    let cases: Vec<Case> = all(f)
        .into_iter()
        .chain(crate::profile_cases::all(f))
        .filter(|c| filter.is_none_or(|s| c.name.contains(s)))
        .collect();
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { break };
                if let Some(d) = case.disks.iter().find(|d| !f.disks.contains_key(*d)) {
                    let why = format!("the fixture {d} could not be made here (the fixture build said why)");
                    outcomes.lock().unwrap().push(Outcome::skipped(case.name, why));
                    continue;
                }
                if crate::distros::FROM_SOURCES.contains(&case.initrd) {
                    if let Err(why) = crate::distros::third_party_sources() {
                        let why = format!("needs the {} initrd, built from sources: {why}", case.initrd);
                        outcomes.lock().unwrap().push(Outcome::skipped(case.name, why));
                        continue;
                    }
                }
                let start = Instant::now();
                let result = run_one(f, case, accel, false);
                let secs = start.elapsed().as_secs_f64();
                match &result {
                    Ok(()) => println!("ok     {} ({secs:.1} s)", case.name),
                    Err(e) => println!("FAILED {} ({secs:.1} s): {e}", case.name),
                }
                outcomes.lock().unwrap().push(Outcome::new(case.name, result, secs));
            });
        }
    });
    outcomes.into_inner().unwrap()
}

/// The demo: the debian-live case with the console on this terminal.
pub fn demo(f: &Fixtures, accel: Accel) -> Result<(), String> {
    let case = all(f).into_iter().next().expect("the first case is debian-live");
    run_one(f, &case, accel, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_attach_path_is_read_from_the_found_line() {
        let console = "isoroot: found /dev/vda (64.0 MiB) ext4 UUID=a\nisoroot: found UUID=a:/isos/x.iso on /dev/vda (64.0 MiB) ext4 \
                       UUID=a: dm-linear from a scan of ext4 (3 runs)\nISOROOT-OK";
        assert_eq!(super::attached_by(console), Some("dm-linear from a scan of ext4 (3 runs)"));
        assert!(super::attached_by(console).unwrap().starts_with(&super::scan("ext4")));
        assert_eq!(super::attached_by("isoroot: no ISO"), None);
    }
}
