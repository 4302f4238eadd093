/* Loading a GPU backend as a shared module, as ggml-backend's registry does: the tools and
 * libdeba-train link no CUDA library, and only `--device cuda|auto` dlopens libdeba-cuda.so and
 * asks its one entry point (module.h) for a backend. Search order: $DEBA_CUDA_MODULE alone
 * when set (an explicit choice that fails is an error, not a reason to load another copy), else
 * <dir of /proc/self/exe>/../lib/deba/ (the build tree and an installed tree alike), else the
 * install prefix compiled in. The module stays loaded for the process: backends it made point
 * into it, and CUDA's libraries do not expect to be unloaded. */
#include "trainer/backend/backend.h"
#include "trainer/backend/module.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef DEBA_PREFIX
#define DEBA_PREFIX "/usr/local"
#endif
#define CUDA_MODULE "libdeba-cuda.so"

/* The first module that loaded, kept for the process (loads and lookups serialised). */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static tr_module_api loaded;
static int have_loaded;

/* Appends "; " and what to the list of paths tried, cut at cap. */
static void add_tried(char *buf, size_t cap, const char *what)
{
    size_t len = strlen(buf);
    if (len && len + 2 < cap) {
        memcpy(buf + len, "; ", 3);
        len += 2;
    }
    size_t n = strlen(what);
    if (n > cap - 1 - len) n = cap - 1 - len;
    memcpy(buf + len, what, n);
    buf[len + n] = '\0';
}

/* 1: *api filled; 0: no file at path (keep looking); -1: the file is there but unusable (e
 * says why, naming the path). The dlopen message goes into tried either way. */
static int try_module(const char *path, tr_module_api *api, char *tried, size_t cap, deba_err *e)
{
    dlerror();
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        add_tried(tried, cap, why ? why : path);
        if (access(path, F_OK) != 0) return 0;
        /* there but not loadable (a missing CUDA library, a bad ELF): stop here */
        deba_err_set(e, DEBA_E_RUNTIME, "no CUDA backend: the CUDA module %s cannot be loaded: %s", path,
                     why ? why : "dlopen failed");
        return -1;
    }
    tr_module_init_fn init = (tr_module_init_fn)dlsym(h, TR_MODULE_ENTRY);
    if (!init) {
        const char *why = dlerror();
        deba_err_set(e, DEBA_E_RUNTIME, "no CUDA backend: %s is not a DEBA backend module (%s)", path,
                     why ? why : "no " TR_MODULE_ENTRY);
        dlclose(h);
        return -1;
    }
    tr_module_host host = {TR_MODULE_ABI, TR_MODULE_LAYOUT_INIT};
    tr_module_api out = {0};
    int rc = init(TR_MODULE_ABI, &host, &out);
    if (rc == 0 && out.backend_new) {
        *api = out;
        return 1;   /* h stays open for the process */
    }
    if (rc > 0)
        deba_err_set(e, DEBA_E_RUNTIME, "no CUDA backend: %s speaks backend module ABI %d, this program needs %d "
                     "(rebuild the module and the tools together)", path, rc, TR_MODULE_ABI);
    else if (rc == 0)
        deba_err_set(e, DEBA_E_RUNTIME, "no CUDA backend: %s returned no backend constructor", path);
    else
        deba_err_set(e, DEBA_E_RUNTIME, "no CUDA backend: %s was built from another trainer/graph.h (ABI %d, but "
                     "the struct sizes differ): rebuild the module and the tools together", path, TR_MODULE_ABI);
    dlclose(h);
    return -1;
}

/* Finds and initialises the module; DEBA_E_RUNTIME naming every path tried when none loads. */
static deba_status load_cuda_module(tr_module_api *api, deba_err *e)
{
    pthread_mutex_lock(&mu);
    if (have_loaded) {
        *api = loaded;
        pthread_mutex_unlock(&mu);
        return DEBA_OK;
    }
    char tried[900] = "";
    int rc = 0;
    const char *env = getenv("DEBA_CUDA_MODULE");
    if (env && *env) {
        rc = try_module(env, api, tried, sizeof tried, e);
        if (rc == 0)
            deba_err_set(e, DEBA_E_RUNTIME, "no CUDA backend: DEBA_CUDA_MODULE=%s cannot be loaded (%s)", env, tried);
    } else {
        char exe[PATH_MAX], path[PATH_MAX + 64];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = '\0';
            char *slash = strrchr(exe, '/');
            if (slash) *slash = '\0';
            snprintf(path, sizeof path, "%s/../lib/deba/" CUDA_MODULE, exe);
            rc = try_module(path, api, tried, sizeof tried, e);
        }
        if (rc == 0) rc = try_module(DEBA_PREFIX "/lib/deba/" CUDA_MODULE, api, tried, sizeof tried, e);
        if (rc == 0)
            deba_err_set(e, DEBA_E_RUNTIME, "no CUDA backend: module " CUDA_MODULE " not found (tried %s); build on a "
                         "machine with nvcc (see README), set DEBA_CUDA_MODULE to its path, or use --device cpu", tried);
    }
    if (rc == 1) {
        loaded = *api;
        have_loaded = 1;
    }
    pthread_mutex_unlock(&mu);
    return rc == 1 ? DEBA_OK : (e ? e->status : DEBA_E_RUNTIME);
}

tr_backend *tr_backend_cuda_new(int device, deba_err *e)
{
    tr_module_api api;
    deba_err local = {0};
    if (!e) e = &local;
    if (load_cuda_module(&api, e)) return NULL;
    return api.backend_new(device, e);
}

int tr_backend_cuda_driver_present(deba_err *why)
{
    /* the name the CUDA runtime itself dlopens; the stub under lib64/stubs is libcuda.so */
    void *h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (h) return 1;   /* kept: the module's runtime opens the same driver next */
    const char *msg = dlerror();
    deba_err_set(why, DEBA_E_RUNTIME, "no NVIDIA driver (%s)", msg ? msg : "libcuda.so.1 not found");
    return 0;
}
