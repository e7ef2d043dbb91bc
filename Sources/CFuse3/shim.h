#ifndef JIGDOFS_CFUSE3_SHIM_H
#define JIGDOFS_CFUSE3_SHIM_H
/* libfuse 3 high-level API. The API version must be fixed before the header is included: 35 is
   what Debian 12's libfuse 3.14 offers with the fuse_loop_config object API. */
#define FUSE_USE_VERSION 35
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <unistd.h>

/* fuse_new and fuse_loop_mt are macros or symbol-versioned names depending on FUSE_USE_VERSION;
   Swift cannot expand them, so give them fixed, typed names. */
static inline struct fuse *jfs_fuse_new(struct fuse_args *args, const struct fuse_operations *op,
                                        void *private_data) {
    return fuse_new(args, op, sizeof(*op), private_data);
}

/* API 35 takes the v1 loop config (clone_fd, max_idle_threads); libfuse 3.14 then runs up to
   10 worker threads, enough for parallel readers since a read never holds a lock across I/O. */
static inline int jfs_fuse_loop_mt(struct fuse *f, unsigned int max_idle_threads) {
    struct fuse_loop_config config = { .clone_fd = 0, .max_idle_threads = max_idle_threads };
    return fuse_loop_mt(f, &config);
}

/* fork() is marked unavailable to Swift on some platforms; the daemon must fork before any
   thread exists (see MountCommand), so call it through C. */
static inline pid_t jfs_fork(void) { return fork(); }
#endif
