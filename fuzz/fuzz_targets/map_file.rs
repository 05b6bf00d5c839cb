#![no_main]
libfuzzer_sys::fuzz_target!(|text: &str| {
    if let Ok(mut c) = isoroot_init::cmdline::parse("iso.map=/m") {
        let _ = c.apply_map(text);
    }
});
