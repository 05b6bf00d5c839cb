#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = isoroot_init::modindex::entries(data);
});
