/* CSV tables: parsed with libcsv in strict mode, columns found by header name, every cell kept
 * with the physical line its row starts on so messages can say file:line and column. */
#include "deba/csv.h"

#include <csv.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <ctype.h>
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <sys/random.h>
#include <time.h>

#define DEBA_TMP_TAG ".tmp."

struct deba_table {
    char *path;
    size_t ncols, nrows;
    char **header;   /* (ncols) */
    char **cells;    /* (nrows, ncols), row-major */
    size_t *lines;   /* (nrows) 1-based line of each row's first physical line */
};

/* Parser state shared with libcsv's callbacks, which cannot stop the parse themselves: the first
 * error is recorded and everything after it is ignored. */
typedef struct {
    deba_table *t;
    deba_err *e;
    deba_status st;
    size_t row_line;      /* line the row being parsed started on */
    int have_header;
    char **fields;        /* the row being parsed */
    size_t nfields, capfields;
    size_t caprows;
} parse_ctx;

static char *dup_n(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        if (n) memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void ctx_drop_fields(parse_ctx *c)
{
    for (size_t i = 0; i < c->nfields; i++) free(c->fields[i]);
    c->nfields = 0;
}

static void on_field(void *s, size_t len, void *data)
{
    parse_ctx *c = data;
    if (c->st != DEBA_OK) return;
    if (c->nfields == c->capfields) {
        size_t cap = c->capfields ? 2 * c->capfields : 32;
        char **p = realloc(c->fields, cap * sizeof *p);
        if (!p) { c->st = deba_err_set(c->e, DEBA_E_NOMEM, "%s: out of memory", c->t->path); return; }
        c->fields = p;
        c->capfields = cap;
    }
    char *f = dup_n(s ? s : "", s ? len : 0);
    if (!f) { c->st = deba_err_set(c->e, DEBA_E_NOMEM, "%s: out of memory", c->t->path); return; }
    c->fields[c->nfields++] = f;
}

static void on_row(int term, void *data)
{
    (void)term;
    parse_ctx *c = data;
    deba_table *t = c->t;
    if (c->st != DEBA_OK) { ctx_drop_fields(c); return; }
    if (!c->have_header) {
        for (size_t i = 0; i < c->nfields; i++) {
            if (c->fields[i][0] == '\0') {
                c->st = deba_err_set(c->e, DEBA_E_INPUT, "%s:%zu: column %zu has an empty header name",
                                     t->path, c->row_line, i + 1);
                ctx_drop_fields(c);
                return;
            }
            for (size_t j = 0; j < i; j++)
                if (strcmp(c->fields[i], c->fields[j]) == 0) {
                    c->st = deba_err_set(c->e, DEBA_E_INPUT,
                                         "%s:%zu: duplicate header name '%s' (columns %zu and %zu)",
                                         t->path, c->row_line, c->fields[i], j + 1, i + 1);
                    ctx_drop_fields(c);
                    return;
                }
        }
        t->header = c->fields;    /* the field array becomes the header */
        t->ncols = c->nfields;
        c->fields = NULL;
        c->nfields = c->capfields = 0;
        c->have_header = 1;
        return;
    }
    if (c->nfields != t->ncols) {
        c->st = deba_err_set(c->e, DEBA_E_INPUT, "%s:%zu: ragged row: %zu fields, header has %zu",
                             t->path, c->row_line, c->nfields, t->ncols);
        ctx_drop_fields(c);
        return;
    }
    if (t->nrows == c->caprows) {
        size_t cap = c->caprows ? 2 * c->caprows : 64;
        char **cells = realloc(t->cells, cap * t->ncols * sizeof *cells);
        if (cells) t->cells = cells;
        size_t *lines = cells ? realloc(t->lines, cap * sizeof *lines) : NULL;
        if (lines) t->lines = lines;
        if (!cells || !lines) {
            c->st = deba_err_set(c->e, DEBA_E_NOMEM, "%s: out of memory", t->path);
            ctx_drop_fields(c);
            return;
        }
        c->caprows = cap;
    }
    memcpy(t->cells + t->nrows * t->ncols, c->fields, t->ncols * sizeof *c->fields);
    t->lines[t->nrows++] = c->row_line;
    c->nfields = 0;
}

void deba_table_free(deba_table *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->ncols; i++) free(t->header[i]);
    for (size_t i = 0; i < t->nrows * t->ncols; i++) free(t->cells[i]);
    free(t->header);
    free(t->cells);
    free(t->lines);
    free(t->path);
    free(t);
}

deba_status deba_table_read(const char *path, deba_table **out, deba_err *e)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return deba_err_set(e, DEBA_E_INPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return deba_err_set(e, DEBA_E_INPUT, "%s: is a directory, not a CSV file", path);
    }

    deba_table *t = calloc(1, sizeof *t);
    if (t) t->path = dup_n(path, strlen(path));
    if (!t || !t->path) {
        fclose(f);
        free(t);
        return deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory", path);
    }
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0) {
        fclose(f);
        deba_table_free(t);
        return deba_err_set(e, DEBA_E_NOMEM, "%s: out of memory", path);
    }
    parse_ctx c = { .t = t, .e = e, .st = DEBA_OK, .row_line = 1 };

    /* Fed one physical line at a time so the parser's state at each line start tells whether a
     * new row begins there (libcsv's ROW_NOT_BEGUN is state 0) or a quoted field continues. */
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    while (c.st == DEBA_OK && (len = getline(&line, &cap, f)) != -1) {
        lineno++;
        const char *s = line;
        if (lineno == 1 && len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) { s += 3; len -= 3; }
        if (p.pstate == 0) c.row_line = lineno;
        if (csv_parse(&p, s, (size_t)len, on_field, on_row, &c) != (size_t)len && c.st == DEBA_OK)
            c.st = deba_err_set(e, DEBA_E_INPUT, "%s:%zu: malformed CSV (%s)", path, lineno,
                                csv_error(&p) == CSV_EPARSE ? "stray or unbalanced quote"
                                                            : csv_strerror(csv_error(&p)));
    }
    if (c.st == DEBA_OK && ferror(f))
        c.st = deba_err_set(e, DEBA_E_IO, "%s: read error: %s", path, strerror(errno));
    if (c.st == DEBA_OK && csv_fini(&p, on_field, on_row, &c) != 0 && c.st == DEBA_OK)
        c.st = deba_err_set(e, DEBA_E_INPUT, "%s:%zu: unterminated quoted field", path, c.row_line);
    if (c.st == DEBA_OK && !c.have_header)
        c.st = deba_err_set(e, DEBA_E_INPUT, "%s: empty file (no header row)", path);

    free(line);
    fclose(f);
    csv_free(&p);
    ctx_drop_fields(&c);
    free(c.fields);
    if (c.st != DEBA_OK) {
        deba_table_free(t);
        return c.st;
    }
    *out = t;
    return DEBA_OK;
}

const char *deba_table_path(const deba_table *t) { return t->path; }
size_t deba_table_nrows(const deba_table *t) { return t->nrows; }
size_t deba_table_ncols(const deba_table *t) { return t->ncols; }
const char *deba_table_header(const deba_table *t, size_t col) { return col < t->ncols ? t->header[col] : NULL; }
size_t deba_table_line(const deba_table *t, size_t row) { return row < t->nrows ? t->lines[row] : 0; }

const char *deba_table_str(const deba_table *t, size_t row, size_t col)
{
    return row < t->nrows && col < t->ncols ? t->cells[row * t->ncols + col] : NULL;
}

deba_status deba_table_col(const deba_table *t, const char *name, size_t *col, deba_err *e)
{
    for (size_t i = 0; i < t->ncols; i++)
        if (strcmp(t->header[i], name) == 0) {
            *col = i;
            return DEBA_OK;
        }
    return deba_err_set(e, DEBA_E_INPUT, "%s:1: missing column '%s'", t->path, name);
}

/* "<file>:<line>: column '<name>' (<n>): <what>: '<text>'", n 1-based. */
static deba_status cell_error(const deba_table *t, size_t row, size_t col, const char *what,
                              const char *s, deba_err *e)
{
    return deba_err_set(e, DEBA_E_INPUT, "%s:%zu: column '%s' (%zu): %s: '%s'", t->path,
                        t->lines[row], t->header[col], col + 1, what, s);
}

deba_status deba_table_double(const deba_table *t, size_t row, size_t col, double *v, deba_err *e)
{
    const char *s = deba_table_str(t, row, col);
    if (!s) return deba_err_set(e, DEBA_E_INPUT, "%s: no cell at row %zu, column %zu", t->path, row, col);
    if (!*s) return cell_error(t, row, col, "empty cell, expected a number", s, e);
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end != '\0') return cell_error(t, row, col, "not a number", s, e);
    if (!isfinite(x))   /* nan, inf, and overflow (which strtod turns into inf) */
        return cell_error(t, row, col, "not a finite number", s, e);
    *v = x;
    return DEBA_OK;
}

deba_status deba_table_int(const deba_table *t, size_t row, size_t col, long *v, deba_err *e)
{
    const char *s = deba_table_str(t, row, col);
    if (!s) return deba_err_set(e, DEBA_E_INPUT, "%s: no cell at row %zu, column %zu", t->path, row, col);
    if (!*s) return cell_error(t, row, col, "empty cell, expected an integer", s, e);
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end != '\0') return cell_error(t, row, col, "not an integer", s, e);
    if (errno == ERANGE) return cell_error(t, row, col, "integer out of range", s, e);
    *v = x;
    return DEBA_OK;
}

/* ---- writing ---- */

/* The temporary file lives in the target's directory (rename must not cross filesystems) under a
 * name nobody can predict, ".<name>.tmp.<pid>.<random>", and is created with O_EXCL|O_NOFOLLOW:
 * a file or symlink planted there beforehand can never be followed or overwritten. The pid in
 * the name lets deba_atomic_clean_stale tell a dead writer's leftovers from a live one's. */
deba_status deba_atomic_open(deba_atomic *a, const char *path, deba_err *e)
{
    a->f = NULL;
    a->tmp[0] = '\0';
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof a->path)
        return deba_err_set(e, DEBA_E_INPUT, "output path is empty or too long: '%.64s...'", path);
    memcpy(a->path, path, n + 1);
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return deba_err_set(e, DEBA_E_INPUT, "%s: is a directory, not a file", path);
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    const char *base = slash ? slash + 1 : path;
    if (!*base) return deba_err_set(e, DEBA_E_INPUT, "%s: names a directory, not a file", path);
    for (int attempt = 0; attempt < 16; attempt++) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)   /* no entropy: still unique per try */
            r = ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)a ^ ((uint64_t)attempt << 56) ^ (uint64_t)time(NULL);
        int len = snprintf(a->tmp, sizeof a->tmp, "%.*s.%s" DEBA_TMP_TAG "%ld.%016llx", dirlen, path, base,
                           (long)getpid(), (unsigned long long)r);
        if (len < 0 || (size_t)len >= sizeof a->tmp) {
            a->tmp[0] = '\0';
            return deba_err_set(e, DEBA_E_INPUT, "output path is too long: '%.64s...'", path);
        }
        int fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) {
            int err = errno;
            a->tmp[0] = '\0';
            return deba_err_set(e, err == ENOENT || err == ENOTDIR ? DEBA_E_INPUT : DEBA_E_IO,
                                "%s: cannot create: %s", path, strerror(err));
        }
        a->f = fdopen(fd, "wb");
        if (!a->f) {
            int err = errno;
            close(fd);
            unlink(a->tmp);
            a->tmp[0] = '\0';
            return deba_err_set(e, DEBA_E_NOMEM, "%s: cannot open a stream: %s", path, strerror(err));
        }
        return DEBA_OK;
    }
    a->tmp[0] = '\0';
    return deba_err_set(e, DEBA_E_IO, "%s: cannot create a temporary file beside it (16 names taken)", path);
}

/* Whether name is ".<something>.tmp.<pid>.<16 hex>" (or the older "<something>.tmp.<pid>"),
 * giving the pid. */
static long stale_tmp_pid(const char *name)
{
    const char *tag = NULL;
    for (const char *p = strstr(name, DEBA_TMP_TAG); p; p = strstr(p + 1, DEBA_TMP_TAG)) tag = p;
    if (!tag || tag == name) return -1;
    const char *s = tag + strlen(DEBA_TMP_TAG);
    char *end;
    long pid = strtol(s, &end, 10);
    if (end == s || pid <= 0) return -1;
    if (*end == '\0') return pid;                       /* the older name */
    if (name[0] != '.' || *end != '.' || strlen(end + 1) != 16) return -1;
    for (const char *h = end + 1; *h; h++)
        if (!isxdigit((unsigned char)*h)) return -1;
    return pid;
}

deba_status deba_atomic_clean_stale(const char *dir, int *removed, deba_err *e)
{
    if (removed) *removed = 0;
    DIR *d = opendir(dir);
    if (!d) return deba_err_set(e, DEBA_E_IO, "%s: cannot list: %s", dir, strerror(errno));
    int fd = dirfd(d);
    struct dirent *de;
    deba_status st = DEBA_OK;
    while ((de = readdir(d))) {
        long pid = stale_tmp_pid(de->d_name);
        if (pid <= 0) continue;
        if (pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;   /* alive */
        struct stat sb;
        if (fstatat(fd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(sb.st_mode)) continue;
        if (unlinkat(fd, de->d_name, 0) != 0) {
            st = deba_err_set(e, DEBA_E_IO, "%s/%s: cannot remove stale temporary file: %s", dir, de->d_name,
                              strerror(errno));
            break;
        }
        if (removed) (*removed)++;
    }
    closedir(d);
    return st;
}

/* fsync of the directory makes the rename itself durable; failure there is not worth failing
 * the write for (some filesystems refuse it). */
static void fsync_parent(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

deba_status deba_atomic_commit(deba_atomic *a, deba_err *e)
{
    if (!a->f) return deba_err_set(e, DEBA_E_RUNTIME, "%s: atomic writer is not open", a->path);
    int bad = fflush(a->f) != 0 || ferror(a->f) || fsync(fileno(a->f)) != 0;
    int err = errno;
    bad |= fclose(a->f) != 0;
    a->f = NULL;
    if (bad) {
        remove(a->tmp);
        a->tmp[0] = '\0';
        return deba_err_set(e, DEBA_E_IO, "%s: write failed: %s", a->path, strerror(err));
    }
    if (rename(a->tmp, a->path) != 0) {
        err = errno;
        remove(a->tmp);
        a->tmp[0] = '\0';
        return deba_err_set(e, DEBA_E_IO, "%s: cannot rename temporary file: %s", a->path, strerror(err));
    }
    a->tmp[0] = '\0';
    fsync_parent(a->path);
    return DEBA_OK;
}

void deba_atomic_abort(deba_atomic *a)
{
    if (a->f) fclose(a->f);
    a->f = NULL;
    if (a->tmp[0]) remove(a->tmp);
    a->tmp[0] = '\0';
}

void deba_csv_field(FILE *f, const char *s)
{
    /* libcsv trims unquoted leading and trailing blanks, so those are quoted too. */
    size_t n = strlen(s);
    int quote = strpbrk(s, ",\"\r\n") != NULL ||
                (n && (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t'));
    if (!quote) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void deba_csv_double(FILE *f, double v)
{
    char buf[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    fputs(buf, f);
}
