/* Number parsing shared by the command-line tools: strict (whole argument, in range, finite),
 * with the SPEC §9 error line naming the tool and the option. */
#ifndef DEBA_TOOLS_CLI_H
#define DEBA_TOOLS_CLI_H

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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

#endif
