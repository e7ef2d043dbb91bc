#ifndef JIGDOFS_CFUSE3_SHIM_H
#define JIGDOFS_CFUSE3_SHIM_H
/* libfuse 3 low-level API (see Sources/FUSEBridge/README.md for why). The API version must be
   fixed before the header is included: 35 is what Debian 12's libfuse 3.14 offers with the
   fuse_loop_config object API. */
#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* fuse_session_new and fuse_session_loop_mt are macros or symbol-versioned names depending on
   FUSE_USE_VERSION; Swift cannot expand them, so give them fixed, typed names. */
static inline struct fuse_session *jfs_session_new(struct fuse_args *args, const struct fuse_lowlevel_ops *op,
                                                   void *userdata) {
    return fuse_session_new(args, op, sizeof(*op), userdata);
}

/* API 35 takes the v1 loop config (clone_fd, max_idle_threads): how many idle workers libfuse
   keeps. It starts more while all are busy, up to its own max_threads (10 by default; the v1
   config cannot change it). No request handler waits on the network (a read that needs a
   download is answered later, from the download's completion), but a request does hold its
   worker while it reads local files and the template, decompresses a chunk or hashes a cached
   part the first time: a worker per concurrent such read. */
static inline int jfs_session_loop_mt(struct fuse_session *se, unsigned int max_idle_threads) {
    struct fuse_loop_config config = { .clone_fd = 0, .max_idle_threads = max_idle_threads };
    return fuse_session_loop_mt(se, &config);
}

/* Signals: the handler only writes the signal number to a pipe (async-signal-safe); a thread
   of the bridge reads it and shuts the session down. Any thread may take the signal. SIGHUP
   is left alone when it is ignored (nohup). Only FUSEBridge uses these (one copy of the
   static descriptor). */
static int jfs_signal_pipe_fd = -1;

static void jfs_signal_to_pipe(int sig) {
    int saved = errno;
    unsigned char byte = (unsigned char)sig;
    if (jfs_signal_pipe_fd >= 0) {
        ssize_t r = write(jfs_signal_pipe_fd, &byte, 1);
        (void)r;
    }
    errno = saved;
}

static inline int jfs_install_signal_pipe(int write_fd) {
    jfs_signal_pipe_fd = write_fd;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = jfs_signal_to_pipe;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART (as libfuse's own handlers): the loop's main thread sleeps in sem_wait and
       must see EINTR to notice the session has ended. */
    sa.sa_flags = 0;
    int signals[] = { SIGINT, SIGTERM, SIGHUP };
    for (int i = 0; i < 3; i++) {
        struct sigaction old;
        if (sigaction(signals[i], NULL, &old) != 0) return -1;
        if (signals[i] == SIGHUP && old.sa_handler == SIG_IGN) continue;
        if (sigaction(signals[i], &sa, NULL) != 0) return -1;
    }
    return 0;
}

#endif
