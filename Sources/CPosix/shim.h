#ifndef JIGDOFS_CPOSIX_SHIM_H
#define JIGDOFS_CPOSIX_SHIM_H
/* POSIX calls Swift cannot make directly; no library to link. Kept apart from the libfuse shim
   so that code which daemonizes does not need libfuse's headers. */
#include <sys/types.h>
#include <unistd.h>

/* fork() is marked unavailable to Swift on some platforms; the daemon must fork before any
   thread exists (see MountCommand), so call it through C. */
static inline pid_t jfs_fork(void) { return fork(); }
#endif
