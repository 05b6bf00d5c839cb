#!/bin/bash
# Builds a real archiso initramfs (Arch's mkinitcpio 41 with mkinitcpio-archiso 73, from
# ../shared/third-party) on Debian for kernel KVER, without installing either: what meson's
# configure step fills in is filled in with sed, and Debian's paths replace Arch's.
# Usage: DEBS=DIR mkinitcpio.sh THIRD_PARTY_DIR KVER WORK OUT (DEBS keeps the downloaded
# busybox package; the first build needs apt's package lists and the network).
set -euo pipefail
TP=$1 KVER=$2 W=$3 OUT=$4
L=$W/lib/initcpio E=$W/etc
rm -rf "$W/mkinitcpio-41" "$W/mkinitcpio-archiso-73" "$L" "$E" "$W/bin" "$W/shim" "$W/busybox"
mkdir -p "$DEBS" "$L/hooks" "$L/install" "$E/initcpio/hooks" "$E/initcpio/install" "$W/bin" "$W/shim"
# Debian's dynamically linked busybox (not installed: it conflicts with busybox-static),
# because busybox-static's shell runs its own mount and losetup even where util-linux's are
# in the image, and archiso needs util-linux's (mount --mkdir, losetup --find --show).
(cd "$DEBS" && { ls busybox_*.deb >/dev/null 2>&1 || apt-get download -q busybox; })
dpkg-deb -x "$(ls "$DEBS"/busybox_*.deb | head -n1)" "$W/busybox"
tar -xzf "$TP/mkinitcpio-41.tar.gz" -C "$W"
tar -xzf "$TP/mkinitcpio-archiso-73.tar.gz" -C "$W"
M=$W/mkinitcpio-41 A=$W/mkinitcpio-archiso-73
cp "$M"/{functions,init,init_functions} "$L/"
cp -a "$M"/hooks/. "$A"/hooks/. "$L/hooks/"
cp -a "$M"/install/. "$A"/install/. "$L/install/"
rm -f "$L"/hooks/meson.build "$L"/install/meson.build
cp "$M/mkinitcpio" "$W/bin/mkinitcpio"
sed -i -e 's|@VERSION@|41|g' \
  -e "s|@INITCPIO_LIBDIR@|$L|g" -e "s|@INITCPIO_SYSCONFDIR@|$E/initcpio|g" -e "s|@SYSCONFDIR@|$E|g" \
  -e "s|@BINDIR@|$W/shim:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin|g" \
  -e 's|@UDEVD_PATH@|/usr/lib/systemd/systemd-udevd|g' -e 's|@TMPFILES_PATH@|/usr/bin/systemd-tmpfiles|g' \
  -e 's|@VCONSOLE_CONF@|/etc/vconsole.conf|g' \
  "$W/bin/mkinitcpio"
find "$L" -type f -exec sed -i -e 's|@VERSION@|41|g' \
  -e "s|@INITCPIO_LIBDIR@|$L|g" -e "s|@INITCPIO_SYSCONFDIR@|$E/initcpio|g" -e "s|@SYSCONFDIR@|$E|g" \
  -e "s|@BINDIR@|$W/shim:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin|g" \
  -e 's|@UDEVD_PATH@|/usr/lib/systemd/systemd-udevd|g' -e 's|@TMPFILES_PATH@|/usr/bin/systemd-tmpfiles|g' \
  -e 's|@VCONSOLE_CONF@|/etc/vconsole.conf|g' {} +
sed -i "s|/usr/lib/initcpio/busybox|$W/busybox/bin/busybox|g" "$L/install/base"
sed -i -e 's|/usr/lib/libkmod.so.2|/usr/lib/x86_64-linux-gnu/libkmod.so.2|' \
       -e '\|^ *\/etc/udev/hwdb.bin$|d' -e 's|/usr/lib/udev/hwdb.bin \\$|/usr/lib/udev/hwdb.bin|' "$L/install/udev"
sed -i 's|add_udev_rule 10-dm.rules|add_udev_rule 55-dm.rules|' "$L/install/archiso"
# No bsdtar (libarchive-tools) here: its two calls in create_image are a pass-through of the
# NUL-separated file list and GNU cpio writing newc owned by root.
cat > "$W/shim/bsdtar" <<'SH'
#!/bin/sh
case " $* " in
  *" -T - "*)             exec cat ;;
  *" --format=newc @- "*) exec cpio --null --create --format=newc --owner=0:0 --reproducible --quiet ;;
esac
echo "bsdtar shim: unsupported call: $*" >&2; exit 1
SH
chmod 755 "$W/shim/bsdtar" "$W/bin/mkinitcpio"
cat > "$E/mkinitcpio.conf" <<'CONF'
MODULES=()
BINARIES=(mountpoint)
FILES=()
HOOKS=(base udev modconf block filesystems archiso archiso_loop_mnt)
COMPRESSION="zstd"
CONF
"$W/bin/mkinitcpio" -c "$E/mkinitcpio.conf" -k "$KVER" -t "$W" -g "$OUT" --nopost -n
chmod 644 "$OUT"
