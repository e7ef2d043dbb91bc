#!/usr/bin/env bash
# Builds a small release with the real generators, for tests and the demo:
#   OUT/tree/             the release tree (packages; some < 1 KiB, some empty, names with
#                         spaces, one file duplicated under two paths)
#   OUT/release.iso       made by xorriso from tree/
#   OUT/jf-md5-gz/        jigdo-file make-template, MD5,    gzip  template  (release.jigdo/.template)
#   OUT/jf-md5-bz2/       jigdo-file make-template, MD5,    bzip2 template
#   OUT/jf-sha256-gz/     jigdo-file make-template, SHA256, gzip  template
#   OUT/jf-sha256-bz2/    jigdo-file make-template, SHA256, bzip2 template
#   OUT/jte-md5-gz/       xorriso/libjte (-jigdo-jigdo, -md5-list),                gzip
#   OUT/jte-sha256-bz2/   xorriso/libjte (-checksum-list, -jigdo-checksum-algorithm sha256), bzip2
#   OUT/jte-*/release.iso the ISO libjte wrote alongside (identical content, own bytes: its
#                         volume dated 2020-01-01 12:00, so it differs from release.iso)
# Each variant's .jigdo has a [Servers] label Base pointing at ../tree/ (file: URL), so the
# parts are found by --map Base=OUT/tree, --scan OUT/tree, or the jigdo's own file: server.
#
# usage: make-release.sh OUT [NFILES] [SEED]
set -euo pipefail
out=${1:?usage: make-release.sh OUT [NFILES] [SEED]}
nfiles=${2:-300}
seed=${3:-1}
mkdir -p "$out"
out=$(cd "$out" && pwd)
tree=$out/tree
rm -rf "$tree" "$out"/jf-* "$out"/jte-* "$out/release.iso"
mkdir -p "$tree/Packages" "$tree/repodata" "$tree/extra dir"

# Deterministic pseudo-random content: python's RNG seeded per file.
python3 - "$tree" "$nfiles" "$seed" <<'PY'
import os, random, sys
tree, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
def blob(size):
    return rng.randbytes(size)
sizes = []
for i in range(n):
    r = rng.random()
    if r < 0.10:   size = rng.randrange(1, 1024)          # below jigdo's 1 KiB minimum
    elif r < 0.13: size = 0                               # empty
    elif r < 0.80: size = rng.randrange(1024, 64 * 1024)
    elif r < 0.97: size = rng.randrange(64 * 1024, 600 * 1024)
    else:          size = rng.randrange(600 * 1024, 3 * 1024 * 1024)
    sizes.append(size)
for i, size in enumerate(sizes):
    sub = "Packages" if i % 5 else "repodata"
    name = f"pkg-{i:04d}-1.el7.x86_64.rpm" if i % 17 else f"pkg {i:04d} with space.rpm"
    with open(os.path.join(tree, sub, name), "wb") as f:
        f.write(blob(size))
# Compressible data (text-like) so templates hold real compressed chunks.
with open(os.path.join(tree, "repodata", "primary.xml"), "w") as f:
    for i in range(4000):
        f.write(f"<package><name>pkg-{i}</name><version>1.{i % 7}</version></package>\n")
PY
# The same package under a second path.
pkgs=("$tree"/Packages/*)   # (not `ls | head`: SIGPIPE under pipefail on big trees)
first=$(basename "${pkgs[0]}")
cp "$tree/Packages/$first" "$tree/extra dir/copy of $first"
echo "jigdofs test release $seed" > "$tree/README.txt"

xorriso -as mkisofs -quiet -R -J -V JIGDOFS_TEST -o "$out/release.iso" "$tree" 2>/dev/null

make_jf() { # name checksum compress-flag
  local d=$out/$1
  mkdir -p "$d"
  jigdo-file make-template -r quiet --force -i "$out/release.iso" -j "$d/release.jigdo" -t "$d/release.template" \
    -C "$2" $3 --label Base="$tree" --uri Base="file:../tree/" "$tree//"
}
make_jf jf-md5-gz md5 --gzip
make_jf jf-md5-bz2 md5 --bzip2
make_jf jf-sha256-gz sha256 --gzip
make_jf jf-sha256-bz2 sha256 --bzip2

checksum_list() { # tool -> libjte checksum list: "<hex>  <size>  <path>"
  find "$tree" -type f -size +0 -print0 | sort -z | while IFS= read -r -d '' f; do
    printf '%s  %12s  %s\n' "$("$1" < "$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f"
  done
}
make_jte() { # name algo compress
  local d=$out/$1
  mkdir -p "$d"
  checksum_list "${2}sum" > "$d/checksums.list"
  local listopt=-checksum-list
  [ "$2" = md5 ] && listopt=-md5-list
  # A date of its own: two xorriso runs within one second write the same bytes, and the
  # tests that plant one image's files in place of another's need images that differ.
  (cd "$d" && xorriso -as mkisofs -quiet -R -J -V JIGDOFS_TEST -o release.iso \
    --modification-date=2020010112000000 \
    -jigdo-jigdo release.jigdo -jigdo-template release.template \
    -jigdo-map Base="$tree/" $listopt checksums.list \
    -jigdo-checksum-algorithm "$2" -jigdo-template-compress "$3" "$tree" 2>/dev/null)
  # libjte leaves [Servers] empty for the release scripts to fill in; do what they do.
  printf '\n[Servers]\nBase=file:../tree/\n' >> "$d/release.jigdo"
  rm -f "$d/checksums.list"
}
make_jte jte-md5-gz md5 gzip
make_jte jte-sha256-bz2 sha256 bzip2
echo "$out"
