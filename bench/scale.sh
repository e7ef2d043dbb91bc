#!/usr/bin/env bash
# Benchmark (issue 21): jigdofs at the scale of Debian's Blu-ray images. bench/make-scale-release.py
# makes a synthetic release of four images of NPARTS parts each (default 50,000 parts, ~23 GiB an
# image, as a Debian BD; jigdo 2.0 / SHA256), every part a sparse file (a unique line, then a
# hole), so the release costs little disk (~4 KiB a part, plus image 1 as a sparse file to
# compare with). It is made once in WORKDIR/scale-NPARTS and reused; making it hashes every
# zero of the holes (SHA256 of each part and of each image), the time is printed when it is made.
# nginx on 127.0.0.1 serves the parts. Measured, each next to its goal:
#   jigdofs info           of image 1's .jigdo, and of a tiny .jigdo (10 parts): time, peak RSS
#   mount                  image 1 with an empty cache: time until `jigdofs mount` returns
#   daemon peak RSS        (VmHWM) after the mount, after a sequential read of 4 GiB (or the
#                          whole image if smaller) compared byte for byte with the expected
#                          image (dd | cmp), after 1,000 random reads compared (bench/scale-check.py)
#   four images            the folder of the four .jigdo in one mount: mount time, idle RSS
#                          (VmRSS after the mount), `jigdofs status` time
#   jigdo-file print-missing-all  on image 1's .jigdo and template: time, peak RSS (the peer)
#
# usage: bench/scale.sh [--quick] [WORKDIR]   (default /tmp/jigdofs-bench; --quick: 2,000 parts
#        an image in /tmp/jigdofs-bench-quick)
# env:   NPARTS=N parts per image (default 50,000; --quick 2,000); PART_SIZE=BYTES their mean size
#        (default 23 GiB / 50,000). JIGDOFS=path/to/jigdofs. REPEAT=N: info and status best of N (3).
quick=
[ "${1:-}" != "--quick" ] || quick=1
BENCH_OWN_RELEASE=1
. "$(dirname "$0")/lib.sh"
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ftp_proxy all_proxy ALL_PROXY
nparts=${NPARTS:-$([ -n "$quick" ] && echo 2000 || echo 50000)}
mean=${PART_SIZE:-$(( (23 << 30) / 50000 ))}
repeat=${REPEAT:-3}
src=$work/scale-$nparts-$mean
tiny=$work/scale-tiny

# --- the release (reused when present)
t0=$(now)
made=reused
if [ "$(cat "$src/.complete" 2>/dev/null)" != "--parts $nparts --mean-size $mean --images 4 --expected" ]; then
  echo "making a release of 4 images of $nparts parts in $src ..." >&2
  python3 bench/make-scale-release.py "$src" --parts "$nparts" --mean-size "$mean" --images 4 --expected
  made="made in $(printf '%.1f' "$(secs "$t0" "$(now)")") s"
fi
python3 bench/make-scale-release.py "$tiny" --parts 10 --mean-size 4096 2>/dev/null
jigdo1=$src/images/scale-1.jigdo
expected=$src/expected-1.iso
size=$(stat -c %s "$expected")
start_nginx "$src/parts"
server="Scale=http://127.0.0.1:$nginx_port/"

printf 'scale: 4 images of %d parts, image 1 %d bytes (%.1f GiB), SHA256, %s cores, load %s\n' "$nparts" "$size" \
  "$(echo "$size / 2^30" | bc -l)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf 'release: %s (%s), %s of disk\n' "$src" "$made" "$(du -sh "$src" | cut -f1)"
printf 'jigdofs: %s\n' "$bin"

# timed COMMAND...: sets t_secs (wall) and t_rss (peak RSS, MiB); fails with the command
timed() {
  local t0 t1
  t0=$(now)
  /usr/bin/time -f '%M' -o "$bench_tmp/.rss" "$@" >"$bench_tmp/.out" 2>"$bench_tmp/.err" || {
    echo "FAILED: $* : $(tail -2 "$bench_tmp/.err")" >&2; return 1; }
  t1=$(now)
  t_secs=$(secs "$t0" "$t1")
  t_rss=$(awk '{ printf "%.1f", $1 / 1024 }' "$bench_tmp/.rss")
}
# best COMMAND...: timed, best (shortest) of $repeat runs: sets b_secs, b_rss (that run's RSS)
best() {
  local i
  b_secs=
  for i in $(seq "$repeat"); do
    timed "$@"
    if [ -z "$b_secs" ] || [ "$(echo "$t_secs < $b_secs" | bc)" = 1 ]; then b_secs=$t_secs; b_rss=$t_rss; fi
  done
}
goal() { # label measurement goal met(1/0/-)
  printf '%-40s %-28s %-34s %s\n' "$1" "$2" "(goal $3)" "$(case $4 in 1) echo met ;; 0) echo NOT MET ;; esac)"
}
lt() { [ "$(echo "$1 < $2" | bc)" = 1 ] && echo 1 || echo 0; }
vm() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; } # PID VmHWM|VmRSS -> MiB

# --- info
best "$bin" info "$tiny/images/scale-1.jigdo"
tiny_rss=$b_rss
goal "info, tiny .jigdo (10 parts)" "$(printf '%.2f s  peak %s MiB' "$b_secs" "$b_rss")" "none: the floor" -
best "$bin" info "$jigdo1"
grep -q "$nparts" "$bench_tmp/.out" || echo "info does not name $nparts parts: $(head -5 "$bench_tmp/.out")" >&2
limit=$(echo "$tiny_rss + 8" | bc)
goal "info, image 1 ($nparts parts)" "$(printf '%.2f s' "$b_secs")" "< 1 s" "$(lt "$b_secs" 1)"
goal "" "$(printf 'peak %s MiB' "$b_rss")" "<= tiny + 8 = $limit MiB" "$(lt "$b_rss" "$(echo "$limit + 0.01" | bc)")"

# --- one image: mount, 4 GiB sequential, 1,000 random reads
new_mount_point one
timed "$bin" mount --cache-dir "$bench_tmp/cache-one" --server "$server" "$jigdo1" "$mp"
goal "mount, image 1, empty cache" "$(printf '%.2f s' "$t_secs")" "< 1 s" "$(lt "$t_secs" 1)"
pid=$(daemon_pid "$mp") && bench_daemons+=("$pid")
rss_mount=$(vm "$pid" VmHWM)
seq_bytes=$(( size < (4 << 30) ? size / 1048576 * 1048576 : 4 << 30 ))
t0=$(now)
if dd if="$mp/scale-1.iso" bs=1M count=$(( seq_bytes / 1048576 )) iflag=fullblock status=none \
    | cmp -n "$seq_bytes" - "$expected"; then seq_ok="equal"; else seq_ok="DIFFERS"; fi
seq_secs=$(secs "$t0" "$(now)")
rss_seq=$(vm "$pid" VmHWM)
t0=$(now)
rnd_ok=$(python3 bench/scale-check.py "$mp/scale-1.iso" "$expected" --reads 1000 2>&1) || rnd_ok="DIFFERS: $rnd_ok"
rnd_secs=$(secs "$t0" "$(now)")
rss_rnd=$(vm "$pid" VmHWM)
unmount_daemon "$mp" "$pid"
goal "daemon peak RSS after the mount" "$rss_mount MiB" "< 64 MiB" "$(lt "$rss_mount" 64)"
goal "  after $(( seq_bytes >> 20 )) MiB sequential, compared" "$rss_seq MiB ($(printf '%.1f' "$seq_secs") s, $seq_ok)" \
  "< 64 MiB" "$([ "$seq_ok" = equal ] && lt "$rss_seq" 64 || echo 0)"
goal "  after 1,000 random reads, compared" "$rss_rnd MiB ($(printf '%.1f' "$rnd_secs") s)" "< 64 MiB" \
  "$(case $rnd_ok in *"all equal") lt "$rss_rnd" 64 ;; *) echo 0 ;; esac)"
echo "    random reads: $rnd_ok"

# --- four images in one mount
new_mount_point four
timed "$bin" mount --cache-dir "$bench_tmp/cache-four" --server "$server" "$src/images" "$mp"
goal "mount, 4 images ($(( 4 * nparts )) parts)" "$(printf '%.2f s' "$t_secs")" "< 2 s" "$(lt "$t_secs" 2)"
pid=$(daemon_pid "$mp") && bench_daemons+=("$pid")
[ "$(ls "$mp" | grep -c '^scale-[1-4]\.iso$')" = 4 ] || echo "the mount does not show 4 images: $(ls "$mp")" >&2
best "$bin" status "$mp"
rss_idle=$(vm "$pid" VmRSS)
goal "  idle RSS (VmRSS after status)" "$rss_idle MiB (peak $(vm "$pid" VmHWM))" "< 48 MiB" "$(lt "$rss_idle" 48)"
goal "  jigdofs status" "$(printf '%.2f s' "$b_secs")" "< 0.5 s" "$(lt "$b_secs" 0.5)"
unmount_daemon "$mp" "$pid"

# --- the peer
timed jigdo-file print-missing-all --jigdo "$jigdo1" --template "$src/images/scale-1.template"
listed=$(grep -c '^http' "$bench_tmp/.out" || true)
goal "jigdo-file print-missing-all, image 1" "$(printf '%.2f s  peak %s MiB' "$t_secs" "$t_rss")" "none: the peer" -
[ "$listed" = "$nparts" ] || echo "jigdo-file print-missing-all listed $listed URLs, not $nparts" >&2
printf 'hypervisor steal during the run: %s%%\n' "$(steal_since "$bench_start_ticks")"
