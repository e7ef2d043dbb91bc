#ifndef JIGDOFS_CBZIP2_SHIM_H
#define JIGDOFS_CBZIP2_SHIM_H
#include <bzlib.h>
#endif
