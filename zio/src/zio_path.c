/*
 * May a call be rewritten into another one without bypassing a shim?
 *
 * Output resolution turns write/pwrite/send into gather calls (writev,
 * pwritev, sendmsg) found with RTLD_NEXT.  Shims preloaded after libzio
 * (libtas, libstrata) own descriptors that glibc knows nothing about: if a
 * shim interposes pwrite but not pwritev, a pwrite rewritten into pwritev
 * would skip it and reach glibc with the shim's placeholder descriptor, and
 * the bytes would be lost.  So a rewrite is allowed only when every object
 * after libzio in the lookup order that defines one of the two calls also
 * defines the other.  Otherwise libzio materialises the buffer and passes
 * the program's own call on unchanged.
 */
#include "zio_internal.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>

struct walk {
    const char *self;   /* libzio's path as the link map names it */
    const char *a, *b;
    int after_self;     /* objects from here on follow libzio */
    int same;
};

static int defines(void *h, const char *obj, const char *sym)
{
    void *f = dlsym(h, sym);   /* the object first, then its dependencies */
    Dl_info di;
    return f && dladdr(f, &di) && di.dli_fname && strcmp(di.dli_fname, obj) == 0;
}

static int visit(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct walk *w = arg;
    const char *name = info->dlpi_name;
    if (!name || !*name)
        return 0;   /* the program itself, the vdso */
    if (!w->after_self) {
        w->after_self = strcmp(name, w->self) == 0;
        return 0;
    }
    void *h = dlopen(name, RTLD_NOLOAD | RTLD_LAZY);
    if (!h)
        return 0;
    if (defines(h, name, w->a) != defines(h, name, w->b))
        w->same = 0;
    dlclose(h);
    return !w->same;   /* stop at the first object that breaks the path */
}

static int check(const char *a, const char *b)
{
    Dl_info self;
    if (!dladdr((void *)check, &self) || !self.dli_fname)
        return 0;
    struct walk w = { .self = self.dli_fname, .a = a, .b = b, .same = 1 };
    zio_in_lib++;   /* the loader may copy */
    dl_iterate_phdr(visit, &w);
    zio_in_lib--;
    if (!w.same)
        zio_log("%s is interposed after libzio without %s: outputs through %s are not "
                "resolved (materialised, passed on unchanged)", w.a, w.b, w.a);
    return w.same;
}

/* pairs (call, its rewrite) that output resolution uses */
static const char *const pairs[PATH_NPAIRS][2] = {
    [PATH_WRITE_WRITEV] = { "write", "writev" },
    [PATH_WRITE_SENDMSG] = { "write", "sendmsg" },
    [PATH_WRITEV_SENDMSG] = { "writev", "sendmsg" },
    [PATH_PWRITE_PWRITEV] = { "pwrite", "pwritev" },
    [PATH_PWRITE64_PWRITEV] = { "pwrite64", "pwritev" },
    [PATH_SEND_SENDMSG] = { "send", "sendmsg" },
    [PATH_SENDTO_SENDMSG] = { "sendto", "sendmsg" },
};

int path_ok(enum zio_path p)
{
    static int state[PATH_NPAIRS];   /* 0 unknown, 1 ok, 2 bypasses a shim */
    if (p == PATH_SAME)
        return 1;
    int v = __atomic_load_n(&state[p], __ATOMIC_RELAXED);
    if (v == 0) {
        v = check(pairs[p][0], pairs[p][1]) ? 1 : 2;
        __atomic_store_n(&state[p], v, __ATOMIC_RELAXED);
    }
    return v == 1;
}
