#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root): installs what is missing, builds jigdofs and
# installs it with its mount helpers, builds a small demo release with xorriso + jigdo-file,
# then mounts it and browses it. Everything it mounts is unmounted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
bash scripts/install-deps.sh
swift build -c release
sh mount-helpers/install.sh "$(swift build -c release --show-bin-path)/jigdofs" >/dev/null
bin=/usr/local/bin/jigdofs
demo=${DEMO_DIR:-$PWD/demo}
mnt=$demo/mnt
net=$demo/mnt-url
nginx_pid=
cleanup() {
  fusermount3 -u "$mnt" 2>/dev/null || true
  fusermount3 -u "$net" 2>/dev/null || true
  if [ -n "$nginx_pid" ]; then kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n== %s\n' "$*"; }
step "building a demo release in $demo (xorriso + jigdo-file + libjte)"
Tests/Fixtures/make-release.sh "$demo" 300 7 >/dev/null
mkdir -p "$demo/release" "$mnt"
cp "$demo/jf-md5-gz/release.jigdo" "$demo/release/demo-1.0-x86_64.jigdo"
cp "$demo/jf-md5-gz/release.template" "$demo/release/release.template"
sed -i 's|^Base=.*|Base=http://mirror.invalid/demo/|' "$demo/release/demo-1.0-x86_64.jigdo"
sed -i 's|^Filename=.*|Filename=demo-1.0-x86_64.iso|' "$demo/release/demo-1.0-x86_64.jigdo"
echo "release: $(ls "$demo/release" | tr '\n' ' ')  packages: $demo/tree"

step "jigdofs info $demo/release/demo-1.0-x86_64.jigdo"
"$bin" info "$demo/release/demo-1.0-x86_64.jigdo"

step "jigdofs mount --scan $demo/tree $demo/release $mnt"
fusermount3 -u "$mnt" 2>/dev/null || true
"$bin" mount --scan "$demo/tree" "$demo/release" "$mnt"
ls -l "$mnt"

step "the ISO's own directory tree, read straight from the template (jigdofs ls)"
"$bin" ls "$demo/release/demo-1.0-x86_64.jigdo" / -l > "$demo/iso-root.txt"
head -n 8 "$demo/iso-root.txt"

step "browsing the files inside the image, no root or loop device needed ($mnt/demo-1.0-x86_64.iso.d)"
ls -l "$mnt/demo-1.0-x86_64.iso.d" > "$demo/iso-dir.txt"
head -n 6 "$demo/iso-dir.txt"
cmp "$mnt/demo-1.0-x86_64.iso.d/repodata/primary.xml" "$demo/tree/repodata/primary.xml" && echo "repodata/primary.xml read through the mount equals the package tree's copy"

step "xorriso reads the virtual ISO through the mount"
# (Into a file first: `xorriso | head` fails under pipefail when head exits before xorriso
# has written everything: xorriso gets EPIPE and exits 5. `stdio:`: xorriso refuses a plain
# path under /dev, as a DEMO_DIR in /dev/shm is.)
xorriso -indev "stdio:$mnt/demo-1.0-x86_64.iso" -find / -type f 2>"$demo/xorriso.err" > "$demo/files-in-iso.txt"
head -n 5 "$demo/files-in-iso.txt"

step "sha256sum of the virtual ISO and of the ISO xorriso made"
sha256sum "$mnt/demo-1.0-x86_64.iso" "$demo/release.iso"
cmp "$mnt/demo-1.0-x86_64.iso" "$demo/release.iso" && echo "identical, byte for byte"

step "make-image writes a verified copy (nothing is left behind on failure)"
rm -f "$demo/out.iso"
"$bin" make-image "$demo/release/demo-1.0-x86_64.jigdo" --scan "$demo/tree" -o "$demo/out.iso"

step "unmounting"
"$bin" umount "$mnt" && echo "unmounted $mnt"

# The same release from a mirror: nginx on 127.0.0.1 serves the .jigdo, the template and the
# packages; the mount has nothing local and an empty cache, and downloads only what is read.
www=$demo/www
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
step "a local mirror of the release: nginx on $url (root $www)"
rm -rf "$www" "$demo/cache-url" "$demo/nginx"
mkdir -p "$www/release" "$demo/nginx" "$net"
ln -s "$demo/tree" "$www/demo"
cp "$demo/release/release.template" "$www/release/"
sed "s|^Base=.*|Base=$url/demo/|" "$demo/release/demo-1.0-x86_64.jigdo" > "$www/release/demo-1.0-x86_64.jigdo"
user_line=
[ "$(id -u)" -eq 0 ] && user_line="user root;"   # the workers read the demo dir wherever it is
cat > "$demo/nginx/nginx.conf" <<CONF
daemon off;
$user_line
worker_processes 1;
pid $demo/nginx/nginx.pid;
error_log $demo/nginx/error.log;
events { worker_connections 64; }
http {
  access_log $demo/nginx/access.log;
  client_body_temp_path $demo/nginx; proxy_temp_path $demo/nginx; fastcgi_temp_path $demo/nginx;
  uwsgi_temp_path $demo/nginx; scgi_temp_path $demo/nginx;
  server { listen 127.0.0.1:$port; root $www; }
}
CONF
nginx -p "$demo/nginx" -c "$demo/nginx/nginx.conf" &
nginx_pid=$!
for _ in $(seq 100); do curl -sf -o /dev/null "$url/release/demo-1.0-x86_64.jigdo" && break; sleep 0.1; done
echo "serving $url/release/demo-1.0-x86_64.jigdo, its template and $url/demo/ (the packages)"

step "jigdofs mount $url/release/demo-1.0-x86_64.jigdo $net   (nothing local, empty cache)"
fusermount3 -u "$net" 2>/dev/null || true
"$bin" mount --cache-dir "$demo/cache-url" "$url/release/demo-1.0-x86_64.jigdo" "$net"
ls -l "$net"

step "a file from inside the image, downloaded on demand ($net/demo-1.0-x86_64.iso.d/repodata/primary.xml)"
cmp "$net/demo-1.0-x86_64.iso.d/repodata/primary.xml" "$demo/tree/repodata/primary.xml" \
  && echo "repodata/primary.xml equals the package tree's copy"

step "a stretch of the image: 4 MiB from 8 MiB on, compared with the ISO xorriso made"
cmp <(dd if="$net/demo-1.0-x86_64.iso" bs=1M skip=8 count=4 status=none) \
    <(dd if="$demo/release.iso" bs=1M skip=8 count=4 status=none) && echo "identical, byte for byte"

step "jigdofs status $net   (parts downloaded so far)"
"$bin" status "$net"

step "jigdofs status --map $net   (where each stretch of the image is: what the reads fetched)"
COLUMNS=${COLUMNS:-100} "$bin" status --map "$net"
echo "nginx answered $(wc -l < "$demo/nginx/access.log") requests"

step "unmounting, stopping nginx"
"$bin" umount "$net" && echo "unmounted $net"
kill "$nginx_pid" 2>/dev/null || true
wait "$nginx_pid" 2>/dev/null || true
nginx_pid=
echo "nginx stopped"
