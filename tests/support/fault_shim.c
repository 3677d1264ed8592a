/* A test-only LD_PRELOAD library that makes the C library fail the way a sick node does, so the
 * reliability tests (tests/reliability) can check flowlm's behaviour without root or a full disk.
 * Every fault is off unless its variable is set:
 *
 *   FLOWLM_FAULT_RANK=R          act only in the process of MPI rank R (OMPI_COMM_WORLD_RANK,
 *                                PMI_RANK or SLURM_PROCID); unset: every process
 *   FLOWLM_FAULT_OPEN_EIO=S      open() of a path containing S fails with EIO
 *   FLOWLM_FAULT_ENOSPC=S        writes to files whose path contains S fail with ENOSPC (a full
 *                                disk), as do fallocate calls on them
 *   FLOWLM_FAULT_ENOSPC_AFTER=N  ... once N bytes have been written to that file (default 0)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 65536

static int g_ready, g_active;
static const char* g_eio;
static const char* g_enospc;
static long long g_after;
static long long g_written[MAX_FDS]; /* bytes written to a watched fd, -1: not watched */

static void init(void) {
  if (g_ready) return;
  const char* want = getenv("FLOWLM_FAULT_RANK");
  const char* rank = getenv("OMPI_COMM_WORLD_RANK");
  if (!rank) rank = getenv("PMI_RANK");
  if (!rank) rank = getenv("SLURM_PROCID");
  g_active = !want || (rank && strcmp(want, rank) == 0);
  g_eio = getenv("FLOWLM_FAULT_OPEN_EIO");
  g_enospc = getenv("FLOWLM_FAULT_ENOSPC");
  const char* after = getenv("FLOWLM_FAULT_ENOSPC_AFTER");
  g_after = after ? atoll(after) : 0;
  for (int i = 0; i < MAX_FDS; ++i) g_written[i] = -1;
  g_ready = 1;
}

static void* next(const char* name) { return dlsym(RTLD_NEXT, name); }

/* Applies the open faults; returns -1 (errno set) when the open must fail. */
static int before_open(const char* path) {
  init();
  if (g_active && g_eio && path && strstr(path, g_eio)) {
    errno = EIO;
    return -1;
  }
  return 0;
}

static int after_open(const char* path, int fd) {
  if (fd >= 0 && fd < MAX_FDS) g_written[fd] = (g_active && g_enospc && path && strstr(path, g_enospc)) ? 0 : -1;
  return fd;
}

/* How many of `n` bytes a write to fd may write (0 with errno = ENOSPC: none). */
static ssize_t allowed(int fd, size_t n) {
  init();
  if (fd < 0 || fd >= MAX_FDS || g_written[fd] < 0) return (ssize_t)n;
  long long room = g_after - g_written[fd];
  if (room <= 0) {
    errno = ENOSPC;
    return -1;
  }
  return (ssize_t)((long long)n < room ? (long long)n : room);
}

static void wrote(int fd, ssize_t r) {
  if (r > 0 && fd >= 0 && fd < MAX_FDS && g_written[fd] >= 0) g_written[fd] += r;
}

#define OPEN_LIKE(fn, ...)                                                 \
  mode_t mode = 0;                                                         \
  if (flags & (O_CREAT | O_TMPFILE)) {                                     \
    va_list ap;                                                            \
    va_start(ap, flags);                                                   \
    mode = (mode_t)va_arg(ap, int);                                        \
    va_end(ap);                                                            \
  }                                                                        \
  if (before_open(path) < 0) return -1;                                    \
  static int (*real)() = 0;                                                \
  if (!real) real = (int (*)())next(fn);                                   \
  return after_open(path, real(__VA_ARGS__, mode));

int open(const char* path, int flags, ...) { OPEN_LIKE("open", path, flags) }
int open64(const char* path, int flags, ...) { OPEN_LIKE("open64", path, flags) }
int openat(int dirfd, const char* path, int flags, ...) { OPEN_LIKE("openat", dirfd, path, flags) }
int openat64(int dirfd, const char* path, int flags, ...) { OPEN_LIKE("openat64", dirfd, path, flags) }

int close(int fd) {
  static int (*real)(int) = 0;
  if (!real) real = (int (*)(int))next("close");
  if (fd >= 0 && fd < MAX_FDS && g_ready) g_written[fd] = -1;
  return real(fd);
}

ssize_t write(int fd, const void* buf, size_t n) {
  static ssize_t (*real)(int, const void*, size_t) = 0;
  if (!real) real = (ssize_t(*)(int, const void*, size_t))next("write");
  ssize_t k = allowed(fd, n);
  if (k < 0) return -1;
  ssize_t r = real(fd, buf, (size_t)k);
  wrote(fd, r);
  return r;
}

#define PWRITE_LIKE(fn, off_type)                                                      \
  ssize_t fn(int fd, const void* buf, size_t n, off_type off) {                        \
    static ssize_t (*real)(int, const void*, size_t, off_type) = 0;                    \
    if (!real) real = (ssize_t(*)(int, const void*, size_t, off_type))next(#fn);       \
    ssize_t k = allowed(fd, n);                                                        \
    if (k < 0) return -1;                                                              \
    ssize_t r = real(fd, buf, (size_t)k, off);                                         \
    wrote(fd, r);                                                                      \
    return r;                                                                          \
  }
PWRITE_LIKE(pwrite, off_t)
PWRITE_LIKE(pwrite64, off64_t)

/* Vector writes: refused outright once the file is watched and full; otherwise passed through
 * whole when they fit, else refused (a short vector write is rare enough not to model). */
static size_t iov_bytes(const struct iovec* iov, int cnt) {
  size_t n = 0;
  for (int i = 0; i < cnt; ++i) n += iov[i].iov_len;
  return n;
}

#define PWRITEV_LIKE(fn, off_type)                                                     \
  ssize_t fn(int fd, const struct iovec* iov, int cnt, off_type off) {                 \
    static ssize_t (*real)(int, const struct iovec*, int, off_type) = 0;               \
    if (!real) real = (ssize_t(*)(int, const struct iovec*, int, off_type))next(#fn);  \
    size_t n = iov_bytes(iov, cnt);                                                    \
    ssize_t k = allowed(fd, n);                                                        \
    if (k < 0) return -1;                                                              \
    if ((size_t)k < n) {                                                               \
      errno = ENOSPC;                                                                  \
      return -1;                                                                       \
    }                                                                                  \
    ssize_t r = real(fd, iov, cnt, off);                                               \
    wrote(fd, r);                                                                      \
    return r;                                                                          \
  }
PWRITEV_LIKE(pwritev, off_t)
PWRITEV_LIKE(pwritev64, off64_t)

ssize_t writev(int fd, const struct iovec* iov, int cnt) {
  static ssize_t (*real)(int, const struct iovec*, int) = 0;
  if (!real) real = (ssize_t(*)(int, const struct iovec*, int))next("writev");
  size_t n = iov_bytes(iov, cnt);
  ssize_t k = allowed(fd, n);
  if (k < 0) return -1;
  if ((size_t)k < n) {
    errno = ENOSPC;
    return -1;
  }
  ssize_t r = real(fd, iov, cnt);
  wrote(fd, r);
  return r;
}

int posix_fallocate(int fd, off_t off, off_t len) {
  static int (*real)(int, off_t, off_t) = 0;
  if (!real) real = (int (*)(int, off_t, off_t))next("posix_fallocate");
  init();
  if (fd >= 0 && fd < MAX_FDS && g_written[fd] >= 0) return ENOSPC;
  return real(fd, off, len);
}

int fallocate(int fd, int mode, off_t off, off_t len) {
  static int (*real)(int, int, off_t, off_t) = 0;
  if (!real) real = (int (*)(int, int, off_t, off_t))next("fallocate");
  init();
  if (fd >= 0 && fd < MAX_FDS && g_written[fd] >= 0) {
    errno = ENOSPC;
    return -1;
  }
  return real(fd, mode, off, len);
}

/* The _FORTIFY_SOURCE entry points of open without a mode. */
int __open_2(const char* path, int flags) {
  if (before_open(path) < 0) return -1;
  static int (*real)(const char*, int) = 0;
  if (!real) real = (int (*)(const char*, int))next("__open_2");
  return after_open(path, real(path, flags));
}
int __open64_2(const char* path, int flags) {
  if (before_open(path) < 0) return -1;
  static int (*real)(const char*, int) = 0;
  if (!real) real = (int (*)(const char*, int))next("__open64_2");
  return after_open(path, real(path, flags));
}
