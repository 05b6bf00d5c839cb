fn main() {
    // In dracut's initramfs (dracut-module/90isoroot) isoroot is a program its mount hook
    // runs: `isoroot-init --newroot DIR`. As PID 1 the arguments are the kernel's.
    let args: Vec<String> = std::env::args().collect();
    if std::process::id() != 1 && args.len() == 3 && args[1] == "--newroot" {
        if let Err(e) = isoroot_init::boot::mount_only(std::path::Path::new(&args[2])) {
            isoroot_init::error!("{e:#}");
            std::process::exit(1);
        }
        return;
    }
    isoroot_init::pid1()
}
