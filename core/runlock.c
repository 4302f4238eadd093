/* Run-directory lock: flock on a small file whose content is the holder's pid, so the second
 * writer can say who holds it. flock locks belong to the open file description and vanish with
 * the process, which is exactly the lifetime a run needs. */
#include "deba/runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

deba_status deba_lock_acquire(deba_lock *l, const char *dir, deba_err *e)
{
    l->fd = -1;
    int n = snprintf(l->path, sizeof l->path, "%s/.lock", dir);
    if (n < 0 || (size_t)n >= sizeof l->path)
        return deba_err_set(e, DEBA_E_INPUT, "run directory path is too long: '%.64s...'", dir);
    int fd = open(l->path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        int err = errno;
        return deba_err_set(e, err == ELOOP ? DEBA_E_INPUT : DEBA_E_IO, "%s: cannot open lock file: %s%s",
                            l->path, strerror(err), err == ELOOP ? " (it is a symbolic link)" : "");
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        if (err == EWOULDBLOCK) {
            char buf[32] = {0};
            ssize_t got = pread(fd, buf, sizeof buf - 1, 0);
            long pid = got > 0 ? strtol(buf, NULL, 10) : 0;
            close(fd);
            if (pid > 0)
                return deba_err_set(e, DEBA_E_INPUT, "%s: in use by another run (pid %ld)", dir, pid);
            return deba_err_set(e, DEBA_E_INPUT, "%s: in use by another run", dir);
        }
        close(fd);
        return deba_err_set(e, DEBA_E_IO, "%s: cannot lock: %s", l->path, strerror(err));
    }
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)len, 0) != len) {
        int err = errno;
        close(fd);
        return deba_err_set(e, DEBA_E_IO, "%s: cannot write lock file: %s", l->path, strerror(err));
    }
    l->fd = fd;
    return DEBA_OK;
}

void deba_lock_release(deba_lock *l)
{
    if (!l || l->fd < 0) return;
    /* Empty the pid first: a reader between unlock and close must not name a finished run. */
    (void)ftruncate(l->fd, 0);
    flock(l->fd, LOCK_UN);
    close(l->fd);
    l->fd = -1;
}
