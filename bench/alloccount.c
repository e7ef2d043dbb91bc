/* Counts a process's allocation calls, for bench/download.sh's counting run (not part of jigdofs).
 *
 *   cc -O2 -shared -fPIC -o alloccount.so bench/alloccount.c
 *   ALLOCCOUNT_FILE=/tmp/x LD_PRELOAD=./alloccount.so jigdofs mount ...
 *
 * Each process that has ALLOCCOUNT_FILE=PREFIX in its environment keeps its counters in the file
 * PREFIX.PID (a forked child in its own file, from the fork on: the jigdofs daemon is the mount
 * command's child): four unsigned 64-bit counts in host order, malloc, calloc, realloc, aligned
 * (posix_memalign, aligned_alloc, memalign, valloc, pvalloc), read with `od -An -t u8 -N 32`.
 * The file is a shared mapping the counters are incremented in (atomically: any thread), so it
 * holds the totals at every moment: the bench reads it before and after a dd and takes the
 * difference, and what it holds when the process exits (however it exits: unmounting ends the
 * daemon; a signal, _exit) is the final total, with no handler to run.
 *
 * The calls go on to glibc's own allocator (__libc_malloc & co., exported by glibc for this use),
 * so no dlsym is needed and free() needs no wrapper. Counts made before the mapping exists (other
 * libraries' constructors) are kept and copied into it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

enum { C_MALLOC, C_CALLOC, C_REALLOC, C_ALIGNED, C_COUNT };
static uint64_t early[C_COUNT];
static uint64_t *counters = early;

static void count(int which) {
    __atomic_fetch_add(&counters[which], 1, __ATOMIC_RELAXED);
}

/* Maps PREFIX.PID and moves the counts so far into it (single-threaded: the constructor, or the
 * child right after fork). Only system calls and snprintf: nothing here allocates. */
static void map_own_file(void) {
    const char *prefix = getenv("ALLOCCOUNT_FILE");
    char path[4096];
    int fd, i;
    uint64_t *map;
    if (!prefix || !*prefix) return;
    if (snprintf(path, sizeof path, "%s.%d", prefix, (int)getpid()) >= (int)sizeof path) return;
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    if (ftruncate(fd, 4096) != 0) { close(fd); return; }
    map = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return;
    for (i = 0; i < C_COUNT; i++) map[i] = __atomic_load_n(&counters[i], __ATOMIC_RELAXED);
    __atomic_store_n(&counters, map, __ATOMIC_RELEASE);
}

__attribute__((constructor)) static void alloccount_init(void) {
    map_own_file();
    pthread_atfork(NULL, NULL, map_own_file);
}

void *malloc(size_t n) { count(C_MALLOC); return __libc_malloc(n); }
void *calloc(size_t k, size_t n) { count(C_CALLOC); return __libc_calloc(k, n); }
void *realloc(void *p, size_t n) { count(C_REALLOC); return __libc_realloc(p, n); }

void *memalign(size_t a, size_t n) { count(C_ALIGNED); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { count(C_ALIGNED); return __libc_memalign(a, n); }
void *valloc(size_t n) {
    count(C_ALIGNED);
    return __libc_memalign((size_t)sysconf(_SC_PAGESIZE), n);
}
void *pvalloc(size_t n) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    count(C_ALIGNED);
    return __libc_memalign(page, (n + page - 1) / page * page);
}
int posix_memalign(void **out, size_t a, size_t n) {
    void *p;
    count(C_ALIGNED);
    if (a < sizeof(void *) || (a & (a - 1)) != 0) return EINVAL;
    p = __libc_memalign(a, n);
    if (!p && n) return ENOMEM;
    *out = p;
    return 0;
}
