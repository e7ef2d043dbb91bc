#!/usr/bin/env bash
# Random reads inside one huge template chunk (issue 9): a mount of an image that is a single
# 1 GiB zlib chunk (and a 256 MiB bzip2 one) of zeros, from Tests/Fixtures/make-huge-chunk.py.
# Prints the first read at the chunk's end (one pass from the start, recording restart points),
# then 16 threads x 20 random 4 KiB reads (latency median / p95 / max, total), and the daemon's
# peak RSS (goal: under 64 MiB).
#
# usage: bench/template-chunk.sh [--quick] [WORKDIR]   (--quick: 256 MiB zlib, 64 MiB bzip2)
quick=0
[ "${1:-}" = "--quick" ] && quick=1
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [ $quick = 1 ]; then sizes="zlib:$((256 << 20)) bzip2:$((64 << 20))"; else sizes="zlib:$((1 << 30)) bzip2:$((256 << 20))"; fi
echo "jigdofs: $bin"
printf '%-22s %10s %10s %10s %10s %10s %12s\n' "chunk" "first(s)" "median(ms)" "p95(ms)" "max(ms)" "total(s)" "peak RSS MiB"
for spec in $sizes; do
  kind=${spec%%:*}
  bytes=${spec#*:}
  dir=$work/huge-$kind-$bytes
  if [ ! -f "$dir/huge.template" ]; then
    mkdir -p "$dir"
    python3 Tests/Fixtures/make-huge-chunk.py "$dir" "$kind" "$bytes"
  fi
  new_mount_point "mnt-$kind"
  "$bin" mount "$dir/huge.jigdo" "$mp"
  pid=$(daemon_pid "$mp")
  figures=$(python3 - "$mp/huge.iso" <<'PY'
import os, random, statistics, sys, threading, time
path = sys.argv[1]
fd = os.open(path, os.O_RDONLY)
size = os.fstat(fd).st_size
t = time.monotonic(); os.pread(fd, 4096, size - 4096); first = time.monotonic() - t
lat = []; lock = threading.Lock()
def reader(seed):
    r = random.Random(seed)
    for _ in range(20):
        off = r.randrange(0, size - 4096)
        t0 = time.monotonic(); data = os.pread(fd, 4096, off); dt = time.monotonic() - t0
        assert len(data) == 4096
        with lock: lat.append(dt)
t = time.monotonic()
ts = [threading.Thread(target=reader, args=(i,)) for i in range(16)]
[x.start() for x in ts]; [x.join() for x in ts]
total = time.monotonic() - t
lat.sort()
print("%.2f %.1f %.1f %.1f %.2f" % (first, statistics.median(lat) * 1e3, lat[int(len(lat) * 0.95)] * 1e3, lat[-1] * 1e3, total))
PY
)
  read -r first median p95 max total <<<"$figures"
  printf '%-22s %10s %10s %10s %10s %10s %12s\n' "$kind $((bytes >> 20)) MiB" "$first" "$median" "$p95" "$max" "$total" "$(peak_rss_mib "$pid")"
  unmount_daemon "$mp" "$pid"
done
