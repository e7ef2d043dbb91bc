#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root): installs what is missing, builds jigdofs and
# installs it with its mount helpers, builds a small demo release with xorriso + jigdo-file,
# then mounts it and browses it. Everything it mounts is unmounted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
bash scripts/install-deps.sh
swift build -c release
sh mount-helpers/install.sh "$(swift build -c release --show-bin-path)/jigdofs" >/dev/null
bin=/usr/local/bin/jigdofs
demo=${DEMO_DIR:-$PWD/demo}
mnt=$demo/mnt
cleanup() { fusermount3 -u "$mnt" 2>/dev/null || true; }
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
step "building a demo release in $demo (xorriso + jigdo-file + libjte)"
Tests/Fixtures/make-release.sh "$demo" 300 7 >/dev/null
mkdir -p "$demo/release" "$mnt"
cp "$demo/jf-md5-gz/release.jigdo" "$demo/release/demo-1.0-x86_64.jigdo"
cp "$demo/jf-md5-gz/release.template" "$demo/release/release.template"
sed -i 's|^Base=.*|Base=http://mirror.invalid/demo/|' "$demo/release/demo-1.0-x86_64.jigdo"
sed -i 's|^Filename=.*|Filename=demo-1.0-x86_64.iso|' "$demo/release/demo-1.0-x86_64.jigdo"
echo "release: $(ls "$demo/release" | tr '\n' ' ')  packages: $demo/tree"

step "jigdofs info $demo/release/demo-1.0-x86_64.jigdo"
"$bin" info "$demo/release/demo-1.0-x86_64.jigdo"

step "jigdofs mount --scan $demo/tree $demo/release $mnt"
fusermount3 -u "$mnt" 2>/dev/null || true
"$bin" mount --scan "$demo/tree" "$demo/release" "$mnt"
ls -l "$mnt"

step "the ISO's own directory tree, read straight from the template (jigdofs ls)"
"$bin" ls "$demo/release/demo-1.0-x86_64.jigdo" / -l | head -n 8

step "browsing the files inside the image, no root or loop device needed ($mnt/demo-1.0-x86_64.iso.d)"
ls -l "$mnt/demo-1.0-x86_64.iso.d" | head -n 6
cmp "$mnt/demo-1.0-x86_64.iso.d/repodata/primary.xml" "$demo/tree/repodata/primary.xml" && echo "repodata/primary.xml read through the mount equals the package tree's copy"

step "xorriso reads the virtual ISO through the mount"
xorriso -indev "$mnt/demo-1.0-x86_64.iso" -find / -type f 2>/dev/null | head -n 5

step "sha256sum of the virtual ISO and of the ISO xorriso made"
sha256sum "$mnt/demo-1.0-x86_64.iso" "$demo/release.iso"
cmp "$mnt/demo-1.0-x86_64.iso" "$demo/release.iso" && echo "identical, byte for byte"

step "make-image writes a verified copy (nothing is left behind on failure)"
rm -f "$demo/out.iso"
"$bin" make-image "$demo/release/demo-1.0-x86_64.jigdo" --scan "$demo/tree" -o "$demo/out.iso"

step "unmounting"
fusermount3 -u "$mnt" && echo "unmounted $mnt"
