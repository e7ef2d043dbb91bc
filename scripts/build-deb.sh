#!/usr/bin/env bash
# Builds dist/jigdofs_VERSION_amd64.deb: a self-contained package (the Swift runtime linked
# statically; it needs only Debian's libraries on the target, no toolchain).
#
#   bash scripts/build-deb.sh            # release build, man pages, completions, package, lintian
#
# Contents: /usr/bin/jigdofs, /usr/bin/jigdo-loop-mount, /usr/bin/jigdo-write-usb,
# /sbin/mount.jigdofs and /sbin/mount.fuse.jigdofs (links to the binary, which is a mount helper
# when called by those names), man pages (jigdofs and each subcommand from swift-argument-
# parser's generate-manual plugin; the helpers and jigdofs.conf(5) from packaging/man),
# bash/zsh/fish completions, /etc/jigdofs.conf (conffile), systemd and fstab examples,
# copyright and changelog. Depends: from dpkg-shlibdeps, plus fuse3 (fusermount3, mount.fuse3).
#
# The release build uses its own scratch directory (.build-release); .build gets the debug
# build the man page plugin runs on. Environment: OUT_DIR (default dist/), SCRATCH
# (default .build-release), LINTIAN=0 skips lintian.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
. scripts/env.sh
out=${OUT_DIR:-$root/dist}
scratch=${SCRATCH:-$root/.build-release}
say() { printf 'build-deb: %s\n' "$*" >&2; }

# Man pages: swift-argument-parser's generate-manual plugin, run on the debug build in .build
# (the pages do not depend on the configuration; run in the release scratch directory the
# plugin would relink the release binary without --static-swift-stdlib, and switching between
# the two recompiles everything).
say "man pages (swift package generate-manual)"
swift package --allow-writing-to-package-directory \
  generate-manual --multi-page --configuration debug \
  --authors "jigdofs maintainers" --section 1 >/dev/null
manual=$root/.build/plugins/GenerateManual/outputs/jigdofs
[ -f "$manual/jigdofs.1" ] || { say "generate-manual wrote no $manual/jigdofs.1"; exit 1; }

say "release build (--static-swift-stdlib)"
binary=$(swift build -c release --static-swift-stdlib --scratch-path "$scratch" --show-bin-path)/jigdofs
# SwiftPM does not relink a binary it linked without --static-swift-stdlib: always relink.
rm -f "$binary"
swift build -c release --static-swift-stdlib --scratch-path "$scratch" >/dev/null
# Nothing of the toolchain at run time: no RUNPATH/RPATH into it, no library from it.
if readelf -d "$binary" | grep -E 'RUNPATH|RPATH' | grep -q swift; then
  say "$binary still has a RUNPATH into the toolchain"; exit 1
fi
if ldd "$binary" | grep -q -e /opt/swift -e 'not found'; then
  ldd "$binary" >&2; say "$binary needs libraries that are not Debian's"; exit 1
fi
version=$("$binary" --version)
deb=$out/jigdofs_${version}_amd64.deb

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=$stage/pkg
doc=$pkg/usr/share/doc/jigdofs
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/sbin" "$pkg/etc" "$doc/examples" \
  "$pkg/usr/share/man/man1" "$pkg/usr/share/man/man5" "$pkg/usr/share/man/man8" \
  "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
  "$pkg/usr/share/fish/vendor_completions.d"

install -m 0755 "$binary" "$pkg/usr/bin/jigdofs"
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$pkg/usr/bin/jigdofs"
install -m 0755 mount-helpers/jigdo-loop-mount mount-helpers/jigdo-write-usb "$pkg/usr/bin/"
# Across top-level directories: absolute links (Debian policy 10.5).
ln -s /usr/bin/jigdofs "$pkg/sbin/mount.jigdofs"
ln -s /usr/bin/jigdofs "$pkg/sbin/mount.fuse.jigdofs"
install -m 0644 packaging/jigdofs.conf "$pkg/etc/jigdofs.conf"

# generate-manual names a subcommand's page jigdofs.mount.1; jigdofs-mount(1), the usual
# spelling, links to it.
for page in "$manual"/*.1; do
  name=$(basename "$page")
  [ "$name" = jigdofs.help.1 ] && continue   # ArgumentParser's own `help` command
  gzip -9n < "$page" > "$pkg/usr/share/man/man1/$name.gz"
  [ "$name" = jigdofs.1 ] || ln -s "$name.gz" "$pkg/usr/share/man/man1/$(echo "${name%.1}" | tr . -).1.gz"
done
for page in packaging/man/*.1; do gzip -9n < "$page" > "$pkg/usr/share/man/man1/$(basename "$page").gz"; done
gzip -9n < packaging/man/jigdofs.conf.5 > "$pkg/usr/share/man/man5/jigdofs.conf.5.gz"
gzip -9n < packaging/man/mount.jigdofs.8 > "$pkg/usr/share/man/man8/mount.jigdofs.8.gz"
ln -s mount.jigdofs.8.gz "$pkg/usr/share/man/man8/mount.fuse.jigdofs.8.gz"

# (bash-completion files are sourced: no #! line)
"$binary" --generate-completion-script bash | sed '1{/^#!/d}' > "$pkg/usr/share/bash-completion/completions/jigdofs"
"$binary" --generate-completion-script zsh > "$pkg/usr/share/zsh/vendor-completions/_jigdofs"
"$binary" --generate-completion-script fish > "$pkg/usr/share/fish/vendor_completions.d/jigdofs.fish"

install -m 0644 packaging/copyright "$doc/copyright"
gzip -9n < packaging/changelog > "$doc/changelog.gz"
install -m 0644 packaging/examples/* "$doc/examples/"
gzip -9n < README.md > "$doc/README.md.gz"

# Depends: the libraries the binary links, as dpkg-shlibdeps finds them.
mkdir -p "$stage/src/debian"
printf 'Source: jigdofs\n\nPackage: jigdofs\nArchitecture: amd64\n' > "$stage/src/debian/control"
shlibs=$(cd "$stage/src" && dpkg-shlibdeps -O -e"$pkg/usr/bin/jigdofs" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || { say "dpkg-shlibdeps found no dependencies"; exit 1; }

find "$pkg" -type d -exec chmod 0755 {} +
size=$(du -k -s --exclude=DEBIAN "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<EOF
Package: jigdofs
Version: $version
Architecture: amd64
Maintainer: jigdofs maintainers <maintainers@users.noreply.r-seed-619ed24e.example>
Installed-Size: $size
Depends: $shlibs, fuse3
Section: utils
Priority: optional
Description: FUSE filesystem that shows jigdo images as ordinary files
 Releases such as Debian and SME Server publish their ISO images as jigdo
 files (a .jigdo list of parts and a .template). jigdofs mounts the .jigdo
 and shows the image at once, with its exact size; every read is answered
 from the template, from local copies of the parts (a scanned directory, a
 mirror, an older ISO) or from parts downloaded on demand and checked
 against their checksums. mount -o loop, dd to a USB stick and sha256sum
 work on an image that is never written to disk.
 .
 The package includes mount(8) helpers for /etc/fstab (types jigdofs and
 fuse.jigdofs, systemd automount), jigdo-loop-mount and jigdo-write-usb.
EOF
echo /etc/jigdofs.conf > "$pkg/DEBIAN/conffiles"
(cd "$pkg" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) > "$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/conffiles" "$pkg/DEBIAN/md5sums"

mkdir -p "$out"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
say "$deb ($(du -h "$deb" | cut -f1); binary $(du -h "$pkg/usr/bin/jigdofs" | cut -f1))"
if [ "${LINTIAN:-1}" != 0 ]; then
  # Errors fail the build; warnings are shown.
  lintian --fail-on error "$deb" >&2
fi
echo "$deb"
