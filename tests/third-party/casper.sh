#!/bin/sh
# Builds a real casper initrd (Ubuntu's casper 1.461, from ../shared/third-party) with
# Debian's initramfs-tools for kernel KVER, without touching the system: casper's hooks and
# scripts go into a copy of /etc/initramfs-tools used as mkinitramfs's CONFDIR. mkinitramfs
# still adds the hooks and scripts installed under /usr/share/initramfs-tools (live-boot's
# among them, unused with boot=casper), as it would on an Ubuntu build machine with them.
# Usage: casper.sh TARBALL KVER WORK OUT
set -eu
TARBALL=$1 KVER=$2 W=$3 OUT=$4
SRC=$W/casper-1.461 C=$W/conf
rm -rf "$SRC" "$C"
mkdir -p "$W"
tar -xzf "$TARBALL" -C "$W"
cp -a /etc/initramfs-tools "$C"
sed -i -e 's/^MODULES=.*/MODULES=most/' -e 's/^BUSYBOX=.*/BUSYBOX=y/' "$C/initramfs.conf"
echo 'BOOT=casper' >> "$C/initramfs.conf"
# casper, casper-functions, casper-helpers, casper-premount/, casper-bottom/
cp -a "$SRC/scripts/." "$C/scripts/"
# The hook copies files from where Ubuntu's casper package installs them: point it at the
# sources; eject (only for driver-update discs) is optional on Debian.
sed -e "s|copy_exec /usr/share/casper/|copy_exec $SRC/bin/|" \
    -e 's|^copy_exec /usr/bin/eject /bin$|copy_exec /usr/bin/eject /bin \|\| true|' \
    -e 's|cp /usr/share/initramfs-tools/scripts/casper-|cp "$CONFDIR"/scripts/casper-|' \
    -e "s|^if \[ -e /etc/casper.conf \]; then|if true; then|" \
    -e "s|cp /etc/casper.conf|cp $SRC/casper.conf|" \
    "$SRC/hooks/casper" > "$C/hooks/casper"
chmod 755 "$C/hooks/casper"
TMPDIR=$W mkinitramfs -d "$C" -o "$OUT" "$KVER"
