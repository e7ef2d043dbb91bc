#!/usr/bin/env bash
# Benchmark (issue 4): an empty machine fetching the release from a mirror. nginx (Debian's, with
# its own config, on 127.0.0.1 and a free port) serves the release tree; for each RTT a latency
# proxy of our own (bench/latency-proxy.c, built with cc into the run's directory; 127.0.0.1) sits
# in front of it (0 ms: nginx directly). LATENCY_PROXY=python uses bench/latency-proxy.py, the
# same link in Python, which the figures before 2026-12-07 17:30 were measured with: it took some
# 3 CPU-s at 20 ms (a third of this 2-core machine, competing with the clients measured) and
# could not carry 100 MB/s over one connection (curl of the ISO at 30 ms / 100 MB/s took 16 s
# through it, 10.3 s through the C one); a real link's latency costs the client machine nothing.
# Measured in the same run, per RTT:
#   jigdo-lite --noask        .jigdo and template from the mirror, then every part with wget,
#                             30 at a time, merged by jigdo-file, then its final verify;
#   jigdofs mount + dd        the same .jigdo with --server Base=MIRROR and an empty --cache-dir:
#                             time until the first byte of the image can be read, and until a
#                             full dd of the image to /dev/null is done (from mount start). The
#                             .jigdo and template are local (as after an rsync of the release's
#                             iso/ folder); REMOTE_SOURCE=1 mounts the .jigdo's URL on the mirror
#                             instead, so the template is downloaded too, as jigdo-lite does.
#   curl, one file            the finished ISO downloaded as one file over the same link: the
#                             reference (a plain download of the same bytes).
#   curl | md5sum             the same, its bytes checked on the way (MD5 as the parts are): the
#                             physical reference for bytes fetched and verified, and issue 21's
#                             for either release; for a SHA256 release also `curl | openssl dgst
#                             -sha256` (coreutils' sha256sum lacks the CPU's SHA extensions).
#   curl --parallel           every part of the .jigdo requested by one curl, 32 at once over
#                             reused connections, bodies thrown away unchecked: the floor of
#                             one request per part at the polite per-host cap (at 20 ms it is
#                             above the goal by itself: 6,111 requests / 32 x 20 ms = 3.8 s).
#   aria2c                    every part of the .jigdo fetched as its own file, 32 at once (the
#                             per-host cap jigdofs uses by default), each checked against its
#                             MD5 or SHA256 (aria2c fails on a mismatch): a download manager's
#                             peer figure for the same requests.
# Also per RTT: the daemon's CPU time (user and system, /proc/PID/stat after the full dd, so the
# mount's setup included) per GB of the image, and its peak RSS, next to the CPU seconds per GB `openssl dgst -md5` (-sha256)
# needs over the finished ISO on this machine, measured at the start of the same run (the floor
# of checking every byte); the difference is the daemon's CPU beyond the checksum. Beside it the
# peers' CPU per GB for the same parts (bash's `time`: user + system of the whole client):
# curl --parallel to /dev/null (fetching alone, the floor) and aria2c (fetched, checked,
# written: the same work, less the FUSE replies). And the daemon's transfer thread (the one
# libcurl thread, `jigdofs-curl`): seconds on a core and seconds runnable but waiting for one
# (/proc/PID/task/TID/schedstat), what the rest of the machine's work costs the fetch. The rows
# of jigdofs's full read, `curl | md5sum` and the same work by peers at once also say how the
# machine's cores spent that time (/proc/stat): busy, idle, and stolen by the hypervisor. On this
# VM a halted vCPU woken again costs steal: a reader that leaves cores idle while it waits on
# itself pays twice, and a run with much steal is slowed by the host, not by the tool.
# Then an untimed counting run per RTT (COUNTING_RUN=0 skips it): the same mount and full dd,
# with `strace -c -f` attached to the daemon (needs ptrace: root, or kernel.yama.ptrace_scope 0)
# and bench/alloccount.c preloaded into it (built with cc into the run's directory), both counted
# from the mount's return to the end of the dd: system calls per part downloaded, the top 8 by
# count, and malloc/calloc/realloc/aligned allocations per part (parts downloaded: the distinct
# parts nginx served in that run). SHAPED="30:100" (RTT ms : MB/s, default) adds a run over a
# shaped link: the latency proxy with one bandwidth cap shared by all connections ("none" skips
# it).
# Goals (issue 21), cold cache, default options, printed next to the figures: mount + dd
# <= 1.0x `curl | md5sum` at 0 ms; <= 0.7x aria2c at 0 ms and <= 0.8x at 20 ms; <= 1.1x
# `curl --parallel` of the parts at 20 ms; daemon CPU beyond the checksum <= 1.0 CPU-s/GB at 0
# and 20 ms, for an MD5 release and a SHA256 release alike (CHECKSUM=sha256 runs the latter:
# make-release.sh's `jigdo-file make-template -C sha256` variant of the same ISO, jigdo 2.0).
# Both results are compared with the original ISO outside the timing.
# The work floor (per link, untimed): on a small machine the runs are CPU-bound, so a run's wall
# time is at least the CPU the same work costs the cheapest tools, divided by the cores:
# fetching the parts (curl --parallel's CPU, and nginx's and the latency proxy's serving them),
# checking them (openssl dgst), writing each into a file of its own (`cp` less `cat` of the
# parts) and replying to the reader (dd through bench/plainfuse.c, less `cat` of the image); and
# no less than fetching alone takes. Printed against the goal's reference (`curl | md5sum` at 0
# ms, `curl --parallel` at 20 ms): a goal below it is out of reach on this machine. Its daemon
# share per GB (fetching, storing, and serving: plainfuse's own CPU, the reader's being dd's) is
# printed beside the daemon's CPU beyond the checksum, against the 1.0 CPU-s/GB goal.
# The same work by peers at once (0 and 20 ms, timed): curl --parallel of the parts, and beside
# it openssl dgst of the image, cp of the parts and dd through plainfuse, until all is done;
# twice: the rest at nice 19 (it takes only what the fetch leaves) and at nice 0 (it competes,
# as jigdofs's threads do). The work floor's sum assumes the cores are never idle and the
# pieces never wait for each other; these measure what the same work takes at once: at 20 ms
# how much the CPU work slows the requests (the link and the CPU both bind, the latency proxy
# taking some of it), at 0 ms what sharing 2 cores between five processes costs. Each link's
# wall-time goal (1.0x `curl | md5sum` at 0 ms, 1.1x `curl --parallel` at 20 ms) is printed
# against both.
# Order and cleanup: per link jigdofs, curl, aria2c and the counting run; jigdo-lite for every
# link after all of them; nothing a run downloaded is deleted before the end. Why: on an ext4
# without a journal (this machine's root), creating a file within minutes of deleting thousands
# makes each inode allocation step over the recently deleted ones (ext4's recently_deleted()); a
# run right after a deletion (a cache removed, or jigdo-lite removing its parts as it merges them)
# spent 3-4 more CPU-s per GB creating its files. Users do not delete 6,000 files before each
# mount. A test suite run right before the bench does (thousands of files): BENCH_TMPDIR=/dev/shm
# puts every run's files on a tmpfs instead (about 17 GB of RAM for the default release: 16.7 GB
# at its peak on 2026-12-07), so the figures are the tools' own, for every row alike.
#
# usage: bench/download.sh [--quick] [WORKDIR] [NFILES]   (default /tmp/jigdofs-bench, 7000 files ≈ 1 GB)
# env:   JIGDOFS=path/to/jigdofs (default: this repo's release build); it needs `mount` with
#        `--server`, else its rows say n/a.   RTTS="0 20" (milliseconds).   JIGDO_LITE=0 skips it.
#        REMOTE_SOURCE=1: jigdofs mounts http://MIRROR/.../release.jigdo rather than the local file.
#        JIGDOFS_OPTS="--jobs 64": more options for `jigdofs mount` (default: none, the defaults).
#        BENCH_TMPDIR=/dev/shm: where the runs write (default /tmp; see above).
#        CHECKSUM=sha256: the release's SHA256 variant (default md5).
#        COUNTING_RUN=0: no strace / allocation counting run.
#        LATENCY_PROXY=python: the Python latency proxy (see above; default: the C one).
. "$(dirname "$0")/lib.sh"
rtts=${RTTS:-0 20}
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ftp_proxy all_proxy ALL_PROXY

# --- nginx serving $www: tree/ (the release's parts) and one .jigdo per RTT whose [Servers]
#     point at that RTT's address
www=$bench_tmp/www
mkdir -p "$www"
ln -s "$work/tree" "$www/tree"
start_nginx "$www"

# The latency proxy: bench/latency-proxy.c built into the run's directory (or the Python one).
if [ "${LATENCY_PROXY:-c}" = python ]; then
  latency_proxy=(python3 bench/latency-proxy.py)
  proxy_name=bench/latency-proxy.py
else
  cc -O2 -Wall -o "$bench_tmp/latency-proxy" bench/latency-proxy.c || {
    echo "cannot build bench/latency-proxy.c (LATENCY_PROXY=python uses the Python one)" >&2; exit 1; }
  latency_proxy=("$bench_tmp/latency-proxy")
  proxy_name=bench/latency-proxy.c
fi

# start_mirror RTT [MB/s]: sets $url to the mirror as seen through that RTT, optionally with a
# shared bandwidth cap (starts a proxy for RTT > 0 or a cap; not a $(...) function: the proxy
# must be this shell's child, registered for stopping)
start_mirror() {
  local rtt=$1 cap=${2:-} out=$bench_tmp/proxy-$1-${2:-0}.out pid port=
  proxy_pid=
  if [ "$rtt" = 0 ] && [ -z "$cap" ]; then url="http://127.0.0.1:$nginx_port"; return; fi
  "${latency_proxy[@]}" 0 "$nginx_port" "$rtt" $cap > "$out" &
  pid=$!
  proxy_pid=$pid
  bench_pids+=("$pid")
  for _ in $(seq 100); do
    port=$(sed -n 's/^listening //p' "$out")
    [ -z "$port" ] || break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "latency proxy did not start" >&2; return 1; }
  url="http://127.0.0.1:$port"
}

requests() { wc -l < "$ng/access.log" 2>/dev/null || echo 0; }

# jigdo-lite, non-interactive: a scratch HOME with a prepared ~/.jigdo-lite (so it asks
# nothing it would not also answer itself under --noask), run in a scratch directory, the
# .jigdo given as a URL on the mirror (its [Servers] point at the same mirror).
jigdo_lite() { # RTT URL -> sets jl_secs (empty on failure), jl_requests
  local rtt=$1 url=$2 d=$bench_tmp/jigdo-lite-$1 t0 t1 r0 pid
  mkdir -p "$d"
  cat > "$d/.jigdo-lite" <<'EOF'
jigdo=''
debianMirror='http://127.0.0.1:9/debian/'
nonusMirror=''
tmpDir='.'
jigdoOpts='--cache jigdo-file-cache.db'
wgetOpts='-nv --passive-ftp --dot-style=mega --continue --timeout=30'
scanMenu=''
filesPerFetch='30'
EOF
  r0=$(requests)
  t0=$(now)
  # its own process group, so that an interrupted run stops its wget and jigdo-file too
  (cd "$d" && HOME=$d exec setsid jigdo-lite --noask "$url" </dev/null >"$d/log" 2>&1) &
  pid=$!
  bench_groups+=("$pid")
  if wait "$pid" && [ -f "$d/release.iso" ]; then
    t1=$(now)
    jl_secs=$(secs "$t0" "$t1")
    cmp -s "$d/release.iso" "$iso" || echo "jigdo-lite at $rtt ms: image DIFFERS from the original" >&2
  else
    jl_secs=
    echo "jigdo-lite at $rtt ms failed: $(tail -3 "$d/log")" >&2
  fi
  jl_requests=$(( $(requests) - r0 ))
  rm -rf "$d"
}

# jigdofs, each phase on its own mount with an empty cache.  RTT URL -> sets js_* (empty on failure)
#   first bytes: mount start -> mount returned -> first byte at offset 0 (template data, as
#                `file`, blkid or a loop mount read first) -> one 4 KiB read in the middle of the
#                image (inside a part: one download, timed on its own);
#   full read:   mount start -> dd of the whole image done; then compared with the original.
jigdofs_mount_dl() { # NAME URL RTT: mounts at $mp with an empty cache (the caller made $mp)
  local source=$rel/release.jigdo
  [ "${REMOTE_SOURCE:-0}" = 0 ] || source=$2/rtt$3/release.jigdo
  # shellcheck disable=SC2086 # JIGDOFS_OPTS is a list of options
  "$bin" mount ${JIGDOFS_OPTS:-} --server Base="$2/tree/" --cache-dir "$bench_tmp/cache-$1" "$source" "$mp"
}
find_daemon() { # sets $pid (outside any timing: it walks /proc)
  pid=$(daemon_pid "$mp") && bench_daemons+=("$pid") || pid=
}
jigdofs_unmount_dl() { # NAME (its cache is kept until the end, see the header)
  if [ -n "$pid" ]; then unmount_daemon "$mp" "$pid"; else unmount "$mp"; fi
}
jigdofs_download() {
  local rtt=$1 url=$2 name t0 t1 t2 t3 r0 c0
  js_mount= js_ttfb= js_mid= js_total= js_dd= js_rss= js_requests= js_cpu= js_parts= js_sched= js_share=
  new_mount_point "ttfb-$rtt"
  t0=$(now)
  jigdofs_mount_dl "ttfb-$rtt" "$url" "$rtt" || return 0
  t1=$(now)
  name=$image_name
  head -c 1 "$mp/$name" >/dev/null
  t2=$(now)
  dd if="$mp/$name" of=/dev/null bs=4096 skip=$((size / 2 / 4096)) count=1 status=none
  t3=$(now)
  js_mount=$(secs "$t0" "$t1") js_ttfb=$(secs "$t0" "$t2") js_mid=$(secs "$t2" "$t3")
  find_daemon
  jigdofs_unmount_dl "ttfb-$rtt"

  new_mount_point "full-$rtt"
  r0=$(requests)
  c0=$(cpu_state)
  t0=$(now)
  jigdofs_mount_dl "full-$rtt" "$url" "$rtt" || return 0
  js_dd=$(timed_dd "$mp/$name") || { find_daemon; jigdofs_unmount_dl "full-$rtt"; return 0; }
  t1=$(now)
  js_share=$(cpu_share_since "$c0")
  find_daemon
  js_total=$(secs "$t0" "$t1")
  [ -z "$pid" ] || js_rss=$(peak_rss_mib "$pid")
  [ -z "$pid" ] || js_cpu=$(cpu_seconds "$pid")
  [ -z "$pid" ] || js_sched=$(thread_sched "$pid" jigdofs-curl)
  js_requests=$(( $(requests) - r0 ))
  js_parts=$(parts_fetched "$r0")
  cmp -s "$mp/$name" "$iso" || echo "jigdofs at $rtt ms: image DIFFERS from the original" >&2
  jigdofs_unmount_dl "full-$rtt"
}

# cpu_seconds PID: "USER SYSTEM" CPU seconds of a process so far (/proc/PID/stat fields 14, 15)
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.2f %.2f\n", $12 / hz, $13 / hz }' \
    "/proc/$1/stat" 2>/dev/null || echo ""
}

# thread_sched PID COMM: "ON WAIT" seconds of the thread named COMM so far: on a core, and
# runnable but waiting for one (/proc/PID/task/TID/schedstat; empty without it)
thread_sched() {
  local t
  for t in /proc/"$1"/task/*; do
    [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ] || continue
    awk '{ printf "%.2f %.2f\n", $1 / 1e9, $2 / 1e9 }' "$t/schedstat" 2>/dev/null
    return 0
  done
}

# verdict VALUE LIMIT -> "met" (VALUE <= LIMIT) or "NOT MET"
verdict() { [ "$(echo "$1 <= $2" | bc -l)" = 1 ] && echo met || echo "NOT MET"; }
# goal_ratio TEXT SECS REFERENCE-SECS [LIMIT] -> "TEXT = R.RRx", with issue 21's goal when given
goal_ratio() {
  local r
  r=$(ratio "$2" "$3")
  printf '%s = %.2fx' "$1" "$r"
  [ -z "${4:-}" ] || printf ' (issue 21 goal <= %sx: %s)' "$4" "$(verdict "$r" "$4")"
}

# goal_at LIMIT-AT-0-MS LIMIT-AT-20-MS -> the current link's limit ($rtt, $cap), empty for no goal
# (issue 21 sets its goals for the unshaped links at 0 and 20 ms)
goal_at() {
  if [ -n "$cap" ]; then echo ""; elif [ "$rtt" = 0 ]; then echo "$1"; elif [ "$rtt" = 20 ]; then echo "$2"; fi
}

# parts_fetched R0: distinct parts (paths under /tree/) nginx answered with 200 or 206 since
# line R0 of its access log: the parts a run downloaded
parts_fetched() {
  tail -n +$(( $1 + 1 )) "$ng/access.log" | awk '$9 ~ /^20[06]$/ && $7 ~ /^\/tree\// { print $7 }' | sort -u | wc -l
}

# curl_one_file URL -> sets cf_secs: the finished ISO as one file over the same link; cm_secs:
# the same through md5sum (issue 21's reference, for either release); cs_secs (SHA256 release
# only): through `openssl dgst -sha256` (coreutils' sha256sum does not use the CPU's SHA
# extensions, and takes about twice as long as md5sum here: no fair reference)
curl_one_file() {
  local t0 t1 c0
  t0=$(now)
  if curl -sf -o /dev/null "$1/release.iso"; then t1=$(now); cf_secs=$(secs "$t0" "$t1"); else cf_secs=; fi
  c0=$(cpu_state)
  t0=$(now)
  if curl -sf "$1/release.iso" | md5sum > "$bench_tmp/one-file.md5"; then t1=$(now); cm_secs=$(secs "$t0" "$t1"); else cm_secs=; fi
  cm_share=$(cpu_share_since "$c0")
  cs_secs=
  [ "$checksum" = sha256 ] || return 0
  t0=$(now)
  if curl -sf "$1/release.iso" | openssl dgst -sha256 > "$bench_tmp/one-file.sha256"; then t1=$(now); cs_secs=$(secs "$t0" "$t1"); fi
}

# part_urls TREE_URL [raw]: "MD5-in-hex URL" per distinct part of the .jigdo under label Base
# (the URL percent-encoded, so it has no blank), for the peers that fetch the parts one by one;
# with `raw`, the path as it is (TREE_URL a directory, or empty for the path relative to it)
part_urls() {
  python3 - "$rel/release.jigdo" "$@" <<'PY'
import base64, gzip, shlex, sys, urllib.parse
raw = open(sys.argv[1], "rb").read()
text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8", "surrogateescape")
section, seen = None, set()
for line in text.splitlines():
    line = line.strip()
    if line.startswith("["):
        section = line
        continue
    if section != "[Parts]" or "=" not in line:
        continue
    key, value = line.split("=", 1)
    words = shlex.split(value)
    if not words or not words[0].startswith("Base:") or key in seen:
        continue
    seen.add(key)
    digest = base64.b64decode(key.replace("-", "+").replace("_", "/") + "==").hex()
    path = words[0][len("Base:"):]
    print(digest, sys.argv[2] + (path if sys.argv[3:] == ["raw"] else urllib.parse.quote(path)))
PY
}

# aria2c_parts URL RTT -> sets ar_secs (empty on failure): each part of the .jigdo as its own
# file from the mirror's tree/, 32 downloads at once, each checked against its MD5 (SHA256)
aria2c_parts() {
  local d=$bench_tmp/aria2c-$2 t0 t1 TIMEFORMAT=%U+%S
  ar_secs= ar_cpu=
  command -v aria2c >/dev/null || { echo "aria2c not installed (scripts/install-deps.sh)" >&2; return 0; }
  mkdir -p "$d"
  part_urls "$1/tree/" | awk -v alg="$([ "$checksum" = md5 ] && echo md5 || echo sha-256)" \
    '{ print $2; print "  out=" $1; print "  checksum=" alg "=" $1 }' > "$d/input"
  t0=$(now)
  if { time aria2c -q -i "$d/input" -d "$d/files" -j 32 --file-allocation=none --max-tries=3 \
       --auto-file-renaming=false --allow-overwrite=true </dev/null >"$d/log" 2>&1; } 2>"$d/cpu"; then
    t1=$(now)
    ar_secs=$(secs "$t0" "$t1")
    ar_cpu=$(bc -l < "$d/cpu")
  else
    echo "aria2c at $2 ms failed: $(tail -3 "$d/log")" >&2
  fi
}

# curl_config URL FILE: a curl config (-K) of every part of the .jigdo on the mirror URL, each
# body to /dev/null; curl_fetch FILE LOG: one curl fetching them, 32 at once (what curl_parts
# times, and the fetch of work_beside)
curl_config() {
  part_urls "$1/tree/" | awk '{ printf "url = \"%s\"\noutput = \"/dev/null\"\n", $2 }' > "$2"
}
curl_fetch() {
  curl -sf -Z --parallel-max 32 --parallel-immediate -K "$1" </dev/null >"$2" 2>&1
}

# curl_parts URL RTT -> sets cp_secs (empty on failure): each part of the .jigdo fetched by one
# curl (its --parallel, 32 transfers at once, connections reused), bodies thrown away unchecked:
# what one request per part costs on this link at the polite per-host cap, before any checking
curl_parts() {
  local d=$bench_tmp/curl-parts-$2 t0 t1 TIMEFORMAT=%U+%S
  cp_secs= cp_cpu= cp_serve_cpu=
  mkdir -p "$d"
  curl_config "$1" "$d/config"
  local ng0
  ng0=$(serving_cpu)
  t0=$(now)
  if { time curl_fetch "$d/config" "$d/log"; } 2>"$d/cpu"; then
    t1=$(now)
    cp_secs=$(secs "$t0" "$t1")
    cp_cpu=$(bc -l < "$d/cpu")
    cp_serve_cpu=$(echo "$(serving_cpu) - $ng0" | bc -l)
  else
    echo "curl --parallel of the parts at $2 ms failed: $(tail -3 "$d/log")" >&2
  fi
}

# serving_cpu: user + system CPU seconds so far of what serves the parts: the bench's nginx
# (master and workers) and the current link's latency proxy, if any
serving_cpu() {
  local master p total=0 u s
  master=$(cat "$ng/nginx.pid" 2>/dev/null) || { echo 0; return; }
  for p in "$master" $(pgrep -P "$master") ${proxy_pid:-}; do
    read -r u s <<< "$(cpu_seconds "$p")"
    [ -z "$u" ] || total=$(echo "$total + $u + $s" | bc -l)
  done
  echo "$total"
}

# cpu_of CMD...: user + system CPU seconds of a command (and its children), its output dropped
cpu_of() {
  local TIMEFORMAT=%U+%S
  { time "$@" >/dev/null 2>&1; } 2>"$bench_tmp/cpu-of" || return 1
  bc -l < "$bench_tmp/cpu-of"
}

# work_floor -> sets wf_* (empty on failure): what the cheapest tools spend, on this machine and
# in this run, on each piece of the work a cold-cache mount + dd does, summed and divided by the
# cores: a lower bound on its wall time wherever the run is CPU-bound (and no run is faster than
# fetching the parts: the link's own floor, curl --parallel's time).
#   fetch: curl --parallel of the parts to /dev/null (its CPU), and what served them meanwhile
#          (nginx's CPU, and the latency proxy's on a link with one)
#   check: openssl dgst of the image (the digest floor)
#   store: `cp` of the parts into the cache's file system, less `cat` of them (the reading):
#          each part written into a file of its own
#   reply: dd of the image through a plain FUSE file (bench/plainfuse.c): its daemon's CPU and
#          dd's, less `cat` of the image (the daemon's pread from the page cache)
# Store and reply are measured per link by floor_pieces, right after jigdofs's read on it: both
# take new memory (the copies' pages, the FUSE file's page cache), whose cost on this VM depends
# on when it is taken (see fresh_memory_cost), so they are measured next to what they are
# compared with. The copies stay until the end (see "Order and cleanup" above).
# build_plainfuse -> 0 when $bench_tmp/plainfuse (bench/plainfuse.c) is built; the parts' paths
# under the tree in $bench_tmp/floor-parts
build_plainfuse() {
  [ ! -x "$bench_tmp/plainfuse" ] || return 0
  command -v gcc >/dev/null && pkg-config --exists fuse3 || return 1
  part_urls "" raw | cut -d' ' -f2- > "$bench_tmp/floor-parts"
  # shellcheck disable=SC2046 # pkg-config's flags are words
  gcc -O2 -Wall -o "$bench_tmp/plainfuse" bench/plainfuse.c $(pkg-config --cflags --libs fuse3)
}

# floor_pieces NAME -> sets wf_store, wf_reply, wf_server (empty on failure): the store and reply
# pieces of the work floor (above), measured now
floor_pieces() {
  wf_store= wf_reply= wf_server=
  build_plainfuse || return 0
  local copy=$bench_tmp/floor-copy-$1 list=$bench_tmp/floor-parts cp_c cat_c pid dd_c pf_c pf_u pf_s cat_iso
  mkdir -p "$copy"
  cp_c=$(cd "$work/tree" && cpu_of xargs -d '\n' -a "$list" cp --parents -t "$copy") || return 0
  cat_c=$(cd "$work/tree" && cpu_of xargs -d '\n' -a "$list" cat) || return 0
  new_mount_point "floor-plain-$1"
  "$bench_tmp/plainfuse" "$iso" release.iso "$mp" || return 0
  pid=$(pgrep -n -f "^$bench_tmp/plainfuse") || { unmount "$mp"; return 0; }
  dd_c=$(cpu_of dd if="$mp/release.iso" of=/dev/null bs=1M) || { unmount "$mp"; return 0; }
  read -r pf_u pf_s <<< "$(cpu_seconds "$pid")"
  unmount "$mp"
  pf_c=$(echo "$pf_u + $pf_s" | bc -l)
  cat_iso=$(cpu_of cat "$iso") || return 0
  wf_store=$(echo "$cp_c - $cat_c" | bc -l)
  wf_reply=$(echo "$dd_c + $pf_c - $cat_iso" | bc -l)
  wf_server=$pf_c
}

work_floor() {
  wf_cpu= wf_secs=
  [ -n "$cp_cpu" ] && [ -n "$cp_serve_cpu" ] && [ -n "$digest_floor" ] && [ -n "$wf_store" ] || return 0
  wf_cpu=$(echo "$cp_cpu + $cp_serve_cpu + $digest_floor * $gb + $wf_store + $wf_reply" | bc -l)
  wf_secs=$(echo "c = $wf_cpu / $(nproc); if (c < $cp_secs) $cp_secs else c" | bc -l)
}

# work_beside URL RTT NICE -> sets wb_secs, wb_fetch (empty on failure): the whole work by the
# cheapest tools at once, on this link: curl --parallel of the parts to /dev/null (fetch, as
# curl_parts) while, beside it at CPU priority NICE, openssl dgst of the image (check), `cp` of
# the parts into files of their own in the run's directory (store) and dd of the image through
# bench/plainfuse.c (reply) run. wb_secs: until all of it is done; wb_fetch: until the fetch is.
# The copies stay until the end (see "Order and cleanup" above).
# What jigdofs does for every part, done by peers with no order between the pieces. At nice 19
# the rest takes only what the fetch leaves (the most favourable sharing of the machine for the
# fetch); at nice 0 it competes as jigdofs's own threads do.
work_beside() {
  local d=$bench_tmp/beside-work-$2-$3 t0 t1 t2 a b c c0 pid failed=0 kept=${#bench_pids[@]}
  wb_secs= wb_fetch= wb_share=
  [ -n "$cp_secs" ] && build_plainfuse || return 0
  rm -rf "$d"
  mkdir -p "$d/copy"
  curl_config "$1" "$d/config"
  new_mount_point "beside-$2-$3"
  nice -n "$3" "$bench_tmp/plainfuse" "$iso" release.iso "$mp" || return 0
  pid=$(pgrep -n -f "^$bench_tmp/plainfuse") || { unmount "$mp"; return 0; }
  c0=$(cpu_state)
  t0=$(now)
  nice -n "$3" openssl dgst "-$checksum" "$iso" >/dev/null 2>&1 & a=$!
  (cd "$work/tree" && exec nice -n "$3" xargs -d '\n' -a "$bench_tmp/floor-parts" cp --parents -t "$d/copy") & b=$!
  nice -n "$3" dd if="$mp/release.iso" of=/dev/null bs=1M status=none & c=$!
  bench_pids+=("$a" "$b" "$c")
  curl_fetch "$d/config" "$d/log" || failed=1
  t1=$(now)
  wait "$a" || failed=1
  wait "$b" || failed=1
  wait "$c" || failed=1
  t2=$(now)
  wb_share=$(cpu_share_since "$c0")
  # waited for: not ours to kill at the end any more (their pids may be another's by then)
  bench_pids=("${bench_pids[@]:0:$kept}")
  if [ "$failed" = 0 ]; then
    wb_fetch=$(secs "$t0" "$t1")
    wb_secs=$(secs "$t0" "$t2")
  else
    echo "the same work by peers at once (nice $3) at $2 ms failed: $(tail -3 "$d/log")" >&2
  fi
  unmount "$mp"
}

# --- the counting run (untimed), per link: a mount as the timed full read's, its daemon started
# with bench/alloccount.c preloaded and, once `jigdofs mount` has returned, `strace -c -f`
# attached to it (every thread); then the same dd of the whole image; then strace is stopped
# (SIGTERM: it detaches and writes its table) and the allocation counters are read, before the
# unmount. Both count from the mount's return to the end of the dd: the downloads and the reads,
# not the mount's setup. strace slows every system call, so nothing of this run is timed.
alloc_so=
build_alloc_shim() {
  alloc_so=$bench_tmp/alloccount.so
  cc -O2 -Wall -shared -fPIC -o "$alloc_so" bench/alloccount.c || {
    echo "cannot build bench/alloccount.c: no allocation counts" >&2; alloc_so=; }
}
alloc_counts() { # FILE -> "MALLOC CALLOC REALLOC ALIGNED" (see bench/alloccount.c)
  od -An -t u8 -N 32 "$1" 2>/dev/null | xargs
}
# wait_traced PID TRACER: until every thread of PID is traced by TRACER (bounded: 10 s)
wait_traced() {
  local t ok
  for _ in $(seq 200); do
    ok=1
    for t in /proc/"$1"/task/*; do
      [ "$(awk '/^TracerPid:/ { print $2 }' "$t/status" 2>/dev/null)" = "$2" ] || { ok=0; break; }
    done
    [ "$ok" = 0 ] || return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
# counting_run RTT URL -> sets ct_parts (parts downloaded), ct_table ("NAME CALLS" lines, the
# first "total"; empty without strace), ct_allocs ("MALLOC CALLOC REALLOC ALIGNED" during the dd)
counting_run() {
  local rtt=$1 url=$2 r0 st=$bench_tmp/strace-$1 spid= a0= a1= name=$image_name
  ct_parts= ct_table= ct_allocs=
  new_mount_point "count-$rtt"
  r0=$(requests)
  LD_PRELOAD=$alloc_so ALLOCCOUNT_FILE=$bench_tmp/allocs-$rtt jigdofs_mount_dl "count-$rtt" "$url" "$rtt" || return 0
  find_daemon
  [ -n "$pid" ] || { unmount "$mp"; return 0; }
  if command -v strace >/dev/null; then
    strace -f -c -q -o "$st" -p "$pid" 2>"$st.err" &
    spid=$!
    bench_pids+=("$spid")
    if ! wait_traced "$pid" "$spid"; then
      echo "strace could not attach to the daemon (ptrace: root or kernel.yama.ptrace_scope=0): $(tail -1 "$st.err")" >&2
      kill "$spid" 2>/dev/null || true
      spid=
    fi
  else
    echo "strace not installed (scripts/install-deps.sh): no system call counts" >&2
  fi
  [ -z "$alloc_so" ] || a0=$(alloc_counts "$bench_tmp/allocs-$rtt.$pid")
  dd if="$mp/$name" of=/dev/null bs=1M status=none || echo "counting run at $rtt ms: dd failed" >&2
  [ -z "$alloc_so" ] || a1=$(alloc_counts "$bench_tmp/allocs-$rtt.$pid")
  if [ -n "$spid" ]; then
    kill -TERM "$spid" 2>/dev/null || true
    wait "$spid" 2>/dev/null || true
    # strace -c's table: % time, seconds, usecs/call, calls, [errors,] syscall; the total last
    ct_table=$(awk '$NF == "total" { print "total", $4 }' "$st" 2>/dev/null
               awk '$NF != "total" && NF >= 5 && $1 ~ /^[0-9.]+$/ { print $NF, $4 }' "$st" 2>/dev/null | sort -k2,2nr)
    [ -n "$ct_table" ] || echo "counting run at $rtt ms: no strace table: $(tail -2 "$st.err")" >&2
  fi
  if [ -n "$a0" ] && [ -n "$a1" ]; then
    ct_allocs=$(paste -d' ' <(tr ' ' '\n' <<< "$a1") <(tr ' ' '\n' <<< "$a0") | awk '{ printf "%d ", $1 - $2 }' | xargs)
  elif [ -n "$alloc_so" ]; then
    echo "counting run at $rtt ms: no allocation counts from the daemon ($bench_tmp/allocs-$rtt.$pid)" >&2
  fi
  ct_parts=$(parts_fetched "$r0")
  jigdofs_unmount_dl "count-$rtt"
}
# print_counts LABEL: the counting run's figures, per part downloaded
print_counts() {
  local n=$ct_parts total
  if [ -z "$n" ] || [ "$n" = 0 ]; then echo "jigdofs counting run, $1: no parts downloaded"; return; fi
  printf 'jigdofs counting run, %s (untimed): %d parts downloaded; per part, from the mount'"'"'s return to the end of dd:\n' "$1" "$n"
  if [ -n "$ct_table" ]; then
    total=$(awk '$1 == "total" { print $2 }' <<< "$ct_table")
    printf '  system calls: %.1f a part (%d in all, strace -c -f on the daemon); the top 8, a part:\n   ' "$(ratio "${total:-0}" "$n")" "${total:-0}"
    awk -v n="$n" '$1 != "total" && k++ < 8 { printf " %s %.1f", $1, $2 / n } END { print "" }' <<< "$ct_table"
  else
    echo "  system calls: n/a"
  fi
  if [ -n "$ct_allocs" ]; then
    # shellcheck disable=SC2086 # four numbers
    set -- $ct_allocs
    printf '  allocations: %.1f a part (%d in all: malloc %.1f, calloc %.1f, realloc %.1f, aligned %.1f a part)\n' \
      "$(ratio "$(( $1 + $2 + $3 + $4 ))" "$n")" "$(( $1 + $2 + $3 + $4 ))" "$(ratio "$1" "$n")" "$(ratio "$2" "$n")" \
      "$(ratio "$3" "$n")" "$(ratio "$4" "$n")"
  else
    echo "  allocations: n/a"
  fi
}

# The checksum's own CPU seconds per GB of the image (user + system): `openssl dgst -md5` (or
# -sha256) over the finished ISO, read from the page cache, the best of 3 (the floor of checking
# every byte on this machine; OpenSSL's MD5 and its SHA256 with the CPU's SHA extensions)
digest_cpu_per_gb() {
  local TIMEFORMAT=%U+%S t best= i
  for i in 1 2 3; do
    t=$( { time openssl dgst "-$checksum" "$iso" >/dev/null; } 2>&1 ) || { echo ""; return; }
    t=$(echo "$t" | bc -l)
    if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
  done
  echo "$best / $gb" | bc -l
}

# fresh_memory_cost -> "NEW AGAIN": CPU-s to write 1 GB of zeros into a new file in the run's
# directory (memory the file system must take: on a tmpfs, pages), and to write the same GB over
# it (the copy alone). Every contender that stores its parts pays the first per GB it keeps.
# Why printed: on a VM whose host takes freed memory back (free page reporting: Firecracker here,
# 2 MiB blocks free for about 2 s), pages taken again cost the host's fault too, as system time
# of whoever takes them, and the first touch of memory since boot more still. On 2026-12-07 this
# cost 0.5 CPU-s at a run's start and 2.0-2.8 at its end, and the daemon's system time for the
# same read ranged 1.8-4.3 s between runs. Measured at the start and the end.
fresh_memory_cost() {
  local f=$bench_tmp/fresh-memory TIMEFORMAT=%U+%S a b
  a=$( { time dd if=/dev/zero of="$f" bs=1M count=1000 status=none; } 2>&1 ) || { rm -f "$f"; return 0; }
  b=$( { time dd if=/dev/zero of="$f" bs=1M count=1000 conv=notrunc status=none; } 2>&1 ) || { rm -f "$f"; return 0; }
  rm -f "$f"
  printf '%.2f %.2f\n' "$(echo "$a" | bc -l)" "$(echo "$b" | bc -l)"
}
fresh_memory_line() { # WHEN
  local new again
  read -r new again <<< "$(fresh_memory_cost)"
  [ -z "$new" ] || printf '%-52s %s\n' "" "$(printf 'writing 1 GB into a new file here (%s): %.2f CPU-s; over it again: %.2f (the copy alone)' "$1" "$new" "$again")"
}

# (the help captured first: grep -q stops reading at the match, and with pipefail the help's
# SIGPIPE would count as "no downloads")
mount_help=$("$bin" mount --help 2>/dev/null || true)
if grep -q -- '--server' <<< "$mount_help"; then has_downloads=1; else has_downloads=0; fi
ln -s "$iso" "$www/release.iso"
gb=$(echo "$size / 1000000000" | bc -l)

warm_page_cache
digest_floor=$(digest_cpu_per_gb)
[ "${COUNTING_RUN:-1}" = 0 ] || build_alloc_shim
header
printf '%-52s mirror: nginx on 127.0.0.1:%s, RTT added by %s\n' "" "$nginx_port" "$proxy_name"
[ -z "$digest_floor" ] || printf '%-52s %s\n' "" "$(printf 'openssl dgst -%s of the image: %.2f CPU-s per GB (best of 3)' "$checksum" "$digest_floor")"
fresh_memory_line "at the start"
summary=()
link_urls=() link_labels=() link_rtts=() link_caps=() link_totals=()
shaped=${SHAPED:-30:100}
links=$rtts
[ "$shaped" = none ] || links="$links $shaped"
for link in $links; do
  rtt=${link%%:*}
  cap=
  [ "$link" = "$rtt" ] || cap=${link#*:}
  start_mirror "$rtt" $cap
  label="$rtt ms RTT"
  if [ -n "$cap" ]; then label="$rtt ms RTT, $cap MB/s shared"; rtt="${rtt}ms-${cap}MBps"; fi
  mkdir -p "$www/rtt$rtt"
  sed "s|^Base=.*|Base=$url/tree/|" "$rel/release.jigdo" > "$www/rtt$rtt/release.jigdo"
  ln -s "$rel/release.template" "$www/rtt$rtt/release.template"
  link_urls+=("$url") link_labels+=("$label") link_rtts+=("$rtt") link_caps+=("$cap") link_totals+=("")
  if [ "$has_downloads" = 0 ]; then
    row_na "jigdofs mount + dd (cold cache), $label" "jigdofs: n/a (binary has no downloads)"
    summary+=("$label: jigdofs n/a")
    continue
  fi
  jigdofs_download "$rtt" "$url"
  if [ -z "$js_total" ]; then
    row_na "jigdofs mount + dd (cold cache), $label" "FAILED"
    continue
  fi
  printf '%-52s %8.3f s %13s  %s\n' "jigdofs mount: first byte of the image, $label" "$js_ttfb" "" "from mount start (mount returned after $(printf %.3f "$js_mount") s)"
  printf '%-52s %8.3f s %13s  %s\n' "jigdofs mount: 4 KiB in the middle, $label" "$js_mid" "" "one part downloaded, on the same mount"
  row "jigdofs mount + dd (cold cache), $label" "$js_total" "dd alone $(printf %.2f "$js_dd") s, $js_requests requests, daemon peak RSS ${js_rss:-?} MiB; CPUs ${js_share}"
  link_totals[${#link_totals[@]}-1]=$js_total
  floor_pieces "$rtt"
  curl_one_file "$url"
  if [ -n "$cf_secs" ]; then
    row "curl, the ISO as one file (reference), $label" "$cf_secs" "same link"
    summary+=("$(printf '%s: jigdofs (mount + dd) / curl one file = %.2fx' "$label" "$(ratio "$js_total" "$cf_secs")")")
  fi
  if [ -n "$cm_secs" ]; then
    row "curl | md5sum, the ISO verified on the way, $label" "$cm_secs" "same link, bytes verified; CPUs $cm_share"
    summary+=("$label: $(goal_ratio "jigdofs (mount + dd) / (curl | md5sum)" "$js_total" "$cm_secs" "$(goal_at 1.0 "")")")
  fi
  if [ -n "$cs_secs" ]; then
    row "curl | openssl dgst -sha256, the ISO, $label" "$cs_secs" "same link, bytes verified (SHA256)"
    summary+=("$label: $(goal_ratio "jigdofs (mount + dd) / (curl | openssl dgst -sha256)" "$js_total" "$cs_secs")")
  fi
  curl_parts "$url" "$rtt"
  if [ -n "$cp_secs" ]; then
    row "curl --parallel of the parts, unchecked, $label" "$cp_secs" "one request per part at the per-host cap"
    summary+=("$label: $(goal_ratio "jigdofs (mount + dd) / curl --parallel of the parts" "$js_total" "$cp_secs" "$(goal_at "" 1.1)")")
    [ -z "$cf_secs" ] || summary+=("$(printf '%s: curl --parallel of the parts alone / curl one file = %.2fx (the floor of fetching part by part at 32 at once, without checking)' "$label" "$(ratio "$cp_secs" "$cf_secs")")")
  fi
  # The wall-time goal of this link, if it has one of its own, and its reference: 1.0x `curl |
  # md5sum` at 0 ms, 1.1x `curl --parallel` at 20 ms (the work floor and the same work by peers
  # at once are printed against it).
  goal_ref= goal_ref_name= goal_limit=
  if [ -z "$cap" ] && [ "$rtt" = 0 ] && [ -n "$cm_secs" ]; then goal_ref=$cm_secs goal_ref_name="curl | md5sum" goal_limit=1.0; fi
  if [ -z "$cap" ] && [ "$rtt" = 20 ] && [ -n "$cp_secs" ]; then goal_ref=$cp_secs goal_ref_name="curl --parallel" goal_limit=1.1; fi
  wb_lines=()
  [ -z "$goal_ref" ] || for wb_nice in 19 0; do
    work_beside "$url" "$rtt" "$wb_nice"
    [ -n "$wb_secs" ] || continue
    row "the same work by peers at once (rest at nice $wb_nice), $label" "$wb_secs" \
      "$(printf 'the fetch (curl --parallel) %.2f s; beside it openssl dgst, cp of the parts, dd through plainfuse; CPUs %s' "$wb_fetch" "$wb_share")"
    wb_line=$(printf '%s: the same work by peers at once, the rest at nice %s = %.2fx %s; jigdofs (mount + dd) / it = %.2fx' \
      "$label" "$wb_nice" "$(ratio "$wb_secs" "$goal_ref")" "$goal_ref_name" "$(ratio "$js_total" "$wb_secs")")
    wb_line+=$(printf ' (the %sx goal is %s it)' "$goal_limit" "$([ "$(verdict "$(ratio "$wb_secs" "$goal_ref")" "$goal_limit")" = met ] && echo above || echo below)")
    wb_lines+=("$wb_line")
  done
  aria2c_parts "$url" "$rtt"
  if [ -n "$ar_secs" ]; then
    row "aria2c, the parts as files, 32 at once, $label" "$ar_secs" "each checked against its ${checksum^^}"
    summary+=("$label: $(goal_ratio "jigdofs (mount + dd) / aria2c of the parts" "$js_total" "$ar_secs" "$(goal_at 0.7 0.8)")")
  fi
  cpu_gb=
  if [ -n "$js_cpu" ]; then
    read -r cpu_user cpu_sys <<< "$js_cpu"
    cpu_gb=$(echo "($cpu_user + $cpu_sys) / $gb" | bc -l)
    printf '%-52s %s\n' "jigdofs daemon CPU, $label" "$(printf 'user %.2f s + system %.2f s = %.2f CPU-s per GB (%.2f + %.2f), %s parts downloaded' \
      "$cpu_user" "$cpu_sys" "$cpu_gb" "$(echo "$cpu_user / $gb" | bc -l)" "$(echo "$cpu_sys / $gb" | bc -l)" "${js_parts:-?}")"
    if [ -n "$digest_floor" ]; then
      beyond=$(echo "$cpu_gb - $digest_floor" | bc -l)
      limit=$(goal_at 1.0 1.0)
      summary+=("$(printf '%s: daemon CPU beyond the checksum = %.2f CPU-s/GB (%.2f, openssl dgst -%s alone %.2f)%s' "$label" "$beyond" \
        "$cpu_gb" "$checksum" "$digest_floor" "$([ -z "$limit" ] || printf ' (issue 21 goal <= %s: %s)' "$limit" "$(verdict "$beyond" "$limit")")")")
    fi
    summary+=("$label: daemon peak RSS ${js_rss:-?} MiB")
  fi
  # The thread that serves every connection: a response it notices late delays that
  # connection's next request. Waiting for a core is what the rest of the machine's work costs
  # the fetch (on 2 cores: the daemon's hashing, storing and replies, dd, nginx, the proxy).
  if [ -n "$js_sched" ]; then
    read -r on_core for_core <<< "$js_sched"
    summary+=("$(printf '%s: the transfer thread (jigdofs-curl) was on a core %.2f s and waited for one %.2f s of the %.2f s' \
      "$label" "$on_core" "$for_core" "$js_total")")
  fi
  # The peers' CPU for the same parts (user + system of the whole process, per GB): what
  # fetching each part as its own request costs a mature client, the floor under the daemon's
  # "beyond the checksum" (which also pays the FUSE replies: two more copies of every byte).
  if [ -n "$cp_cpu" ]; then
    summary+=("$(printf '%s: peer floor: curl --parallel of the parts, unchecked, to /dev/null = %.2f CPU-s/GB' "$label" "$(echo "$cp_cpu / $gb" | bc -l)")")
  fi
  work_floor
  if [ -n "$wf_secs" ]; then
    wf_line=$(printf '%s: work floor: %.2f CPU-s (fetch %.2f + serving %.2f + check %.2f + store %.2f + reply %.2f) / %d cores = %.2f s%s' \
      "$label" "$wf_cpu" "$cp_cpu" "$cp_serve_cpu" "$(echo "$digest_floor * $gb" | bc -l)" "$wf_store" "$wf_reply" "$(nproc)" \
      "$(echo "$wf_cpu / $(nproc)" | bc -l)" "$(echo "$wf_cpu / $(nproc) < $cp_secs" | bc -l | grep -q 1 && printf ' (below fetching alone: %.2f s)' "$cp_secs")")
    # Against the link's goal (above): a goal below the floor is out of reach on this machine.
    if [ -n "$goal_ref" ]; then
      r=$(ratio "$wf_secs" "$goal_ref")
      wf_line+=$(printf ' = %.2fx %s (the %sx goal is %s)' "$r" "$goal_ref_name" "$goal_limit" \
        "$([ "$(verdict "$r" "$goal_limit")" = met ] && echo "above it: within reach in principle" || echo "below it: out of reach on this machine")")
    fi
    summary+=("$wf_line")
  fi
  # The daemon's own share of that floor, per GB, beside its CPU beyond the checksum: fetching
  # (curl --parallel's CPU), storing (cp of the parts less cat of them) and serving the reads
  # (bench/plainfuse.c's CPU: its preads and replies; the reader's side is dd's, not the
  # daemon's). A CPU goal below it is out of reach on this machine.
  if [ -n "$wf_secs" ] && [ -n "${wf_server:-}" ] && [ -n "${cpu_gb:-}" ] && [ -n "$digest_floor" ]; then
    dfloor=$(echo "($cp_cpu + $wf_store + $wf_server) / $gb" | bc -l)
    limit=$(goal_at 1.0 1.0)
    summary+=("$(printf '%s: daemon CPU floor beyond the checksum: fetch %.2f + store %.2f + serve %.2f = %.2f CPU-s/GB%s; the daemon %.2f = %.2fx it' \
      "$label" "$(echo "$cp_cpu / $gb" | bc -l)" "$(echo "$wf_store / $gb" | bc -l)" "$(echo "$wf_server / $gb" | bc -l)" "$dfloor" \
      "$([ -z "$limit" ] || printf ' (the %s goal is %s)' "$limit" "$([ "$(verdict "$dfloor" "$limit")" = met ] && echo "above it" || echo "below it: out of reach on this machine")")" \
      "$(echo "$cpu_gb - $digest_floor" | bc -l)" "$(echo "($cpu_gb - $digest_floor) / $dfloor" | bc -l)")")
  fi
  [ ${#wb_lines[@]} = 0 ] || summary+=("${wb_lines[@]}")
  if [ -n "$ar_cpu" ]; then
    ar_line=$(printf '%s: peer: aria2c, parts fetched, checked and written = %.2f CPU-s/GB' "$label" "$(echo "$ar_cpu / $gb" | bc -l)")
    [ -z "$digest_floor" ] || ar_line+=$(printf ', %.2f beyond the checksum' "$(echo "$ar_cpu / $gb - $digest_floor" | bc -l)")
    summary+=("$ar_line")
  fi
  if [ "${COUNTING_RUN:-1}" != 0 ]; then
    counting_run "$rtt" "$url"
    print_counts "$label"
  fi
done
# jigdo-lite last: it deletes its parts as it merges them (see the header)
if [ "${JIGDO_LITE:-1}" != 0 ]; then
  for i in "${!link_urls[@]}"; do
    url=${link_urls[$i]} label=${link_labels[$i]} rtt=${link_rtts[$i]}
    jigdo_lite "$rtt" "$url/rtt$rtt/release.jigdo"
    if [ -z "$jl_secs" ]; then
      row_na "jigdo-lite --noask, $label" "FAILED"
      continue
    fi
    row "jigdo-lite --noask, $label" "$jl_secs" "$jl_requests requests"
    if [ -n "${link_totals[$i]}" ]; then
      summary+=("$(printf '%s: jigdofs (mount + dd) / jigdo-lite = %.2fx' "$label" "$(ratio "${link_totals[$i]}" "$jl_secs")")")
    fi
  done
fi
[ ${#summary[@]} = 0 ] || printf '%s\n' "${summary[@]}"
fresh_memory_line "at the end"
echo "CPU time taken by the hypervisor (steal) during the run: $(steal_since "$bench_start_ticks")%"
