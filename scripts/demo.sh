#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root), builds jigdofs, builds a small demo release with
# xorriso + jigdo-file, and shows what jigdofs does with it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
bash scripts/install-deps.sh
swift build -c release
bin=$(swift build -c release --show-bin-path)/jigdofs
demo=${DEMO_DIR:-$PWD/demo}
echo "== building a demo release in $demo (xorriso + jigdo-file)"
Tests/Fixtures/make-release.sh "$demo" 300 7 >/dev/null
rel=$demo/jf-md5-gz
echo
echo "== jigdofs info $rel/release.jigdo"
"$bin" info "$rel/release.jigdo"
echo
echo "== jigdofs make-image --scan $demo/tree (parts found by size, then checksum)"
rm -f "$demo/out.iso"
"$bin" make-image "$rel/release.jigdo" --scan "$demo/tree" -o "$demo/out.iso"
echo
echo "== cmp with the ISO xorriso made"
cmp "$demo/out.iso" "$demo/release.iso" && echo "identical: $(stat -c %s "$demo/out.iso") bytes"
