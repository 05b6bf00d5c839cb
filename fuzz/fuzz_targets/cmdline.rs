#![no_main]
libfuzzer_sys::fuzz_target!(|line: &str| {
    let _ = isoroot_init::cmdline::parse(line);
});
