/* One writer per run directory: an exclusive flock on <dir>/.lock, held for the whole run, so
 * two trainings (or a --force next to a live run) can never mix their trace and meta. */
#ifndef DEBA_RUNLOCK_H
#define DEBA_RUNLOCK_H

#include "deba/error.h"

typedef struct {
    int fd;              /* -1 when not held */
    char path[4200];     /* <dir>/.lock */
} deba_lock;

/* Creates dir's .lock if needed (never through a symlink), takes flock(LOCK_EX|LOCK_NB) and
 * writes our pid into it. Held by a live process: DEBA_E_INPUT "<dir>: in use by another run
 * (pid N)". The lock dies with the process, so a kill -9 never leaves a directory locked. */
deba_status deba_lock_acquire(deba_lock *l, const char *dir, deba_err *e);
/* Releases and closes; the .lock file stays (removing it would race a waiting writer).
 * NULL or a lock not held is a no-op. */
void deba_lock_release(deba_lock *l);

#endif
