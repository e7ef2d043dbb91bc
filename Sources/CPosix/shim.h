#ifndef JIGDOFS_CPOSIX_SHIM_H
#define JIGDOFS_CPOSIX_SHIM_H
/* POSIX calls Swift cannot make directly; no library to link. Kept apart from the libfuse shim
   so that code which daemonizes does not need libfuse's headers. */
#include <sys/types.h>
#include <unistd.h>
#include <malloc.h>
#include <sys/prctl.h>

/* fork() is marked unavailable to Swift on some platforms; the daemon must fork before any
   thread exists (see MountCommand), so call it through C. */
static inline pid_t jfs_fork(void) { return fork(); }

/* mallopt's parameters are macros: typed wrappers (see jigdofs' Main.swift for why). */
static inline int jfs_malloc_arena_max(int arenas) { return mallopt(M_ARENA_MAX, arenas); }
static inline int jfs_malloc_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }

/* prctl is variadic: names the calling thread (at most 15 bytes), as top -H and perf show it. */
static inline int jfs_name_this_thread(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }

#endif
