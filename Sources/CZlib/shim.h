#ifndef JIGDOFS_CZLIB_SHIM_H
#define JIGDOFS_CZLIB_SHIM_H
#include <zlib.h>

/* inflateInit/inflateInit2 are macros (they pass the version and struct size):
   Swift cannot call them, so expose them as typed functions. */
static inline int jfs_inflateInit2(z_streamp strm, int windowBits) {
    return inflateInit2(strm, windowBits);
}
#endif
