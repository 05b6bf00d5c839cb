#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoroot_init::superblock::probe(data);
    let _ = isoroot_init::parttable::read(data, 512, 1);
});
