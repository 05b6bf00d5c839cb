#!/bin/bash
# dracut module for isoroot: with iso= on the kernel command line, isoroot finds the ISO
# file, attaches it and mounts the live root on $NEWROOT from dracut's mount hook. dracut
# stays PID 1 and switches root as usual. Enable with `dracut --add isoroot`.

# The static init, installed by the user (README); ISOROOT_INIT names another.
isoroot_binary() {
    echo "${ISOROOT_INIT:-/usr/sbin/isoroot-init}"
}

check() {
    require_binaries "$(isoroot_binary)" || return 1
    # Only when asked for: nothing on a host says a live ISO will be booted.
    return 255
}

depends() {
    echo dm
    return 0
}

# What isoroot may need to find the ISO and mount the live root; the same list isoroot's
# own initramfs loads at every boot.
isoroot_modules() {
    echo loop dm-mod dm-zero isofs udf squashfs erofs overlay ext4 vfat exfat ntfs3 \
        nls_utf8 nls_cp437 nls_ascii nls_iso8859-1
}

installkernel() {
    # Missing ones (ntfs3 on Debian 12) are skipped, as isoroot skips them at boot.
    hostonly='' instmods $(isoroot_modules)
}

install() {
    inst_binary "$(isoroot_binary)" /usr/sbin/isoroot-init
    mkdir -p "$initdir/etc/isoroot"
    isoroot_modules | tr ' ' '\n' > "$initdir/etc/isoroot/modules.load"
    inst_hook cmdline 90 "$moddir/parse-isoroot.sh"
    inst_hook mount 90 "$moddir/mount-isoroot.sh"
}
