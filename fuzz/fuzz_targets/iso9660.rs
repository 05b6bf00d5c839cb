#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoroot_init::iso9660::check(data, data.len() as u64, "/fuzz.iso");
});
