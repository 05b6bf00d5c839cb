#![no_main]
// An ISO's own boot menus: the input's NUL-separated parts are the files a menu reads
// (GRUB's menu and one it sources, isolinux's and one it includes, a systemd-boot entry).
const FILES: [&str; 5] = [
    "/boot/grub/grub.cfg",
    "/boot/grub/x.cfg",
    "/isolinux/isolinux.cfg",
    "/isolinux/menu.cfg",
    "/loader/entries/a.conf",
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let parts: Vec<String> = data.split(|&b| b == 0).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    let read = |path: &str| FILES.iter().position(|f| *f == path).and_then(|i| parts.get(i).cloned());
    let list = |dir: &str| if dir == "/loader/entries" { vec!["a.conf".to_string()] } else { Vec::new() };
    for e in isoroot_profiles::bootcfg::read(&read, &list) {
        assert!(e.kernel.len() > 1 && e.kernel.starts_with('/'));
        // What a boot entry gets of them stays within a kernel command line.
        let args = isoroot_profiles::bootcfg::merged_args("boot=live", &e.args);
        assert!(args.iter().map(|a| a.len() + 1).sum::<usize>() <= 2048 + "boot=live ".len());
    }
});
