#![no_main]
libfuzzer_sys::fuzz_target!(|text: &str| {
    if let Ok(p) = isoroot_profiles::parse_compact(text) {
        // What parses must write back to the same profiles.
        assert_eq!(isoroot_profiles::parse_compact(&isoroot_profiles::to_compact(&p)).unwrap(), p);
    }
});
