#!/usr/bin/env bash
# Installs the Debian 12 packages jigdofs needs to build, test and demo (idempotent; as root).
set -euo pipefail
packages=(
  # build: C libraries behind the shim modules
  pkg-config zlib1g-dev libbz2-dev libfuse3-dev libcurl4-openssl-dev libsqlite3-dev
  # run: FUSE
  fuse3
  # the reference generators and peers the tests and benchmarks compare against
  jigdo-file xorriso jigit
  # inspecting images, squashfs for loop-mount tests, servers for download tests
  genisoimage libarchive-tools squashfs-tools bzip2 nginx-light openssl curl python3
  # the boot test: QEMU (its Depends bring SeaBIOS and iPXE's ROMs) and an isolinux ISO
  qemu-system-x86 isolinux syslinux-common
  # the benchmark script
  bc time aria2 strace
  # the .deb (scripts/build-deb.sh: dpkg-shlibdeps, lintian) and the admin tests (man -w,
  # systemd-fstab-generator, which only writes unit files when the tests run it)
  dpkg-dev lintian man-db systemd
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# nginx is started by the tests themselves, on 127.0.0.1 only; keep the package's own
# instance from holding port 80.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
if ! command -v swift >/dev/null 2>&1 && [ -x /opt/swift/usr/bin/swift ]; then
  echo "note: add /opt/swift/usr/bin to PATH" >&2
fi
