/* The power-loss harness's I/O recorder, loaded with LD_PRELOAD into a workload process.
 *
 * For files whose path starts with $AETHER_TRACE_DIR it appends to $AETHER_TRACE_FILE one
 * record per call, in call order (one mutex in a process; one atomic O_APPEND writev per
 * record across processes, so the writer processes of one store share one trace):
 *   u8 op, u32 file id, u64 offset, u64 length, then `length` bytes (write data, or a path)
 * (write, writev, pwrite, pwritev; open, openat and their fortified forms; fsync, fdatasync;
 * ftruncate; rename; unlink; mmap). fallocate and sync_file_range are not used by the store.
 * ops: 'P' a file id's path (offset = 1 when the fd is O_DSYNC/O_SYNC), 'W' a write,
 * 'T' ftruncate (offset = new size), 'F' fsync/fdatasync, 'R' rename (data: new path),
 * 'U' unlink, 'M' a marker (data: bytes the workload wrote to $AETHER_TRACE_MARK),
 * 'X' a refusal (a shared writable mmap of a data file: writes the recorder cannot see).
 * A write on an O_DSYNC fd is recorded as 'W' then 'F' of that file.
 * The shared lock file (lock.mdb) is LMDB's, not data: its mmap is allowed and not traced.
 * AETHER_TRACE_DROP_FSYNC=1 makes a broken variant: flushes are neither done nor recorded
 * and O_DSYNC is dropped from opens (the test shows the checker catches that).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 4096
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int fd_file[MAX_FD];     /* file id + 1 of a traced fd, 0 if not traced */
static int fd_dsync[MAX_FD];
static int mark_fd = -1;
static int trace_fd = -1;
static int next_id = 1;
static int drop_fsync = 0;
static const char *dir, *mark_path;
static size_t dir_len;

static ssize_t (*r_write)(int, const void *, size_t);
static ssize_t (*r_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*r_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*r_writev)(int, const struct iovec *, int);
static int (*r_open)(const char *, int, ...);
static int (*r_openat)(int, const char *, int, ...);
static int (*r_close)(int);
static int (*r_fsync)(int);
static int (*r_fdatasync)(int);
static int (*r_ftruncate)(int, off_t);
static int (*r_rename)(const char *, const char *);
static int (*r_unlink)(const char *);
static void *(*r_mmap)(void *, size_t, int, int, int, off_t);
static off_t (*r_lseek)(int, off_t, int);

static void init(void) {
    if (r_write) return;
    r_write = dlsym(RTLD_NEXT, "write");
    r_pwrite = dlsym(RTLD_NEXT, "pwrite64");
    r_pwritev = dlsym(RTLD_NEXT, "pwritev64");
    r_writev = dlsym(RTLD_NEXT, "writev");
    r_open = dlsym(RTLD_NEXT, "open64");
    r_openat = dlsym(RTLD_NEXT, "openat64");
    r_close = dlsym(RTLD_NEXT, "close");
    r_fsync = dlsym(RTLD_NEXT, "fsync");
    r_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    r_ftruncate = dlsym(RTLD_NEXT, "ftruncate64");
    r_rename = dlsym(RTLD_NEXT, "rename");
    r_unlink = dlsym(RTLD_NEXT, "unlink");
    r_mmap = dlsym(RTLD_NEXT, "mmap64");
    r_lseek = dlsym(RTLD_NEXT, "lseek64");
    dir = getenv("AETHER_TRACE_DIR");
    dir_len = dir ? strlen(dir) : 0;
    mark_path = getenv("AETHER_TRACE_MARK");
    drop_fsync = getenv("AETHER_TRACE_DROP_FSYNC") != NULL;
    const char *tf = getenv("AETHER_TRACE_FILE");
    if (tf) trace_fd = r_open(tf, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

/* One record in one writev on the O_APPEND trace: atomic, so the records of several
 * processes interleave whole, in the order their calls returned. */
static void emit2(char op, int id, uint64_t off, const void *data, uint64_t len, const char *extra) {
    unsigned char head[21];
    uint32_t fid = (uint32_t)id;
    struct iovec iov[3];
    head[0] = (unsigned char)op;
    memcpy(head + 1, &fid, 4);
    memcpy(head + 5, &off, 8);
    memcpy(head + 13, &len, 8);
    iov[0].iov_base = head; iov[0].iov_len = 21;
    iov[1].iov_base = (void *)data; iov[1].iov_len = len;
    iov[2].iov_base = (void *)extra; iov[2].iov_len = extra ? strlen(extra) + 1 : 0;
    r_writev(trace_fd, iov, 3);
}
static void emit(char op, int id, uint64_t off, const void *data, uint64_t len) {
    emit2(op, id, off, data, len, NULL);
}

static int traced(const char *path) {
    if (!dir || !path || strncmp(path, dir, dir_len) != 0) return 0;
    const char *base = strrchr(path, '/');
    return !(base && strcmp(base + 1, "lock.mdb") == 0);
}

static void opened(int fd, const char *path, int flags) {
    if (fd < 0 || fd >= MAX_FD) return;
    pthread_mutex_lock(&mu);
    fd_file[fd] = 0;
    if (mark_path && path && strcmp(path, mark_path) == 0) mark_fd = fd;
    if (traced(path)) {
        char real[4096];
        const char *p = realpath(path, real) ? real : path;
        /* unique across the processes that share one trace: pid in the high half */
        int id = (int)((((uint32_t)getpid() & 0x7FFF) << 16) | (uint32_t)(next_id++ & 0xFFFF));
        fd_file[fd] = id + 1;
        fd_dsync[fd] = (flags & (O_DSYNC | O_SYNC)) != 0;
        emit('P', id, fd_dsync[fd], p, strlen(p));
    }
    pthread_mutex_unlock(&mu);
}

static int fix_flags(int flags) { return drop_fsync ? flags & ~(O_DSYNC | O_SYNC) : flags; }

int open64(const char *path, int flags, ...) {
    init();
    va_list ap; va_start(ap, flags); int mode = va_arg(ap, int); va_end(ap);
    int fd = r_open(path, fix_flags(flags), mode);
    opened(fd, path, flags);
    return fd;
}
int open(const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); int mode = va_arg(ap, int); va_end(ap);
    return open64(path, flags, mode);
}
int __open_2(const char *path, int flags) { return open64(path, flags, 0); }
int __open64_2(const char *path, int flags) { return open64(path, flags, 0); }
int openat64(int dirfd, const char *path, int flags, ...) {
    init();
    va_list ap; va_start(ap, flags); int mode = va_arg(ap, int); va_end(ap);
    int fd = r_openat(dirfd, path, fix_flags(flags), mode);
    if (path[0] == '/') opened(fd, path, flags);
    else if (fd >= 0 && fd < MAX_FD) {          /* resolve a relative path through /proc */
        char link[64], real[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, real, sizeof real - 1);
        if (n > 0) { real[n] = 0; opened(fd, real, flags); }
    }
    return fd;
}
int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap; va_start(ap, flags); int mode = va_arg(ap, int); va_end(ap);
    return openat64(dirfd, path, flags, mode);
}
int __openat_2(int dirfd, const char *path, int flags) { return openat64(dirfd, path, flags, 0); }
int __openat64_2(int dirfd, const char *path, int flags) { return openat64(dirfd, path, flags, 0); }

int close(int fd) {
    init();
    if (fd >= 0 && fd < MAX_FD) {
        pthread_mutex_lock(&mu);
        fd_file[fd] = 0;
        if (fd == mark_fd) mark_fd = -1;
        pthread_mutex_unlock(&mu);
    }
    return r_close(fd);
}

static void wrote(int fd, const void *buf, ssize_t n, off_t off) {
    if (n <= 0 || fd < 0 || fd >= MAX_FD) return;
    pthread_mutex_lock(&mu);
    if (fd == mark_fd) emit('M', 0, 0, buf, (uint64_t)n);
    else if (fd_file[fd]) {
        emit('W', fd_file[fd] - 1, (uint64_t)off, buf, (uint64_t)n);
        if (fd_dsync[fd] && !drop_fsync) emit('F', fd_file[fd] - 1, 0, NULL, 0);
    }
    pthread_mutex_unlock(&mu);
}

ssize_t write(int fd, const void *buf, size_t n) {
    init();
    off_t off = (fd >= 0 && fd < MAX_FD && fd_file[fd]) ? r_lseek(fd, 0, SEEK_CUR) : 0;
    ssize_t done = r_write(fd, buf, n);
    wrote(fd, buf, done, off);
    return done;
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    init();
    ssize_t done = r_pwrite(fd, buf, n, off);
    wrote(fd, buf, done, off);
    return done;
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) { return pwrite64(fd, buf, n, off); }
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) {
    init();
    ssize_t done = r_pwritev(fd, iov, cnt, off);
    ssize_t left = done;
    for (int i = 0; i < cnt && left > 0; i++) {
        ssize_t part = (ssize_t)iov[i].iov_len < left ? (ssize_t)iov[i].iov_len : left;
        wrote(fd, iov[i].iov_base, part, off);
        off += part;
        left -= part;
    }
    return done;
}
ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) { return pwritev64(fd, iov, cnt, off); }
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    init();
    off_t off = (fd >= 0 && fd < MAX_FD && fd_file[fd]) ? r_lseek(fd, 0, SEEK_CUR) : 0;
    ssize_t done = r_writev(fd, iov, cnt);
    ssize_t left = done;
    for (int i = 0; i < cnt && left > 0; i++) {
        ssize_t part = (ssize_t)iov[i].iov_len < left ? (ssize_t)iov[i].iov_len : left;
        wrote(fd, iov[i].iov_base, part, off);
        off += part;
        left -= part;
    }
    return done;
}

static int flushed(int fd, int (*real)(int)) {
    init();
    if (fd >= 0 && fd < MAX_FD && fd_file[fd]) {
        if (drop_fsync) return 0;
        int rc = real(fd);
        pthread_mutex_lock(&mu);
        if (rc == 0) emit('F', fd_file[fd] - 1, 0, NULL, 0);
        pthread_mutex_unlock(&mu);
        return rc;
    }
    return real(fd);
}
int fsync(int fd) { return flushed(fd, r_fsync); }
int fdatasync(int fd) { return flushed(fd, r_fdatasync); }

int ftruncate64(int fd, off_t len) {
    init();
    int rc = r_ftruncate(fd, len);
    if (rc == 0 && fd >= 0 && fd < MAX_FD && fd_file[fd]) {
        pthread_mutex_lock(&mu);
        emit('T', fd_file[fd] - 1, (uint64_t)len, NULL, 0);
        pthread_mutex_unlock(&mu);
    }
    return rc;
}
int ftruncate(int fd, off_t len) { return ftruncate64(fd, len); }

int rename(const char *from, const char *to) {
    init();
    char a[4096], b[4096];
    int t = traced(from) && realpath(from, a) != NULL;
    int rc = r_rename(from, to);
    if (rc == 0 && t && traced(to)) {
        char *slash = strrchr(a, '/');
        snprintf(b, sizeof b, "%.*s/%s", (int)(slash - a), a, strrchr(to, '/') ? strrchr(to, '/') + 1 : to);
        pthread_mutex_lock(&mu);
        emit2('R', 0, strlen(a), a, strlen(a), b);   /* the new path follows, NUL-terminated */
        pthread_mutex_unlock(&mu);
    }
    return rc;
}
int unlink(const char *path) {
    init();
    char a[4096];
    int t = traced(path) && realpath(path, a) != NULL;
    int rc = r_unlink(path);
    if (rc == 0 && t) {
        pthread_mutex_lock(&mu);
        emit('U', 0, 0, a, strlen(a));
        pthread_mutex_unlock(&mu);
    }
    return rc;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    init();
    if (fd >= 0 && fd < MAX_FD && fd_file[fd] && (prot & PROT_WRITE) && (flags & MAP_SHARED)) {
        pthread_mutex_lock(&mu);
        emit('X', fd_file[fd] - 1, 0, NULL, 0);
        pthread_mutex_unlock(&mu);
    }
    return r_mmap(addr, len, prot, flags, fd, off);
}
void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    return mmap64(addr, len, prot, flags, fd, off);
}
