/* Shared by the libFuzzer harnesses (make fuzz): the readers under test take paths, so each
 * input is written to a file in one scratch directory made per process. */
#ifndef DEBA_FUZZ_H
#define DEBA_FUZZ_H

#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fz_dir[4096];

static int fz_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void fz_cleanup(void)
{
    if (fz_dir[0]) nftw(fz_dir, fz_rm, 16, FTW_DEPTH | FTW_PHYS);
}

/* The scratch directory, under $TMPDIR (make fuzz points it into the build folder, so what a
 * crashed process leaves behind never lands in the source tree or fills /tmp). */
static const char *fz_scratch(void)
{
    if (!fz_dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(fz_dir, sizeof fz_dir, "%s/deba-fuzz-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(fz_dir)) {
            perror(fz_dir);
            abort();
        }
        atexit(fz_cleanup);
    }
    return fz_dir;
}

/* dir/name, in a buffer the caller gives (4096 bytes). */
static const char *fz_path(char *buf, const char *name)
{
    snprintf(buf, 4096, "%s/%s", fz_scratch(), name);
    return buf;
}

/* Writes size bytes to the scratch file name and returns its path (static storage). A harness
 * failing to write its own input is a broken harness, not a finding: abort loudly. */
static const char *fz_write(const char *name, const uint8_t *data, size_t size)
{
    static char path[4096];
    fz_path(path, name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
        perror(path);
        abort();
    }
    return path;
}

#endif
