/*
 * plainfuse: the baseline for the mount benchmark. A read-only FUSE filesystem whose root holds
 * one regular file, NAME, whose bytes are those of BACKING, read with pread(2). Nothing else:
 * no cache of its own, no lookups beyond the one name, so a sequential read through it costs
 * what FUSE itself costs. jigdofs reading the same bytes is measured against this.
 *
 * Built by bench/mount-bench.sh:  gcc -O2 -Wall plainfuse.c $(pkg-config --cflags --libs fuse3)
 * usage: plainfuse BACKING NAME MOUNTPOINT [-f]
 * Returns once mounted (libfuse backgrounds itself), multi-threaded loop; unmount with
 * fusermount3 -u MOUNTPOINT.
 */
#define FUSE_USE_VERSION 31
#include <fuse.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int backing_fd = -1;
static struct stat backing_st;
static char file_path[4096]; /* "/" NAME */

static void *pf_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    /* The kernel must not keep the file's pages across opens: every run reads through FUSE.
     * (The bench also mounts afresh for each run, as it does for jigdofs.) */
    cfg->kernel_cache = 0;
    cfg->auto_cache = 0;
    cfg->entry_timeout = 86400;
    cfg->attr_timeout = 86400;
    cfg->use_ino = 0;
    /* The same request settings jigdofs asks for, so the two differ only in what serves a
     * read: many readahead requests in flight, answered out of order. */
    conn->max_background = 64;
    conn->congestion_threshold = 48;
    conn->want |= (conn->capable & FUSE_CAP_ASYNC_READ);
    conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
    return NULL;
}

static int pf_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    (void)fi;
    memset(st, 0, sizeof *st);
    if (strcmp(path, "/") == 0) {
        st->st_mode = S_IFDIR | 0555;
        st->st_nlink = 2;
        return 0;
    }
    if (strcmp(path, file_path) == 0) {
        st->st_mode = S_IFREG | 0444;
        st->st_nlink = 1;
        st->st_size = backing_st.st_size;
        st->st_mtim = backing_st.st_mtim;
        st->st_blksize = 4096;
        st->st_blocks = (backing_st.st_size + 511) / 512;
        return 0;
    }
    return -ENOENT;
}

static int pf_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)off; (void)fi; (void)flags;
    if (strcmp(path, "/") != 0) return -ENOTDIR;
    fill(buf, ".", NULL, 0, 0);
    fill(buf, "..", NULL, 0, 0);
    fill(buf, file_path + 1, NULL, 0, 0);
    return 0;
}

static int pf_open(const char *path, struct fuse_file_info *fi)
{
    if (strcmp(path, file_path) != 0) return -ENOENT;
    if ((fi->flags & O_ACCMODE) != O_RDONLY) return -EROFS;
    fi->keep_cache = 0;
    fi->direct_io = 0; /* reads go through the page cache and kernel readahead, as for jigdofs */
    return 0;
}

static int pf_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)path; (void)fi;
    size_t done = 0;
    while (done < size) {
        ssize_t n = pread(backing_fd, buf + done, size - done, off + (off_t)done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) break; /* end of file */
        done += (size_t)n;
    }
    return (int)done;
}

static const struct fuse_operations pf_ops = {
    .init = pf_init,
    .getattr = pf_getattr,
    .readdir = pf_readdir,
    .open = pf_open,
    .read = pf_read,
};

int main(int argc, char **argv)
{
    if (argc < 4 || strchr(argv[2], '/') != NULL || argv[2][0] == '\0') {
        fprintf(stderr, "usage: %s BACKING NAME MOUNTPOINT [-f]\n", argv[0]);
        return 2;
    }
    backing_fd = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (backing_fd < 0 || fstat(backing_fd, &backing_st) != 0) {
        fprintf(stderr, "plainfuse: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    snprintf(file_path, sizeof file_path, "/%s", argv[2]);
    char *fargv[8];
    int fargc = 0;
    fargv[fargc++] = argv[0];
    fargv[fargc++] = argv[3];
    fargv[fargc++] = "-o";
    fargv[fargc++] = "ro,fsname=plainfuse,subtype=plainfuse";
    if (argc > 4 && strcmp(argv[4], "-f") == 0) fargv[fargc++] = "-f";
    fargv[fargc] = NULL;
    return fuse_main(fargc, fargv, &pf_ops, NULL);
}
