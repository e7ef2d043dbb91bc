# Shared by the bench scripts (sourced, not run). Not a test: these scripts time things.
#
# Every script takes the same arguments:  [--quick] [WORKDIR] [NFILES]
#   default: WORKDIR /tmp/jigdofs-bench, 7000 files (a ~1 GB release, as bench.sh builds it, and
#   reused when present); --quick: /tmp/jigdofs-bench-quick, 1000 files (~130 MB).
# and honours JIGDOFS=/path/to/jigdofs (default: this repo's release build, built if needed).
#
# Everything a script starts is registered here and stopped on exit, every mount unmounted,
# also when the script fails or is interrupted.
set -euo pipefail
if [ "${1:-}" = "--quick" ]; then
  shift
  work=${1:-/tmp/jigdofs-bench-quick}
  nfiles=${2:-1000}
else
  work=${1:-/tmp/jigdofs-bench}
  nfiles=${2:-7000}
fi
case $work in /*) ;; *) work=$PWD/$work ;; esac
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/env.sh

if [ -n "${JIGDOFS:-}" ]; then
  bin=$JIGDOFS
else
  swift build -c release >/dev/null
  bin=$(swift build -c release --show-bin-path)/jigdofs
fi
[ -x "$bin" ] || { echo "no jigdofs binary at $bin" >&2; exit 1; }
bin=$(readlink -f "$bin")

# --- cleanup: mounts first (they may hold files of the temp dir), then processes, then files
bench_mounts=()
bench_pids=()    # our own children (nginx, proxies): killed and waited for
bench_daemons=() # FUSE daemons that detached from us: they exit on unmount; killed only if not
bench_groups=()  # process groups we made with setsid (a tool and the children it runs)
# BENCH_TMPDIR: where runs write what they fetch (caches, peers' files, mount points); default
# /tmp. A tmpfs (/dev/shm) keeps the figures free of the disk's own costs; see bench/download.sh.
bench_tmp=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/jigdofs-bench-run.XXXXXX")
bench_cleanup() {
  local m p
  for m in "${bench_mounts[@]}"; do
    if mountpoint -q "$m" 2>/dev/null; then
      fusermount3 -u "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
    fi
  done
  for p in "${bench_groups[@]}"; do
    kill -- "-$p" 2>/dev/null || true
  done
  for p in "${bench_daemons[@]}"; do
    daemon_alive "$p" && kill "$p" 2>/dev/null || true
  done
  for p in "${bench_pids[@]}"; do
    kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
  done
  rm -rf --one-file-system "$bench_tmp"
}
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- the release (the same one bench.sh uses; rebuilt only when missing or of another size);
#     BENCH_OWN_RELEASE=1: none (bench/scale.sh makes its own)
mkdir -p "$work"
if [ -z "${BENCH_OWN_RELEASE:-}" ]; then
  if [ ! -f "$work/release.iso" ] || [ "$(cat "$work/.nfiles" 2>/dev/null)" != "$nfiles" ]; then
    echo "building a release of $nfiles files in $work ..." >&2
    Tests/Fixtures/make-release.sh "$work" "$nfiles" 42 >/dev/null
    echo "$nfiles" > "$work/.nfiles"
  fi
  # CHECKSUM=sha256: the release's SHA256 variant (jigdo-file make-template -C sha256, a jigdo
  # 2.0 file; make-release.sh makes both) instead of the MD5 one (default)
  checksum=${CHECKSUM:-md5}
  case $checksum in
    md5) key_len=22 ;;
    sha256) key_len=43 ;;
    *) echo "CHECKSUM must be md5 or sha256, not $checksum" >&2; exit 1 ;;
  esac
  rel=$work/jf-$checksum-gz
  iso=$work/release.iso
  size=$(stat -c %s "$iso")
  # The image's file name in a mount (which may also show e.g. a browse directory next to it)
  image_name=$(sed -n '/^\[Image\]/,/^\[/ s/^Filename=//p' "$rel/release.jigdo" | head -1)
  parts=$(grep -c "^[A-Za-z0-9_-]\\{$key_len\\}=" "$rel/release.jigdo" || true)
fi

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; } # t0 t1 -> seconds
mbps() { echo "$size / $1 / 1000000" | bc -l; } # seconds -> MB/s for the whole image
ratio() { echo "$1 / $2" | bc -l; }

warm_page_cache() { # every contender reads the same files from memory: all compete on CPU
  find "$work/tree" -type f -exec cat {} + >/dev/null
  cat "$iso" "$rel/release.template" >/dev/null
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_nginx ROOT: nginx (Debian's, with its own config) serving ROOT on 127.0.0.1 and a free
# port; sets $nginx_port and $ng (its directory: access.log, error.log). Not a $(...) function:
# nginx must be this shell's child, registered for stopping.
start_nginx() {
  local root=$1 port pid
  ng=$bench_tmp/nginx
  mkdir -p "$ng/tmp"
  nginx_port=
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    cat > "$ng/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $ng/nginx.pid;
error_log $ng/error.log;
events { worker_connections 1024; }
http {
  access_log $ng/access.log;
  client_body_temp_path $ng/tmp;
  proxy_temp_path $ng/tmp;
  fastcgi_temp_path $ng/tmp;
  uwsgi_temp_path $ng/tmp;
  scgi_temp_path $ng/tmp;
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:$port;
    root $root;
  }
}
EOF
    nginx -p "$ng" -c "$ng/nginx.conf" -e "$ng/error.log" &
    pid=$!
    bench_pids+=("$pid")
    for _ in $(seq 100); do
      curl -s -o /dev/null "http://127.0.0.1:$port/" && { nginx_port=$port; break; }
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    [ -z "$nginx_port" ] || break
  done
  [ -n "$nginx_port" ] || { echo "nginx did not start: $(tail -2 "$ng/error.log")" >&2; exit 1; }
}

# new_mount_point NAME: sets $mp to a new empty directory, registered for unmounting
# (not a $(...) function: the registration must happen in this shell)
new_mount_point() {
  mp=$bench_tmp/$1
  mkdir -p "$mp"
  bench_mounts+=("$mp")
}

unmount() { fusermount3 -u "$1"; }

# The jigdofs daemon serving mount point $1 (for its /proc/PID/status).
daemon_pid() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/exe" 2>/dev/null)" = "$bin" ] || continue
    tr '\0' '\n' < "$p/cmdline" 2>/dev/null | grep -qxF "$1" && { echo "${p#/proc/}"; return 0; }
  done
  return 1
}

# Still our jigdofs daemon, and not a zombie (its parent, init here, may reap it late)?
daemon_alive() {
  [ "$(readlink "/proc/$1/exe" 2>/dev/null)" = "$bin" ] || return 1
  [ "$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# unmount_daemon MOUNTPOINT PID: unmounts, then waits (bounded) for the daemon to exit
unmount_daemon() {
  local i
  unmount "$1"
  for i in $(seq 100); do daemon_alive "$2" || return 0; sleep 0.05; done
  echo "jigdofs daemon $2 still running 5 s after unmounting $1" >&2
}

peak_rss_mib() { # PID -> VmHWM in MiB
  awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}

# timed_dd FILE -> seconds for dd of the whole FILE to /dev/null; fails unless all bytes came
timed_dd() {
  local t0 t1 out
  t0=$(now)
  out=$(dd if="$1" of=/dev/null bs=1M 2>&1) || { echo "dd failed: $(echo "$out" | tail -1)" >&2; return 1; }
  t1=$(now)
  echo "$out" | grep -q "^$size bytes" || { echo "dd read fewer than $size bytes: $(echo "$out" | tail -1)" >&2; return 1; }
  secs "$t0" "$t1"
}

row() { # label seconds [extra]
  printf '%-52s %8.2f s %8.0f MB/s  %s\n' "$1" "$2" "$(mbps "$2")" "${3:-}"
}
row_na() { # label reason
  printf '%-52s %10s %13s  %s\n' "$1" "n/a" "" "$2"
}
# cpu_state: "ALL IDLE STEAL" CPU ticks so far, from /proc/stat's first line (user to steal:
# guest time is counted in user time already; idle counts iowait too)
cpu_state() { awk '/^cpu /{ t = 0; for (i = 2; i <= 9; i++) t += $i; print t, $5 + $6, $9 }' /proc/stat; }
# steal_since "ALL IDLE STEAL": the share of CPU time the hypervisor took from this VM since
# then, in percent (a shared VM's neighbours make every figure slower: compare rows of one run)
steal_since() {
  local now was
  read -r -a now <<< "$(cpu_state)"
  read -r -a was <<< "$1"
  echo $(( (now[2] - was[2]) * 100 / (now[0] - was[0] > 0 ? now[0] - was[0] : 1) ))
}
bench_start_ticks=$(cpu_state)
# cpu_share_since "ALL IDLE STEAL" -> "busy B%, idle I%, steal S%": how the machine's cores
# spent the time since then. A tool that leaves cores idle while it waits on itself (a thread
# hop, a reply) pays twice on a VM: the idle time, and the steal of waking a halted vCPU
# (seen here: 10-30% steal while jigdofs read, 0% while peers kept both cores busy)
cpu_share_since() {
  local now was all
  read -r -a now <<< "$(cpu_state)"
  read -r -a was <<< "$1"
  all=$(( now[0] - was[0] > 0 ? now[0] - was[0] : 1 ))
  printf 'busy %d%%, idle %d%%, steal %d%%' $(( (all - (now[1] - was[1]) - (now[2] - was[2])) * 100 / all )) \
    $(( (now[1] - was[1]) * 100 / all )) $(( (now[2] - was[2]) * 100 / all ))
}

header() {
  printf 'image %s: %d bytes, %d parts, %s, %s cores, load %s\n' "$(basename "$iso")" "$size" "$parts" "${checksum^^}" \
    "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf 'jigdofs: %s\n' "$bin"
  printf 'written to: %s (%s)\n' "$bench_tmp" "$(stat -f -c %T "$bench_tmp" 2>/dev/null || echo '?')"
  printf '%-52s %10s %13s  %s\n' "what" "time" "throughput" "notes"
}

# measure label command... -> one row, with the command's peak RSS (GNU time); output discarded
measure() {
  local label=$1; shift
  local t0 t1 rss
  t0=$(now)
  /usr/bin/time -f '%M' -o "$bench_tmp/.rss" "$@" >/dev/null 2>"$bench_tmp/.err" || {
    row_na "$label" "FAILED: $(tail -1 "$bench_tmp/.err")"; return 0; }
  t1=$(now)
  rss=$(( $(tail -1 "$bench_tmp/.rss") / 1024 ))
  row "$label" "$(secs "$t0" "$t1")" "peak RSS $rss MiB"
}

# jigit-mkimage cannot read jigdo-file's quoted paths with spaces ('Base:a b.rpm'), so it gets
# its native input: an MD5 list (as mirrors publish them), made once, outside any timing.
md5_list() {
  if [ ! -s "$work/md5.list" ]; then
    find "$work/tree" -type f -size +0 -print0 | sort -z | while IFS= read -r -d '' f; do
      printf '%s  %12s  %s\n' "$(md5sum < "$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f"
    done > "$work/md5.list.tmp"
    mv "$work/md5.list.tmp" "$work/md5.list"
  fi
  echo "$work/md5.list"
}

# The two make-image peers on the same inputs, each output compared with the original.
makeimage_peers() {
  local list out=$bench_tmp/peer.iso
  list=$(md5_list)
  rm -f "$out"
  measure "jigit-mkimage -f md5.list (checks MD5)" jigit-mkimage -f "$list" -t "$rel/release.template" -o "$out"
  [ ! -f "$out" ] || cmp -s "$out" "$iso" || echo "jigit-mkimage output DIFFERS" >&2
  rm -f "$out" "$out.tmp"
  measure "jigdo-file make-image" jigdo-file make-image -r quiet --image="$out" --jigdo="$rel/release.jigdo" \
    --template="$rel/release.template" "$work/tree//"
  [ ! -f "$out" ] || cmp -s "$out" "$iso" || echo "jigdo-file output DIFFERS" >&2
  rm -f "$out" "$out.tmp"
}
