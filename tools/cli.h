/* Option parsing shared by the command-line tools: numbers strict (whole argument, in range,
 * finite), strings copied whole or refused, with the SPEC §9 error line naming the tool and the
 * option. */
#ifndef DEBA_TOOLS_CLI_H
#define DEBA_TOOLS_CLI_H

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The long name of the option whose getopt code is `code`. */
static inline const char *cli_opt_name(const struct option *opts, int code)
{
    for (const struct option *o = opts; o->name; o++)
        if (o->val == code) return o->name;
    return "?";
}

static inline int cli_parse_long(const char *tool, const char *opt, const char *s, long lo, long hi, long *v)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (!*s || *end || errno || x < lo || x > hi) {
        fprintf(stderr, "%s: error: --%s: expected an integer in [%ld, %ld], got '%s'\n", tool, opt, lo, hi, s);
        return -1;
    }
    *v = x;
    return 0;
}

static inline int cli_parse_double(const char *tool, const char *opt, const char *s, double *v)
{
    char *end;
    double x = strtod(s, &end);
    if (!*s || *end || !isfinite(x)) {
        fprintf(stderr, "%s: error: --%s: expected a number, got '%s'\n", tool, opt, s);
        return -1;
    }
    *v = x;
    return 0;
}

/* Exit status of a training tool stopped by SIGTERM/SIGINT/SIGUSR1 after checkpointing: distinct
 * from 0 (done), 1 (failure) and 2 (bad input), so a job script can requeue on it. */
#define DEBA_EXIT_INTERRUPTED 3

/* Copies an option's string into a fixed field, or says it does not fit: a silently truncated
 * label or path would name another run than the one asked for. */
static inline int cli_copy(const char *tool, const char *opt, char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap) {
        fprintf(stderr, "%s: error: --%s: longer than the limit of %zu characters (got %zu)\n", tool, opt, cap - 1, n);
        return -1;
    }
    memcpy(dst, s, n + 1);
    return 0;
}

/* How long an idle GNU OpenMP thread spins before it sleeps (docs/performance.md, "Waiting
 * policy"): passive waiting (no spin) cost 15-60% of a step on an idle machine, between the many
 * short parallel regions of a step, while long spins (libgomp's default 300k, 1M, active) made
 * steps 1.5-3x slower next to a CPU-bound process. A spin of a few thousand iterations
 * (microseconds) recovers most of the idle loss and stays near passive under that load. */
#define CLI_OMP_SPINCOUNT "3000"

/* libgomp reads its waiting policy once at start-up, so a training tool re-executes itself with
 * the bounded spin unless the user chose a policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT). */
static inline void cli_omp_wait_policy(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    setenv("GOMP_SPINCOUNT", CLI_OMP_SPINCOUNT, 1);
    execv("/proc/self/exe", argv);   /* returns only on failure: then run as we are */
}

#endif
