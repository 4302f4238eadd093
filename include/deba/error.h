/* Status codes and the error message every library call fills instead of printing or exiting. */
#ifndef DEBA_ERROR_H
#define DEBA_ERROR_H

typedef enum {
    DEBA_OK = 0,
    DEBA_E_INPUT,       /* bad input from the user: file content, argument, missing file (exit 2) */
    DEBA_E_IO,          /* a write or read failed for reasons outside the input (exit 1) */
    DEBA_E_NOMEM,       /* host or device allocation failed (exit 1) */
    DEBA_E_RUNTIME,     /* anything else that went wrong while running (exit 1) */
    DEBA_E_UNSUPPORTED, /* an operation the chosen backend does not implement (exit 1) */
    DEBA_STATUS_COUNT
} deba_status;

/* The message names the file, line and column, or the argument, at fault. */
typedef struct {
    deba_status status;
    char msg[1024];
} deba_err;

/* Sets status and a printf-formatted message; e may be NULL. Returns s, so callers can
 * write `return deba_err_set(e, DEBA_E_INPUT, "...")`. */
deba_status deba_err_set(deba_err *e, deba_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void deba_err_clear(deba_err *e);
const char *deba_status_name(deba_status s);
/* 0 for DEBA_OK, 2 for DEBA_E_INPUT, 1 for every other failure (SPEC §9). */
int deba_status_exit_code(deba_status s);

#endif
