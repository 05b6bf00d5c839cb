#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoroot_fs::superblock::probe(data);
    let _ = isoroot_fs::parttable::read(data, 512, 1);
    let _ = isoroot_fs::parttable::table(data, 512);
});
