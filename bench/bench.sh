#!/usr/bin/env bash
# Benchmark: assembling a ~1 GB release from local parts, jigdofs against its peers, in one run.
# Prints one table; figures go into the README by hand. Not a test: it times things.
#
# usage: bench/bench.sh [--quick] [WORKDIR] [NFILES]   (default /tmp/jigdofs-bench, 7000 files ≈ 1 GB)
# env:   JIGDOFS=path/to/jigdofs (default: this repo's release build)
. "$(dirname "$0")/lib.sh"

warm_page_cache
header
measure "cat release.iso > /dev/null" cat "$iso"
out=$bench_tmp/out-jigdofs.iso
measure "jigdofs make-image --map (checks MD5)" "$bin" make-image "$rel/release.jigdo" --map Base="$work/tree" -o "$out"
[ ! -f "$out" ] || cmp -s "$out" "$iso" || echo "jigdofs output DIFFERS" >&2
rm -f "$out"
measure "jigdofs verify --map (read + MD5 only)" "$bin" verify "$rel/release.jigdo" --map Base="$work/tree"
makeimage_peers
