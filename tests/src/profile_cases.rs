//! One boot per distro profile, the combined boots with third-party initrds, the handoff
//! boots, and the command line spellings of other tools.

use crate::cases::{
    and, failure, marker, marker_line, picker_keys, scan, via, Action, Case, During, Expect, Firmware, HINTS,
    LOOP,
};
use crate::distros::NIXOS_INIT;
use crate::fixtures::{
    Fixtures, DISTROS_UUID, EXFAT_ARCH, EXFAT_DEBIAN, EXFAT_FEDORA, EXFAT_LABEL, EXFAT_UBUNTU, EXT4_UUID,
};
use std::time::Duration;

fn distro(name: &'static str, iso: &str, expect: Expect) -> Case {
    Case::new(name, &["ext4-distros"], format!("iso=UUID={DISTROS_UUID}:/isos/{iso}"), expect)
}

/// A boot of a third-party initrd with isoroot's --no-modules archive appended.
fn combined(
    name: &'static str,
    initrd: &'static str,
    disks: &[&'static str],
    append: String,
    expect: Expect,
) -> Case {
    Case {
        initrd,
        memory_mb: 1024,
        ..Case::new(name, disks, format!("rdinit=/isoroot/init {append}"), expect)
    }
}

/// Keys typed in GRUB's menu once it shows.
fn grub_keys(keys: &'static str) -> During {
    During { when: "GNU GRUB", after: Duration::from_secs(1), actions: vec![Action::Type(keys)] }
}

/// A boot through a boot loader on a disk `isoroot menu` made entries for.
fn loader(
    name: &'static str,
    disk: &'static str,
    firmware: Firmware,
    keys: Option<&'static str>,
    expect: Expect,
) -> Case {
    let during = keys.map(grub_keys).into_iter().collect();
    Case { firmware: Some(firmware), during, ..Case::new(name, &[disk], String::new(), expect) }
}

/// A boot from a stick of `isoroot install`: no extent hints (isoroot scans the data
/// partition), the ISO's own kernel with isoroot's addon, and the ISO GRUB found.
fn stick(e: Expect, fs: &str, path: &str) -> Expect {
    and(via(e, &scan(fs)), &["rdinit=/isoroot/init", &format!(":{path} on /dev/vda3 ")], &["iso.extents="])
}

pub fn all(_f: &Fixtures) -> Vec<Case> {
    // The entries carry the extent hints `isoroot menu` took, and isoroot's own tokens.
    let from_menu = |e: Expect| and(via(e, HINTS), &["rdinit=/isoroot/init"], &[]);
    let arch = || from_menu(marker("archiso", "/run/archiso/bootmnt", "arch", "arch"));
    let fedora = || from_menu(marker("fedora-liveos", "/run/initramfs/live", "fedora", "fedora"));
    let debian_menu = || {
        let e = via(marker("debian-live", "/run/live/medium", "debian", "debian"), HINTS);
        and(e, &["rdinit=/isoroot/init", ":/isos/debian live.iso on /dev/vda2 "], &[])
    };
    let fallback =
        |p: &str| format!("profile {p} hands off to the distro's own initrd, which this initramfs lacks");
    let debian = || marker("debian-live", "/run/live/medium", "debian", "debian");
    let exfat = |path: &str| format!("iso=\"LABEL={EXFAT_LABEL}:{path}\" iso.mode=handoff");
    vec![
        // Boot loaders with the entries of `isoroot menu`, in path order: archlinux,
        // debian-live, debian-live with its own loopback.cfg, fedora ('v' moves down in
        // GRUB's menu).
        loader("GRUB for BIOS (SeaBIOS), isoroot menu: the default entry", "grub-bios", Firmware::Bios, None, arch()),
        loader("GRUB for BIOS, isoroot menu: the fourth entry by key", "grub-bios", Firmware::Bios, Some("vvv\r"), fedora()),
        loader("GRUB for UEFI (OVMF), isoroot menu: the second entry by key", "grub-uefi", Firmware::Uefi, Some("v\r"), debian_menu()),
        loader("systemd-boot (OVMF), isoroot menu --bls entries", "systemd-boot", Firmware::Uefi, None, fedora()),
        // Sticks made by `isoroot install`, the ISOs copied on afterwards (crate::sticks):
        // GRUB lists them at boot in path order, "Linux ISOs/débian live.iso" first.
        loader(
            "isoroot install, exFAT: GRUB for UEFI (OVMF) boots the first ISO, a space and non-ASCII in its path",
            "stick-exfat",
            Firmware::Uefi,
            None,
            stick(debian(), "exfat", "/Linux ISOs/débian live.iso"),
        ),
        loader(
            "isoroot install, exFAT: GRUB for BIOS (SeaBIOS), the second ISO by key",
            "stick-exfat",
            Firmware::Bios,
            Some("v\r"),
            stick(marker("archiso", "/run/archiso/bootmnt", "arch", "arch"), "exfat", "/archlinux.iso"),
        ),
        loader(
            "isoroot install, ext4: GRUB for UEFI, the third ISO (in a folder) by key",
            "stick-ext4",
            Firmware::Uefi,
            Some("vv\r"),
            stick(marker("fedora-liveos", "/run/initramfs/live", "fedora", "fedora"), "ext4", "/more/fedora.iso"),
        ),
        loader(
            "isoroot install, FAT32: GRUB for BIOS boots the first ISO",
            "stick-fat32",
            Firmware::Bios,
            None,
            stick(debian(), "vfat", "/Linux ISOs/débian live.iso"),
        ),
        loader(
            "isoroot install, exFAT: the submenu's first entry, with the stick's kernel (isoroot standalone)",
            "stick-exfat",
            Firmware::Bios,
            Some("vvvv\r\r"),
            and(
                via(debian(), &scan("exfat")),
                &["BOOT_IMAGE=(hd0,gpt2)/isoroot/vmlinuz ", ":/Linux ISOs/débian live.iso on /dev/vda3 "],
                &["rdinit=/isoroot/init"],
            ),
        ),
        // GRUB's fourth entry starts isoroot's own menu from the stick's kernel; its third
        // ISO boots with its own kernel, its initrd and the addon the stick's initramfs
        // carries, through kexec.
        Case {
            during: vec![grub_keys("vvv\r"), picker_keys("3\r")],
            memory_mb: 1024,
            ..loader(
                "isoroot install, exFAT: GRUB's 'Pick an ISO' entry, isoroot's menu boots the third ISO with its own kernel (kexec)",
                "stick-exfat",
                Firmware::Uefi,
                None,
                and(
                    stick(marker("fedora-liveos", "/run/initramfs/live", "fedora", "fedora"), "exfat", "/more/fedora.iso"),
                    // The kernel says the last before it jumps into the one loaded.
                    &["iso=ask", "chosen: ", "starting the ISO's own kernel /", "Starting new kernel"],
                    &["the ISO's own kernel cannot be started"],
                ),
            )
        },
        loader(
            "isoroot install --secure-boot, ext4: shim and Debian's signed GRUB boot the first ISO's signed kernel, Secure Boot on",
            "stick-secure-boot",
            Firmware::UefiSecureBoot,
            None,
            and(
                via(debian(), &scan("ext4")),
                &[
                    "secureboot: Secure boot enabled",
                    "Kernel is locked down from EFI Secure Boot",
                    ":/Linux ISOs/débian live.iso on /dev/vda3 ",
                ],
                &["prohibited by secure boot policy", "Loading of unsigned module is rejected"],
            ),
        ),
        // Under Secure Boot the stick's signed kernel runs isoroot's menu, and the kernel's
        // lockdown lets kexec start the ISO's kernel only because Debian signed it.
        Case {
            during: vec![grub_keys("vvv\r"), picker_keys("1\r")],
            memory_mb: 1024,
            ..loader(
                "isoroot install --secure-boot: isoroot's menu under Secure Boot starts the first ISO's signed kernel (kexec under lockdown)",
                "stick-secure-boot",
                Firmware::UefiSecureBoot,
                None,
                and(
                    via(debian(), &scan("ext4")),
                    &[
                        "Kernel is locked down from EFI Secure Boot",
                        "iso=ask",
                        "starting the ISO's own kernel /",
                        "Starting new kernel",
                        ":/Linux ISOs/débian live.iso on /dev/vda3 ",
                    ],
                    &["the ISO's own kernel cannot be started", "Loading of unsigned module is rejected"],
                ),
            )
        },
        loader(
            "isoroot install, NTFS: GRUB for UEFI boots the first ISO",
            "stick-ntfs",
            Firmware::Uefi,
            None,
            stick(debian(), "ntfs", "/Linux ISOs/débian live.iso"),
        ),
        distro(
            "fedora-liveos: ext4 root nested in the squashfs",
            "fedora.iso",
            and(
                via(marker("fedora-liveos", "/run/initramfs/live", "fedora", "fedora"), &scan("ext4")),
                &["/run/initramfs/squashfs squashfs ro", "/run/rootfsbase ext4 ro"],
                &[],
            ),
        ),
        distro(
            "opensuse-kiwi: EROFS root (Fedora 42 kiwi media)",
            "fedora-kiwi.iso",
            and(via(marker("opensuse-kiwi", "/run/initramfs/live", "kiwi", "kiwi"), &scan("ext4")), &["/run/rootfsbase erofs ro"], &[]),
        ),
        distro(
            "void: ext3 nested, handoff falls back to switch-root",
            "void.iso",
            and(via(marker("void", "/run/initramfs/live", "void", "void"), &scan("ext4")), &[&fallback("void"), "/run/rootfsbase ext4 ro"], &[]),
        ),
        distro(
            "archiso",
            "archlinux.iso",
            and(via(marker("archiso", "/run/archiso/bootmnt", "arch", "arch"), &scan("ext4")), &["/run/archiso/airootfs squashfs ro"], &[]),
        ),
        distro(
            "systemrescue",
            "systemrescue.iso",
            and(via(marker("systemrescue", "/run/archiso/bootmnt", "rescue", "rescue"), &scan("ext4")), &["/run/archiso/airootfs squashfs ro"], &[]),
        ),
        distro(
            "manjaro: three of four layers",
            "manjaro.iso",
            and(
                via(marker("manjaro", "/run/miso/bootmnt", "manjaro-live", "manjaro-desktop,manjaro-live,manjaro-root"), &scan("ext4")),
                &["lowerdir=/run/miso/sfs/livefs.sfs:/run/miso/sfs/desktopfs.sfs:/run/miso/sfs/rootfs.sfs,"],
                &[],
            ),
        ),
        Case {
            append: format!("iso=UUID={DISTROS_UUID}:/isos/nixos.iso init={NIXOS_INIT}"),
            ..distro(
                "nixos: tmpfs root, store overlay, init=",
                "nixos.iso",
                and(
                    via(marker_line("nixos", "tmpfs", "/iso", "nixos", "nix-store", NIXOS_INIT), &scan("ext4")),
                    &[
                        // The overlay's options name the paths as they were before the switch.
                        "mount: overlay /nix/store overlay rw,relatime,lowerdir=/newroot/nix/.ro-store,upperdir=/newroot/nix/.rw-store/rw,",
                        "/nix/.ro-store squashfs ro",
                        "mount: tmpfs /nix/.rw-store tmpfs",
                    ],
                    &[],
                ),
            )
        },
        distro(
            "nixos without init=",
            "nixos.iso",
            failure(&["profile nixos takes the init from init= on the command line, and there is none"]),
        ),
        distro(
            "tails: handoff falls back to switch-root",
            "tails.iso",
            and(via(marker("tails", "/run/live/medium", "tails", "tails"), &scan("ext4")), &[&fallback("tails")], &[]),
        ),
        distro(
            "alpine: refused with the reason",
            "alpine.iso",
            failure(&["this ISO looks like Alpine Linux (not bootable through isoroot) (profile alpine): Alpine builds its root inside its own initramfs"]),
        ),
        distro(
            "tinycore: refused with the reason",
            "tinycore.iso",
            failure(&["(profile tinycore): TinyCore's initramfs is its root"]),
        ),
        Case::new(
            "iso.mode=handoff without a distro initrd",
            &["ext4-debian"],
            format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso iso.mode=handoff"),
            failure(&["iso.mode=handoff needs the distro's initrd, and this initramfs has only isoroot"]),
        ),
        // Existing boot entries: other tools' spellings of the ISO's location.
        Case::new(
            "live-boot spelling findiso=",
            &["ext4-debian"],
            "findiso=/isos/debian-live.iso".into(),
            // The host is mounted on the loop path: no second device over it.
            and(via(debian(), LOOP), &[], &["isoroot-data: "]),
        ),
        Case::new(
            "SUSE spelling isofrom_device= isofrom_system=",
            &["ext4-debian"],
            "isofrom_device=/dev/vda isofrom_system=/isos/debian-live.iso".into(),
            via(debian(), &scan("ext4")),
        ),
        // The combined boot: a distro's initrd with isoroot appended, started by rdinit=;
        // modules come from the distro's tree.
        combined(
            "combined: Debian initramfs-tools initrd",
            "initramfs-tools",
            &["ext4-debian"],
            format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso iso.debug"),
            // The fixture's ISO is sparse (mkfs.ext4 -d), and initramfs-tools leaves dm-zero out.
            and(
                via(debian(), LOOP),
                &[
                    "loaded module squashfs from kernel/fs/squashfs/squashfs.ko",
                    "(the file has holes: is dm-zero in the initrd?); mounting it read-only instead",
                ],
                &[],
            ),
        ),
        combined(
            "combined: Debian dracut initrd, dracut's iso-scan/filename=",
            "dracut",
            &["ext4-distros"],
            "iso-scan/filename=/isos/fedora.iso root=live:CDLABEL=Fedora-WS-Live-40-1-14 rd.live.image iso.debug".into(),
            and(
                via(marker("fedora-liveos", "/run/initramfs/live", "fedora", "fedora"), LOOP),
                &["loaded module squashfs from kernel/fs/squashfs/squashfs.ko"],
                &[],
            ),
        ),
        combined(
            "combined: modules recompressed as .ko.gz, .ko.xz and .ko.zst",
            "recompressed",
            &["ext4-debian"],
            format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso iso.debug"),
            and(
                via(debian(), LOOP),
                &[
                    "loaded module squashfs from kernel/fs/squashfs/squashfs.ko.zst",
                    "loaded module virtio_blk from kernel/drivers/block/virtio_blk.ko.xz",
                    "loaded module overlay from kernel/fs/overlayfs/overlay.ko.gz",
                ],
                &[],
            ),
        ),
        // dracut stays PID 1; its mount hook runs isoroot, which mounts the live root.
        Case {
            initrd: "dracut-isoroot",
            memory_mb: 1024,
            ..Case::new(
                "dracut with isoroot's module (dracut --add isoroot), iso=",
                &["ext4-debian"],
                format!("iso=UUID={EXT4_UUID}:/isos/debian-live.iso"),
                and(via(debian(), &scan("ext4")), &["the live root is on /sysroot; dracut goes on to /sbin/init"], &[]),
            )
        },
        // Handoff: isoroot finds the ISO where the distro's own ISO support fails (exFAT, a
        // space in the path) and the distro's initrd boots it from /dev/mapper/isoroot.
        combined(
            "handoff to live-boot, exFAT, a space in the path",
            "initramfs-tools",
            &["exfat-generic"],
            format!("boot=live live-media=/dev/mapper/isoroot {}", exfat(EXFAT_DEBIAN)),
            and(
                via(marker_line("none", "overlay", "/run/live/medium", "debian", "debian", "/sbin/init"), &scan("exfat")),
                &[
                    "handing /dev/mapper/isoroot to the distro's /init",
                    "mount: /dev/mapper/isoroot /run/live/medium iso9660 ro",
                ],
                &[],
            ),
        ),
        combined(
            "handoff to dracut dmsquash-live, exFAT, a space in the path",
            "dracut",
            &["exfat-generic"],
            format!("root=live:/dev/mapper/isoroot rd.live.image {}", exfat(EXFAT_FEDORA)),
            and(
                // dracut puts a dm snapshot (live-rw) over the nested ext4 image.
                via(marker_line("none", "ext4", "/run/initramfs/live", "fedora", "fedora", "/sbin/init"), &scan("exfat")),
                &[
                    "handing /dev/mapper/isoroot to the distro's /init",
                    "mount: /dev/mapper/isoroot /run/initramfs/live iso9660 ro",
                ],
                &[],
            ),
        ),
        // Real initrds of distros Debian does not package, built from their sources
        // (crate::distros::third_party): skipped where the sources are not there.
        combined(
            "handoff to casper (Ubuntu's casper 1.461), exFAT, a space in the path",
            "casper",
            &["exfat-generic"],
            format!(
                "boot=casper live-media=/dev/mapper/isoroot layerfs-path=minimal.standard.live.squashfs {}",
                exfat(EXFAT_UBUNTU)
            ),
            and(
                via(
                    marker_line(
                        "none",
                        "overlay",
                        "/cdrom",
                        "minimal.standard.live",
                        "minimal,minimal.standard,minimal.standard.live",
                        "/sbin/init",
                    ),
                    &scan("exfat"),
                ),
                &["handing /dev/mapper/isoroot to the distro's /init", "mount: /dev/mapper/isoroot /cdrom iso9660 ro"],
                &[],
            ),
        ),
        combined(
            "handoff to archiso (Arch's mkinitcpio 41, archiso 73), exFAT, a space in the path",
            "mkinitcpio",
            &["exfat-generic"],
            format!("archisobasedir=arch archisodevice=/dev/mapper/isoroot {}", exfat(EXFAT_ARCH)),
            and(
                via(marker_line("none", "overlay", "/run/archiso/bootmnt", "arch", "arch", "/sbin/init"), &scan("exfat")),
                &[
                    "handing /dev/mapper/isoroot to the distro's /init",
                    "mount: /dev/mapper/isoroot /run/archiso/bootmnt iso9660 ro",
                ],
                &[],
            ),
        ),
    ]
}
