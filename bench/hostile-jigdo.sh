#!/usr/bin/env bash
# A hostile .jigdo costs at most about a second and a few MiB (issue 9), except for what it
# declares and jigdofs must keep (uniqparts, uniqsha: ~80-100 bytes a distinct part, charged
# 160 to --max-metadata-memory, issue 20): time and peak RSS of `jigdofs info` and `make-image` on
# .jigdo files of a million lines, against a small one (the baseline RSS of the binary). Not a
# test: it times things.
#
#   same:      1M `Base=Base:` lines (a label loop, refused by name after parsing)
#   distinct:  1M `Base=Base:N` lines (all distinct, the same loop)
#   capped:    1M `Base=http://mN.example/` lines (no loop: 256 values kept, one warning)
#   parts:     1M `[Parts]` lines of one checksum (256 kept, the rest counted)
#   uniqparts: 1M `[Parts]` lines, each of its own checksum (each is kept: what a real
#              .jigdo costs per part)
#   uniqsha:   the same with SHA256 checksums (jigdo 2.0, as Debian's): 43-character keys
#   *.gz:      the same gzip'd
#
# usage: bench/hostile-jigdo.sh [WORKDIR]    env: JIGDOFS=path/to/jigdofs (default: release build)
set -euo pipefail
work=${1:-/tmp/jigdofs-bench-hostile}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -n "${JIGDOFS:-}" ]; then
  bin=$JIGDOFS
else
  swift build -c release --product jigdofs >/dev/null
  bin=$(swift build -c release --show-bin-path)/jigdofs
fi
mkdir -p "$work"
python3 - "$work" <<'PY'
import base64, hashlib, os, sys
w = sys.argv[1]
head = ("[Jigdo]\nVersion=1.2\n[Image]\nFilename=x.iso\nTemplate=x.template\n"
        "[Parts]\n1B2M2Y8AsgTpgAmY7PhCfg=Base:a\n[Servers]\nBase=http://example.org/\n")
def sum(i, h=hashlib.md5):  # a distinct MD5 (or SHA256) in jigdo's Base64 (URL-safe, no padding)
    return base64.urlsafe_b64encode(h(b"%d" % i).digest()).rstrip(b"=").decode()
files = {
    "small": "",
    "same": "Base=Base:\n" * 1000000,
    "distinct": "".join("Base=Base:%d\n" % i for i in range(1000000)),
    "capped": "".join("Base=http://m%d.example/\n" % i for i in range(1000000)),
    "parts": "[Parts]\n" + "".join("rL0Y20zC-Fzt72VPzMSk2A=Base:pool/f%d\n" % i for i in range(1000000)),
    "uniqparts": "[Parts]\n" + "".join("%s=Base:pool/f%d\n" % (sum(i), i) for i in range(1000000)),
    "uniqsha": "[Parts]\n" + "".join("%s=Base:pool/f%d\n" % (sum(i, hashlib.sha256), i) for i in range(1000000)),
}
for name, body in files.items():
    p = os.path.join(w, name + ".jigdo")
    if not os.path.exists(p):
        with open(p, "w") as f: f.write((head.replace("Version=1.2", "Version=2.0") if name == "uniqsha" else head) + body)
PY
for f in same distinct capped parts uniqparts; do
  [ -s "$work/$f.jigdo.gz" ] || gzip -9 -c "$work/$f.jigdo" > "$work/$f.jigdo.gz"
done
echo "jigdofs: $bin; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-22s %10s %-12s %8s %12s\n' "file" "size MB" "command" "time s" "peak RSS MiB"
run() { # file command...
  local file=$1; shift
  /usr/bin/time -f '%e %M' -o "$work/.time" "$bin" "$@" >/dev/null 2>&1 || true
  read -r secs kib < <(tail -1 "$work/.time")
  printf '%-22s %10.1f %-12s %8s %12.1f\n' "$(basename "$file")" "$(echo "$(stat -c %s "$file") / 1000000" | bc -l)" \
    "$1" "$secs" "$(echo "$kib / 1024" | bc -l)"
}
for f in small same distinct capped parts uniqparts uniqsha same.jigdo.gz parts.jigdo.gz uniqparts.jigdo.gz; do
  case $f in *.gz) file=$work/$f ;; *) file=$work/$f.jigdo ;; esac
  run "$file" info "$file"
  run "$file" make-image "$file" -o "$work/out.iso"
  rm -f "$work/out.iso" "$work/out.iso.tmp"
done
