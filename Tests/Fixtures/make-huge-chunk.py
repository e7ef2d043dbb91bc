#!/usr/bin/env python3
# A .jigdo and template whose image is one huge template chunk of zeros (zlib DATA or bzip2
# BZIP), as jigdo-file writes for a long zero run, with an 8-byte marker at every MiB (the
# MiB's index xor 0x5A5A5A5A5A5A5A5A, little endian), so a read from the wrong place shows.
# Written with python's zlib/bz2 (not jigdofs' code). The .jigdo has no parts.
#
# usage: make-huge-chunk.py OUTDIR zlib|bzip2 SIZE   -> OUTDIR/huge.jigdo, OUTDIR/huge.template
import bz2, hashlib, struct, sys, zlib
out, kind, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
MiB = 1 << 20
c = bz2.BZ2Compressor(9) if kind == "bzip2" else zlib.compressobj(1)
md5 = hashlib.md5()
parts = []
zero = bytes(MiB - 8)
for i in range(size // MiB):
    piece = struct.pack("<Q", i ^ 0x5A5A5A5A5A5A5A5A) + zero
    md5.update(piece)
    parts.append(c.compress(piece))
parts.append(c.flush())
data = b"".join(parts)
le = lambda v, n: v.to_bytes(n, "little")
header = b"JigsawDownload template 1.1 jigdo-file/0.8.0\r\nhuge chunk fixture\r\n\r\n"
chunk = (b"BZIP" if kind == "bzip2" else b"DATA") + le(16 + len(data), 6) + le(size, 6) + data
entries = bytes([2]) + le(size, 6) + bytes([5]) + le(size, 6) + md5.digest() + le(1024, 4)
desc = b"DESC" + le(len(entries) + 16, 6) + entries + le(len(entries) + 16, 6)
open(out + "/huge.template", "wb").write(header + chunk + desc)
open(out + "/huge.jigdo", "w").write("[Jigdo]\nVersion=1.1\nGenerator=test\n\n[Image]\nFilename=huge.iso\nTemplate=huge.template\n\n[Parts]\n\n[Servers]\n")
