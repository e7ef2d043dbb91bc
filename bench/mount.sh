#!/usr/bin/env bash
# Benchmark (issue 3): sequential reads of the mounted virtual ISO with all parts local, against
# `cat` of the original ISO and a plain FUSE file serving the same bytes (bench/plainfuse.c, built
# here); the time `jigdofs mount --scan` takes to become usable with an empty and with a warm
# checksum cache; the daemon's peak RSS; the make-image peers on the same inputs. One table.
#
# Every FUSE read is measured on a fresh mount (an unmount drops the kernel's cache of the file),
# with the backing files (tree, template, ISO) in the page cache, so all sides compete on CPU.
#
# usage: bench/mount.sh [--quick] [WORKDIR] [NFILES]   (default /tmp/jigdofs-bench, 7000 files ≈ 1 GB)
# env:   JIGDOFS=path/to/jigdofs (default: this repo's release build)
#        REPEAT=N   dd runs of the plain FUSE file and of later jigdofs mounts (fastest shown; default 1)
#        PEERS=0    leave out jigit-mkimage and jigdo-file make-image
. "$(dirname "$0")/lib.sh"
repeat=${REPEAT:-1}

gcc -O2 -Wall -o "$bench_tmp/plainfuse" bench/plainfuse.c $(pkg-config --cflags --libs fuse3)
warm_page_cache
min() { echo "if ($1 < $2) $1 else $2" | bc -l; }

header
t0=$(now); cat "$iso" >/dev/null; t1=$(now)
row "cat release.iso > /dev/null (page cache)" "$(secs "$t0" "$t1")"

plain=
for i in $(seq "$repeat"); do
  new_mount_point "plain$i"; m=$mp
  "$bench_tmp/plainfuse" "$iso" release.iso "$m"
  t=$(timed_dd "$m/release.iso")
  unmount "$m"
  plain=$([ -z "$plain" ] && echo "$t" || min "$plain" "$t")
done
row "dd plain FUSE file (plainfuse.c, pread)" "$plain" "$([ "$repeat" -gt 1 ] && echo "best of $repeat")"

# One jigdofs mount: NAME -> sets mount_secs, dd_secs, rss (MiB)
jigdofs_mount() {
  local m pid name t0 t1
  new_mount_point "$1"; m=$mp
  t0=$(now)
  "$bin" mount --scan "$work/tree" "$rel/release.jigdo" "$m"
  t1=$(now)
  mount_secs=$(secs "$t0" "$t1")
  name=$image_name
  pid=$(daemon_pid "$m") || { echo "no jigdofs daemon found for $m" >&2; return 1; }
  bench_daemons+=("$pid")
  dd_secs=$(timed_dd "$m/$name")
  rss=$(peak_rss_mib "$pid")
  unmount_daemon "$m" "$pid"
}

if ! "$bin" mount --help >/dev/null 2>&1; then
  row_na "jigdofs mount" "(binary has no mount command)"
  ratio_line="jigdofs / plain FUSE: n/a"
else
  # A checksum cache of this run only: the first mount starts with it empty.
  export XDG_CACHE_HOME=$bench_tmp/xdg-cache
  jigdofs_mount first
  first_mount=$mount_secs first_dd=$dd_secs first_rss=$rss
  second_mount= second_dd= second_rss=0
  for i in $(seq "$repeat"); do
    jigdofs_mount "again$i"
    second_mount=$([ -z "$second_mount" ] && echo "$mount_secs" || min "$second_mount" "$mount_secs")
    second_dd=$([ -z "$second_dd" ] && echo "$dd_secs" || min "$second_dd" "$dd_secs")
    second_rss=$(echo "if ($rss > $second_rss) $rss else $second_rss" | bc -l)
  done
  printf '%-52s %8.2f s %13s  %s\n' "jigdofs mount --scan: usable after (first mount)" "$first_mount" "" "empty checksum cache"
  row "dd jigdofs mount (first mount)" "$first_dd" "daemon peak RSS $first_rss MiB"
  printf '%-52s %8.2f s %13s  %s\n' "jigdofs mount --scan: usable after (second mount)" "$second_mount" "" "checksum cache filled by the first mount"
  row "dd jigdofs mount (second mount)" "$second_dd" "daemon peak RSS $second_rss MiB$([ "$repeat" -gt 1 ] && echo ", best of $repeat")"
  ratio_line=$(printf 'dd jigdofs / plain FUSE: %.2fx first mount, %.2fx second mount (target <= 1.5x); daemon peak RSS %s MiB (target < 64 MiB)' \
    "$(ratio "$first_dd" "$plain")" "$(ratio "$second_dd" "$plain")" "$(echo "if ($first_rss > $second_rss) $first_rss else $second_rss" | bc -l)")
fi
[ "${PEERS:-1}" = 0 ] || makeimage_peers
echo "$ratio_line"
