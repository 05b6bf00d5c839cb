#!/bin/sh
# iso= on the kernel command line: the root is the live ISO's, and isoroot mounts it.
if getarg iso= > /dev/null; then
    root=isoroot
    rootok=1
    info "isoroot: iso=$(getarg iso=) names the live ISO"
fi
