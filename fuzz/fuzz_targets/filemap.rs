#![no_main]
use isoroot_fs::superblock::FsKind;

// The first byte picks the reader; the rest is the device.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, dev)) = data.split_first() else { return };
    let kind = [FsKind::Ext4, FsKind::Vfat, FsKind::Exfat, FsKind::Ntfs][usize::from(pick % 4)];
    let _ = isoroot_fs::filemap::map(dev, kind, "/isos/a b.iso");
});
