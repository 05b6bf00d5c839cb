#![no_main]
use isoroot_fs::superblock::FsKind;

// The first byte picks the reader; the rest is the device. Both what `attach` asks (one
// file's map) and what the boot-time picker asks (every ISO, each read through its map).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, dev)) = data.split_first() else { return };
    let kind = [FsKind::Ext4, FsKind::Vfat, FsKind::Exfat, FsKind::Ntfs][usize::from(pick % 4)];
    let _ = isoroot_fs::filemap::map(dev, kind, "/isos/a b.iso");
    for path in isoroot_fs::filemap::isos(dev, kind).unwrap_or_default().paths.iter().take(4) {
        if let Ok(map) = isoroot_fs::filemap::map(dev, kind, path) {
            let file = isoroot_fs::filemap::MappedFile::new(dev, &map);
            let _ = isoroot_fs::iso9660::IsoFs::open(&file);
        }
    }
});
