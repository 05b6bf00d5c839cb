#![no_main]
// The init's check at boot, then the host's reader as `isoroot inspect` drives it: a
// downloaded ISO is as hostile as a disk.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoroot_fs::iso9660::check(data, data.len() as u64, "/fuzz.iso");
    let Ok(iso) = isoroot_fs::iso9660::IsoFs::open(data) else { return };
    for path in ["/boot/grub/grub.cfg", "/live", "/casper/vmlinuz"] {
        if let Ok(Some(node)) = iso.lookup(path) {
            let _ = if node.dir { iso.read_dir(&node).map(|_| ()) } else { iso.read_file(&node, 1 << 16).map(|_| ()) };
        }
    }
});
