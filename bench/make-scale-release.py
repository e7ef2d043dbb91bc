#!/usr/bin/env python3
"""A synthetic BD-sized jigdo release (issue 21), made without the image: jigdo 2.0, SHA256.

usage: make-scale-release.py OUT [--parts N] [--mean-size BYTES] [--images K] [--seed S]
                             [--server URL] [--expected] [--rsync-sums FILE]

Writes, for each image i in 1..K:
  OUT/parts/i/DDD/NNNNN      N part files, each a sparse file: a unique head line ("jigdofs scale
                             image i part n") at its start, the rest a hole; sizes drawn
                             uniformly from [mean/2, 3*mean/2] (at least 4 KiB)
  OUT/images/scale-i.jigdo   [Jigdo] Version=2.0, [Image] Filename/Template/Template-SHA256Sum,
                             [Servers] Scale=URL, [Parts] sha256-base64=Scale:i/DDD/NNNNN
  OUT/images/scale-i.template  header, DATA (zlib) chunks holding the unmatched areas (a 64 KiB
                             system area, short compressible gaps before some parts, a tail),
                             DESC with type-2 and type-9 entries and the type-8 image info
  OUT/expected-1.iso         with --expected: image 1 itself, as a sparse file (for cmp)
  OUT/release.txt            one line per image: "image i parts N bytes B sha256 HEX"
and OUT/.complete (holding the arguments) last: a release whose .complete matches is reused.

Nothing is held in memory but one part's head and the template's DESC (47 bytes a part). The
parts' and the image's SHA256 are computed from the known contents (no file is read back):
SHA256 has to go over every zero of the holes, about twice the image's size per image, which is
what generation costs (the images are made in parallel, one process a core).

The type-9 entries' RsyncSum64 (of a part's first 1 KiB) is 0: jigdofs and `jigdo-file
print-missing-all` do not use it. `jigdo-file make-image` does (it refuses the parts without
it): --rsync-sums takes each part's sum from `jigdo-file ls --template` of a template that
`jigdo-file make-template` made of the --expected image, so that the real tool can rebuild the
image from this template at a small scale (ScaleReleaseGeneratorTests does).
"""
import argparse
import base64
import concurrent.futures
import hashlib
import os
import random
import shutil
import struct
import sys
import zlib

BLOCK_LEN = 1024       # type-8 rsync block length, as jigdo-file writes it
ZERO = bytes(1 << 20)  # 1 MiB of the holes' zeros, hashed (and written) from memory
CHUNK = 256 * 1024     # unmatched bytes per DATA part (jigdo-file: ~256 KiB compressed)


def b64(digest):
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def le48(n):
    return struct.pack("<Q", n)[:6]


def hash_zeros(h, n):
    while n > 0:
        k = min(n, len(ZERO))
        h.update(ZERO[:k] if k < len(ZERO) else ZERO)
        n -= k


class Layout:
    """The image's layout, drawn from the seed: [("gap", length, gapno) | ("part", size, n)]."""

    def __init__(self, image, nparts, mean, seed):
        self.image, self.nparts, self.mean = image, nparts, mean
        self.rng = random.Random(f"{seed}/{image}")

    def segments(self):
        r = self.rng
        yield ("gap", 64 * 1024, 0)
        for n in range(1, self.nparts + 1):
            if r.random() < 0.3:
                yield ("gap", r.randint(1, 2048), n)
            yield ("part", max(4096, r.randint(self.mean // 2, self.mean * 3 // 2)), n)
        yield ("gap", 2048, self.nparts + 1)


def gap_bytes(image, gapno, length):
    # compressible but not constant, unique per gap
    unit = b"jigdofs scale image %d gap %d unmatched bytes " % (image, gapno)
    return (unit * (length // len(unit) + 1))[:length]


def part_head(image, n):
    return b"jigdofs scale image %d part %d\n" % (image, n)


def part_path(image, n):
    return "%d/%03d/%05d" % (image, n // 1000, n)


class TemplateWriter:
    def __init__(self, path):
        self.f = open(path, "wb")
        self.sha = hashlib.sha256()
        self.pending = bytearray()
        self.desc = bytearray()
        self.write(b"JigsawDownload template 2.0 jigdofs-scale/1.0\r\n"
                   b"Synthetic release made by jigdofs bench/make-scale-release.py\r\n\r\n")

    def write(self, b):
        self.f.write(b)
        self.sha.update(b)

    def unmatched(self, data):
        self.desc += b"\x02" + le48(len(data))
        self.pending += data
        while len(self.pending) >= CHUNK:
            self.flush(CHUNK)

    def flush(self, n=None):
        n = len(self.pending) if n is None else n
        if n == 0:
            return
        z = zlib.compress(bytes(self.pending[:n]), 9)
        self.write(b"DATA" + le48(len(z) + 16) + le48(n) + z)
        del self.pending[:n]

    def matched(self, size, sha, rsync=bytes(8)):
        self.desc += b"\x09" + le48(size) + rsync + sha

    def finish(self, image_len, image_sha):
        self.flush()
        self.desc += b"\x08" + le48(image_len) + image_sha + struct.pack("<I", BLOCK_LEN)
        n = len(self.desc) + 16
        self.write(b"DESC" + le48(n) + bytes(self.desc) + le48(n))
        self.f.close()
        return self.sha.digest()


def make_image(out, image, args):
    layout = Layout(image, args.parts, args.mean_size, args.seed)
    name = "scale-%d" % image
    tw = TemplateWriter(os.path.join(out, "images", name + ".template.tmp"))
    img_sha = hashlib.sha256()
    exp = open(os.path.join(out, "expected-%d.iso.tmp" % image), "wb") if args.expected and image == 1 else None
    parts_lines = []
    offset = 0
    made_dirs = set()
    for kind, length, n in layout.segments():
        if kind == "gap":
            data = gap_bytes(image, n, length)
            tw.unmatched(data)
            img_sha.update(data)
            if exp:
                exp.seek(offset)
                exp.write(data)
        else:
            head = part_head(image, n)
            rel = part_path(image, n)
            path = os.path.join(out, "parts", rel)
            d = os.path.dirname(path)
            if d not in made_dirs:
                os.makedirs(d, exist_ok=True)
                made_dirs.add(d)
            with open(path, "wb") as f:
                f.write(head)
                f.truncate(length)
            h = hashlib.sha256(head)
            hash_zeros(h, length - len(head))
            sha = h.digest()
            tw.matched(length, sha, args.rsync.get(b64(sha), bytes(8)))
            img_sha.update(head)
            hash_zeros(img_sha, length - len(head))
            if exp:
                exp.seek(offset)
                exp.write(head)
            parts_lines.append("%s=Scale:%s\n" % (b64(sha), rel))
        offset += length
    digest = img_sha.digest()
    tsha = tw.finish(offset, digest)
    if exp:
        exp.truncate(offset)
        exp.close()
        os.rename(exp.name, os.path.join(out, "expected-%d.iso" % image))
    os.rename(tw.f.name, os.path.join(out, "images", name + ".template"))
    with open(os.path.join(out, "images", name + ".jigdo"), "w") as j:
        j.write("# JigsawDownload\n# Synthetic release made by jigdofs bench/make-scale-release.py\n\n"
                "[Jigdo]\nVersion=2.0\nGenerator=jigdofs-scale/1.0\n\n"
                "[Image]\nFilename=%s.iso\nTemplate=%s.template\nTemplate-SHA256Sum=%s\n\n"
                "[Servers]\nScale=%s\n\n[Parts]\n" % (name, name, b64(tsha), args.server))
        j.writelines(parts_lines)
    return offset, digest.hex()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--parts", type=int, default=50000)
    ap.add_argument("--mean-size", type=int, default=(23 << 30) // 50000)
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--server", default="http://127.0.0.1:8080/")
    ap.add_argument("--expected", action="store_true", help="also write image 1 as a sparse file")
    ap.add_argument("--rsync-sums", metavar="FILE",
                    help="the RsyncSum64 of each part, from `jigdo-file ls --template` of a template "
                         "jigdo-file made of the same image (for jigdo-file make-image)")
    args = ap.parse_args()
    args.rsync = {}
    if args.rsync_sums:
        for line in open(args.rsync_sums):
            f = line.split()
            if len(f) == 5 and f[0] == "need-file-sha256":
                args.rsync[f[3]] = base64.urlsafe_b64decode(f[4] + "=")
    out = os.path.abspath(args.out)
    key = " ".join(sys.argv[2:]) + "\n"
    done = os.path.join(out, ".complete")
    if os.path.exists(done) and open(done).read() == key:
        print("reusing the release in %s" % out, file=sys.stderr)
        return
    if os.path.exists(done):
        os.remove(done)
    for d in ("images", "parts"):  # another size: start afresh
        shutil.rmtree(os.path.join(out, d), ignore_errors=True)
    os.makedirs(os.path.join(out, "images"))
    lines = []
    # one process an image: hashing the holes is the cost, and it is CPU-bound
    with concurrent.futures.ProcessPoolExecutor(max_workers=min(args.images, os.cpu_count() or 1)) as pool:
        jobs = [pool.submit(make_image, out, i, args) for i in range(1, args.images + 1)]
        for i, job in enumerate(jobs, 1):
            size, hexsum = job.result()
            lines.append("image %d parts %d bytes %d sha256 %s\n" % (i, args.parts, size, hexsum))
    with open(os.path.join(out, "release.txt"), "w") as f:
        f.writelines(lines)
    with open(done, "w") as f:
        f.write(key)


if __name__ == "__main__":
    main()
