#!/usr/bin/env bash
# Fuzzes the readers of untrusted input with libFuzzer (Fuzz/*, see Fuzz/README.md):
#   FuzzJigdo      the .jigdo parser (gzip detection, sections, value words)
#   FuzzLocations  location expansion (labels, overrides, confinement to mapped directories)
#   FuzzTemplate   the template reader (header, DESC, DATA/zlib and BZIP/bzip2 chunks)
#   FuzzISO9660    the ISO 9660 reader (directory records, Rock Ridge, CE chains, zisofs)
#   FuzzNames      names of .jigdo values and ISO 9660 records as shown and logged: no control
#                  character survives RawNames.printable/printableName
# Each runs SECONDS (default 60) with AddressSanitizer/LeakSanitizer; any crash, trap, leak,
# timeout (10 s for one input) or memory blow-up (2 GB) fails the run, and the input is kept
# in .build-fuzz/artifacts/TARGET/ (make it a regression test: Tests/Fixtures/fuzz/ and
# Tests/JigdoFormatTests/FuzzRegressionTests.swift).
#
# Seed corpora are made from the test fixtures' generators (make-release.sh, xorriso) into
# .build-fuzz/seeds/; inputs libFuzzer finds are kept in .build-fuzz/corpus/ between runs.
# Builds in .build-fuzz (its own scratch path: the normal .build is untouched).
#
# usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f scripts/env.sh ] && . scripts/env.sh
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(FuzzJigdo FuzzLocations FuzzTemplate FuzzISO9660 FuzzNames)
root=$PWD
scratch=$root/.build-fuzz

echo "fuzz: building ${targets[*]} (in .build-fuzz)"
for t in "${targets[@]}"; do
    JIGDOFS_FUZZ=1 swift build --scratch-path "$scratch" -c debug -Xswiftc -sanitize=fuzzer,address --product "$t" 2>&1 \
        | grep -E "error|warning: .*Fuzz/|Build complete" || true
    [ -x "$scratch/debug/$t" ] || { echo "fuzz: $t did not build" >&2; exit 1; }
done

# Seeds: a small release (12 files) from make-release.sh, ISOs with Rock Ridge (long names in CE
# areas, symlinks, deep trees), Joliet and zisofs from xorriso. Made once.
seeds=$scratch/seeds
if [ ! -f "$seeds/.complete" ] || [ ! -d "$seeds/FuzzNames" ]; then
    rm -rf "$seeds" && mkdir -p "$seeds"/{FuzzJigdo,FuzzLocations,FuzzTemplate,FuzzISO9660,FuzzNames}
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    bash Tests/Fixtures/make-release.sh "$work/rel" 12 7 >/dev/null
    for d in "$work"/rel/j*-*/; do
        n=$(basename "$d")
        cp "$d/release.jigdo" "$seeds/FuzzJigdo/$n.jigdo"
        gzip -9 -n -c "$d/release.jigdo" > "$seeds/FuzzJigdo/$n.jigdo.gz"
        cp "$d/release.jigdo" "$seeds/FuzzLocations/$n.jigdo"
        cp "$d/release.template" "$seeds/FuzzTemplate/$n.template"
        # FuzzNames: a first byte 0 makes the rest a .jigdo.
        { printf '\000'; cat "$d/release.jigdo"; } > "$seeds/FuzzNames/$n.jigdo"
    done
    # Names with control characters and raw bytes, in a .jigdo and in Rock Ridge records.
    { printf '\000'; printf '[Image]\nFilename=a\033[2Jb\302\233c\351.iso\nTemplate=t\001.template\n[Parts]\nqNoZ1xfuvdDLJ_puL4VY0g=L\177:x\\\\y\n[Servers]\nL\177=http://h/p\033/\n'; } \
        > "$seeds/FuzzNames/control.jigdo"
    mkdir -p "$work/names"
    python3 -c 'import os, sys; [open(os.path.join(os.fsencode(sys.argv[1]), n), "w").close() for n in (b"new\nline", b"esc\x1b[31m", b"c1\xc2\x9b", b"raw\xe9", b"back\\slash")]' "$work/names"
    # Hand-written location cases: label chains, fallbacks, relative and file: values.
    printf '[Image]\nFilename=x.iso\nTemplate=x.template\n[Parts]\nqNoZ1xfuvdDLJ_puL4VY0g=A:sub/x\nrNoZ1xfuvdDLJ_puL4VY0g=B:../y\nsNoZ1xfuvdDLJ_puL4VY0g=file:/z\n[Servers]\nA=B:d/\nB=file:../tree/\nB=http://h/p/ --try-last\nMD5Sum=http://h/md5/\n' \
        > "$seeds/FuzzLocations/chains.jigdo"
    # Pieces that stay inside alone and climb when joined (A:. then ./), a label's own directory.
    printf '[Image]\nFilename=x.iso\nTemplate=x.template\n[Parts]\nqNoZ1xfuvdDLJ_puL4VY0g=Up:x\nrNoZ1xfuvdDLJ_puL4VY0g=Dot:./y\nsNoZ1xfuvdDLJ_puL4VY0g=A:a/..\ntNoZ1xfuvdDLJ_puL4VY0g=A:\n[Servers]\nA=http://h/a/\nDot=A:.\nUp=Dot:./\n' \
        > "$seeds/FuzzLocations/dots.jigdo"
    mkdir -p "$work/src/a/b/c/d/e/f/g/h" "$work/z"
    echo deep > "$work/src/a/b/c/d/e/f/g/h/deep.txt"
    ln -s a/b/c "$work/src/rel-link"
    ln -s "$(python3 -c 'print("/".join(["c%03d" % i for i in range(30)]))')" "$work/src/long-link"
    python3 -c 'import sys; open(sys.argv[1] + "/" + "n" * 200 + ".txt", "w").write("long\n")' "$work/src"
    echo x > "$work/src/plain.txt"
    python3 -c 'import sys; open(sys.argv[1], "w").write("".join("line %d\n" % i for i in range(3000)))' "$work/z/text.txt"
    xorriso -as mkisofs -quiet -no-pad -R -J -o "$seeds/FuzzISO9660/rr.iso" "$work/src" 2>/dev/null
    xorriso -as mkisofs -quiet -no-pad -R -J -rr_reloc_dir RR_MOVED -o "$seeds/FuzzISO9660/reloc.iso" "$work/src" 2>/dev/null
    xorriso -as mkisofs -quiet -no-pad -R -J -o "$work/names.iso" "$work/names" 2>/dev/null
    { printf '\001'; cat "$work/names.iso"; } > "$seeds/FuzzNames/names.iso"
    { printf '\001'; cat "$seeds/FuzzISO9660/rr.iso"; } > "$seeds/FuzzNames/rr.iso"
    xorriso -outdev "$seeds/FuzzISO9660/zisofs.iso" -padding 0 -map "$work/z" / -zisofs level=6 -set_filter_r --zisofs / -- 2>/dev/null
    touch "$seeds/.complete"
fi

failed=()
for t in "${targets[@]}"; do
    corpus=$scratch/corpus/$t
    artifacts=$scratch/artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    maxlen=65536
    case $t in FuzzISO9660|FuzzNames) maxlen=1048576 ;; esac
    echo "fuzz: $t for ${seconds}s"
    log=$scratch/$t.log
    if "$scratch/debug/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=$maxlen \
        -detect_leaks=1 -print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" "$seeds/$t" >"$log" 2>&1; then
        grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$log" | tr '\n' ' '
        echo
    else
        echo "fuzz: $t FAILED (log: $log; input: $(ls -t "$artifacts" | head -1))" >&2
        grep -E "ERROR|SUMMARY|Fatal error|panic|==[0-9]+==" "$log" | head -20 >&2 || tail -30 "$log" >&2
        failed+=("$t")
    fi
done
# FuzzTemplate's input file (libFuzzer ends the process with exit(), past its own cleanup).
rm -f /dev/shm/jigdofs-fuzz-template-* /tmp/jigdofs-fuzz-template-*
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${seconds}s without a finding"
