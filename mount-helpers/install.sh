#!/bin/sh
# Installs jigdofs and its mount helpers (as root):
#   jigdofs, jigdo-loop-mount, jigdo-write-usb -> $PREFIX/bin (default /usr/local)
#   mount.jigdofs -> /sbin (mount(8) looks for helpers there; /usr/sbin on merged-/usr systems)
# usage: mount-helpers/install.sh [PATH-TO-jigdofs-BINARY]   (default: .build/release/jigdofs)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
binary=${1:-$here/../.build/release/jigdofs}
prefix=${PREFIX:-/usr/local}
[ -x "$binary" ] || { echo "install.sh: $binary: not built (swift build -c release)" >&2; exit 1; }
install -D -m 0755 "$binary" "$prefix/bin/jigdofs"
install -m 0755 "$here/jigdo-loop-mount" "$here/jigdo-write-usb" "$prefix/bin/"
install -m 0755 "$here/mount.jigdofs" /sbin/mount.jigdofs
echo "installed: $prefix/bin/jigdofs, $prefix/bin/jigdo-loop-mount, $prefix/bin/jigdo-write-usb, /sbin/mount.jigdofs"
