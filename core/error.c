/* Status codes and error messages shared by the library and the tools. */
#include "deba/error.h"

#include <stdarg.h>
#include <stdio.h>

deba_status deba_err_set(deba_err *e, deba_status s, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
        e->status = s;
    }
    return s;
}

void deba_err_clear(deba_err *e)
{
    if (e) {
        e->status = DEBA_OK;
        e->msg[0] = '\0';
    }
}

const char *deba_status_name(deba_status s)
{
    static const char *names[DEBA_STATUS_COUNT] = {
        "ok", "input error", "i/o error", "out of memory", "runtime error", "unsupported",
    };
    return (unsigned)s < DEBA_STATUS_COUNT ? names[s] : "unknown status";
}

int deba_status_exit_code(deba_status s)
{
    return s == DEBA_OK ? 0 : s == DEBA_E_INPUT ? 2 : 1;
}
