#!/usr/bin/env python3
# Makes a tree of files with deterministic pseudo-random content, for the publisher pipeline
# tests:  make-tree.py OUT SEED PATH:SIZE...
# PATH may hold \xNN escapes: such names are written as those raw bytes (Latin-1 names of old
# media), not as UTF-8.
import codecs, os, random, sys
out, seed = os.fsencode(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
for spec in sys.argv[3:]:
    path, size = spec.rsplit(":", 1)
    raw = codecs.escape_decode(path.encode("utf-8"))[0]
    full = os.path.join(out, raw)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(rng.randbytes(int(size)))
