/* The one directory walker every tool uses to find run directories and result files under the
 * roots it is given: each directory is visited once, however many symlinks lead to it. */
#ifndef DEBA_RUNS_H
#define DEBA_RUNS_H

#include <stddef.h>
#include "deba/error.h"
#include "deba/trace.h"

/* Called once per directory reached; a status other than DEBA_OK stops the walk with it. */
typedef deba_status (*deba_walk_fn)(const char *dir, void *ctx, deba_err *e);

/* How deep below a root the walk goes; deeper directories are skipped and reported. */
#define DEBA_WALK_MAX_DEPTH 64

/* Walks each root recursively in sorted name order and calls visit(dir) for every directory,
 * the roots included. Each directory (device + inode) is visited once: the real tree first, then
 * the directories that symbolic links lead to, in the order found, unless already visited. Each
 * symlink not followed for that reason, each directory deeper than DEBA_WALK_MAX_DEPTH and each
 * path longer than PATH_MAX is appended to *skipped as a message naming it (skipped may be NULL
 * to drop them). A root reached again (overlapping roots) is skipped silently. A root that is
 * missing or not a directory, or a directory that cannot be read, is DEBA_E_INPUT. */
deba_status deba_walk(const char *const *roots, size_t nroots, deba_walk_fn visit, void *ctx, char ***skipped,
                      size_t *nskipped, deba_err *e);

/* deba_runs_load (deba/trace.h), with the walk's skipped-path messages appended to *skipped. */
deba_status deba_runs_load_walk(const char *const *roots, size_t nroots, deba_run **runs, size_t *n, char ***skipped,
                                size_t *nskipped, deba_err *e);

/* Frees a list of n strings as the walk appends them; NULL is a no-op. */
void deba_strs_free(char **v, size_t n);

#endif
