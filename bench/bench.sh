#!/usr/bin/env bash
# Benchmark: assembling a ~1 GB release from local parts, jigdofs against its peers, in one run.
# Prints one table; figures go into the README by hand. Not a test: it times things.
#
# usage: bench/bench.sh [WORKDIR] [NFILES]     (default /tmp/jigdofs-bench, 7000 files ≈ 1 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
work=${1:-/tmp/jigdofs-bench}
nfiles=${2:-7000}
swift build -c release >/dev/null
bin=$(swift build -c release --show-bin-path)/jigdofs
mkdir -p "$work"
if [ ! -f "$work/release.iso" ] || [ "$(cat "$work/.nfiles" 2>/dev/null)" != "$nfiles" ]; then
  echo "building a release of $nfiles files in $work ..." >&2
  Tests/Fixtures/make-release.sh "$work" "$nfiles" 42 >/dev/null
  echo "$nfiles" > "$work/.nfiles"
fi
rel=$work/jf-md5-gz
iso=$work/release.iso
size=$(stat -c %s "$iso")
parts=$(grep -c '^[A-Za-z0-9_-]\{22\}=' "$rel/release.jigdo" || true)

# Every contender reads the same files; warm the page cache once so all compete on CPU.
cat "$work/tree" -r >/dev/null 2>&1 || find "$work/tree" -type f -exec cat {} + >/dev/null
cat "$iso" >/dev/null

measure() { # label command... -> "label seconds peakRSS(MiB)"
  local label=$1; shift
  local t0 t1 rss
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/.rss" "$@" >/dev/null 2>"$work/.err" || { echo "$label FAILED: $(tail -1 "$work/.err")" >&2; return 0; }
  t1=$(date +%s.%N)
  rss=$(( $(tail -1 "$work/.rss") / 1024 ))
  printf '%-44s %8.2f s %8.0f MB/s %6d MiB\n' "$label" "$(echo "$t1 - $t0" | bc)" "$(echo "$size / ($t1 - $t0) / 1000000" | bc -l)" "$rss"
}

printf 'image %s: %d bytes, %d parts, MD5, %s cores\n' "$(basename "$iso")" "$size" "$parts" "$(nproc)"
printf '%-44s %10s %13s %10s\n' "what" "time" "throughput" "peak RSS"
measure "cat release.iso > /dev/null" cat "$iso"
rm -f "$work/out-jigdofs.iso"
measure "jigdofs make-image --map (checks MD5)" "$bin" make-image "$rel/release.jigdo" --map Base="$work/tree" -o "$work/out-jigdofs.iso"
cmp "$work/out-jigdofs.iso" "$iso" || echo "jigdofs output DIFFERS" >&2
rm -f "$work/out-jigdofs.iso"
measure "jigdofs verify --map (read + MD5 only)" "$bin" verify "$rel/release.jigdo" --map Base="$work/tree"
# jigit-mkimage cannot read jigdo-file's quoted paths with spaces ('Base:a b.rpm'), so it gets
# its native input: an MD5 list (as mirrors publish them), made here outside the timing.
if [ ! -s "$work/md5.list" ]; then
  find "$work/tree" -type f -size +0 -print0 | sort -z | while IFS= read -r -d '' f; do
    printf '%s  %12s  %s\n' "$(md5sum < "$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f"
  done > "$work/md5.list"
fi
rm -f "$work/out-jigit.iso"
measure "jigit-mkimage -f md5.list (checks MD5)" jigit-mkimage -f "$work/md5.list" -t "$rel/release.template" -o "$work/out-jigit.iso"
cmp "$work/out-jigit.iso" "$iso" || echo "jigit-mkimage output DIFFERS" >&2
rm -f "$work/out-jigit.iso" "$work/out-jigdo-file.iso"
measure "jigdo-file make-image" jigdo-file make-image -r quiet --image="$work/out-jigdo-file.iso" --jigdo="$rel/release.jigdo" --template="$rel/release.template" "$work/tree//"
rm -f "$work/out-jigdo-file.iso" "$work/out-jigdo-file.iso.tmp"
