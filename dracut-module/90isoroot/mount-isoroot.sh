#!/bin/sh
# dracut's mount hook: isoroot mounts the live root on $NEWROOT, or says why it could not.
if [ "$root" = isoroot ] && ! ismounted "$NEWROOT"; then
    if ! /usr/sbin/isoroot-init --newroot "$NEWROOT"; then
        emergency_shell -n isoroot "isoroot could not mount the live root (the messages above say why)"
    fi
fi
