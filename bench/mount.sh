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
#        REPEAT=N   runs of the plain FUSE file and of later jigdofs mounts, taking turns
#                   (fastest shown; default 3)
#        PEERS=0    leave out jigit-mkimage and jigdo-file make-image
. "$(dirname "$0")/lib.sh"
repeat=${REPEAT:-3}

gcc -O2 -Wall -o "$bench_tmp/plainfuse" bench/plainfuse.c $(pkg-config --cflags --libs fuse3)
warm_page_cache
min() { if [ -z "$1" ]; then echo "$2"; else echo "if ($1 < $2) $1 else $2" | bc -l; fi; }
max() { if [ -z "$1" ]; then echo "$2"; else echo "if ($1 > $2) $1 else $2" | bc -l; fi; }

plain_run() { # -> sets dd_secs
  local m
  new_mount_point "$1"; m=$mp
  "$bench_tmp/plainfuse" "$iso" release.iso "$m"
  dd_secs=$(timed_dd "$m/release.iso")
  unmount "$m"
}

jigdofs_run() { # NAME -> sets mount_secs, dd_secs, rss (MiB)
  local m pid t0 t1
  new_mount_point "$1"; m=$mp
  t0=$(now)
  "$bin" mount --scan "$work/tree" "$rel/release.jigdo" "$m"
  t1=$(now)
  mount_secs=$(secs "$t0" "$t1")
  pid=$(daemon_pid "$m") || { echo "no jigdofs daemon found for $m" >&2; return 1; }
  bench_daemons+=("$pid")
  dd_secs=$(timed_dd "$m/$image_name")
  rss=$(peak_rss_mib "$pid")
  unmount_daemon "$m" "$pid"
}

header
t0=$(now); cat "$iso" >/dev/null; t1=$(now)
row "cat release.iso > /dev/null (page cache)" "$(secs "$t0" "$t1")"

has_mount=1
"$bin" mount --help >/dev/null 2>&1 || has_mount=0
# A checksum cache of this run only: the first mount starts with it empty.
export XDG_CACHE_HOME=$bench_tmp/xdg-cache
if [ "$has_mount" = 1 ]; then
  jigdofs_run first
  first_mount=$mount_secs first_dd=$dd_secs first_rss=$rss
fi
# Then plain FUSE and later jigdofs mounts take turns, so that both see the same load.
plain= second_mount= second_dd= second_rss=
for i in $(seq "$repeat"); do
  plain_run "plain$i"
  plain=$(min "$plain" "$dd_secs")
  [ "$has_mount" = 1 ] || continue
  jigdofs_run "again$i"
  second_mount=$(min "$second_mount" "$mount_secs")
  second_dd=$(min "$second_dd" "$dd_secs")
  second_rss=$(max "$second_rss" "$rss")
done
best=$([ "$repeat" -gt 1 ] && echo "best of $repeat" || true)
row "dd plain FUSE file (plainfuse.c, pread)" "$plain" "$best"
if [ "$has_mount" = 0 ]; then
  row_na "jigdofs mount" "(binary has no mount command)"
  ratio_line="jigdofs / plain FUSE: n/a"
else
  printf '%-52s %8.2f s %13s  %s\n' "jigdofs mount --scan: usable after (first mount)" "$first_mount" "" "empty checksum cache"
  row "dd jigdofs mount (first mount)" "$first_dd" "daemon peak RSS $first_rss MiB"
  printf '%-52s %8.2f s %13s  %s\n' "jigdofs mount --scan: usable after (later mounts)" "$second_mount" "" "checksum cache filled by the first mount${best:+, $best}"
  row "dd jigdofs mount (later mounts)" "$second_dd" "daemon peak RSS $second_rss MiB${best:+, $best}"
  ratio_line=$(printf 'dd jigdofs / plain FUSE: %.2fx first mount, %.2fx later mounts (target <= 1.5x); daemon peak RSS %s MiB (target < 64 MiB)' \
    "$(ratio "$first_dd" "$plain")" "$(ratio "$second_dd" "$plain")" "$(max "$first_rss" "$second_rss")")
fi
[ "${PEERS:-1}" = 0 ] || makeimage_peers
echo "$ratio_line"
