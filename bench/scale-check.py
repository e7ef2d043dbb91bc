#!/usr/bin/env python3
"""Random reads of a mounted image compared with the expected image (bench/scale.sh).

usage: scale-check.py IMAGE EXPECTED [--reads N] [--max-len BYTES] [--seed S]

N reads (default 1,000) at offsets drawn uniformly over the whole image, each of 1..max-len
bytes (default 128 KiB), every byte compared with the same range of EXPECTED (the generator's
sparse --expected image). Prints "N reads, B bytes, all equal"; exits 1 at the first
difference, naming its offset.
"""
import argparse
import os
import random
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("image")
    ap.add_argument("expected")
    ap.add_argument("--reads", type=int, default=1000)
    ap.add_argument("--max-len", type=int, default=128 * 1024)
    ap.add_argument("--seed", type=int, default=21)
    args = ap.parse_args()
    r = random.Random(args.seed)
    a = os.open(args.image, os.O_RDONLY)
    b = os.open(args.expected, os.O_RDONLY)
    size = os.fstat(b).st_size
    if os.fstat(a).st_size != size:
        sys.exit("size %d, expected %d" % (os.fstat(a).st_size, size))
    total = 0
    for _ in range(args.reads):
        off = r.randrange(size)
        n = min(r.randint(1, args.max_len), size - off)
        got, want = os.pread(a, n, off), os.pread(b, n, off)
        if got != want:
            i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
            sys.exit("read of %d bytes at %d differs at offset %d" % (n, off, off + i))
        total += n
    print("%d reads, %d bytes, all equal" % (args.reads, total))


if __name__ == "__main__":
    main()
