/*
 * May a call be rewritten into another one without bypassing a shim?
 *
 * Output resolution turns write/pwrite/send into gather calls (writev,
 * pwritev, sendmsg) found with RTLD_NEXT.  Shims preloaded after libzio
 * (libtas, libstrata) own descriptors that glibc knows nothing about: if a
 * shim interposes pwrite but not pwritev, a pwrite rewritten into pwritev
 * would skip it and reach glibc with the shim's placeholder descriptor, and
 * the bytes would be lost.  So a rewrite is allowed only when every object
 * after libzio in the lookup order that could own the descriptor and defines
 * one of the two calls also defines the other.  Otherwise libzio
 * materialises the buffer and passes the program's own call on unchanged.
 *
 * Which objects could own the descriptor: for a socket, those that hand out
 * sockets (define socket, accept or accept4: libtas); for a file, those that
 * open files (open*, creat: libstrata).  The others pass descriptors they do
 * not own on to the next object, so skipping them is harmless (libstrata
 * interposes write but not sendmsg, and never sees a socket).
 */
#include "zio_internal.h"

#include <dlfcn.h>
#include <link.h>
#include <string.h>

#define MAX_OBJS 64

/* the objects after libzio in lookup order (link map names, which stay
 * valid: preloaded libraries and their dependencies are never unloaded) */
struct walk {
    const char *self;   /* libzio's path as the link map names it */
    int after_self;
    int n;
    const char *names[MAX_OBJS];
};

static int visit(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct walk *w = arg;
    const char *name = info->dlpi_name;
    if (!name || !*name)
        return 0;   /* the program itself, the vdso */
    if (!w->after_self)
        w->after_self = strcmp(name, w->self) == 0;
    else if (w->n < MAX_OBJS)
        w->names[w->n++] = name;
    return 0;
}

static int defines(void *h, const char *obj, const char *sym)
{
    void *f = dlsym(h, sym);   /* the object first, then its dependencies */
    Dl_info di;
    return f && dladdr(f, &di) && di.dli_fname && strcmp(di.dli_fname, obj) == 0;
}

/* Could the object own the descriptor, and does it define a without b or b
 * without a? */
static int breaks_path(const char *obj, const char *a, const char *b,
                       const char *const *owners)
{
    void *h = dlopen(obj, RTLD_NOLOAD | RTLD_LAZY);
    if (!h)
        return 0;
    int owner = 0;
    for (const char *const *o = owners; *o && !owner; o++)
        owner = defines(h, obj, *o);
    int breaks = owner && defines(h, obj, a) != defines(h, obj, b);
    dlclose(h);
    return breaks;
}

static const char *const socket_owners[] = { "socket", "accept", "accept4", NULL };
static const char *const file_owners[] = { "open", "open64", "openat", "openat64", "creat", NULL };

static int check(const char *a, const char *b)
{
    Dl_info self;
    if (!dladdr((void *)check, &self) || !self.dli_fname)
        return 0;
    const char *const *owners = strcmp(b, "sendmsg") == 0 ? socket_owners : file_owners;
    struct walk w = { .self = self.dli_fname };
    int same = 1;
    zio_in_lib++;   /* the loader may copy */
    /* names first, dlopen after: dlopen inside the callback would take the
     * loader's locks in the opposite order to a concurrent dlopen */
    dl_iterate_phdr(visit, &w);
    for (int i = 0; i < w.n && same; i++)
        same = !breaks_path(w.names[i], a, b, owners);
    zio_in_lib--;
    if (!same)
        zio_log("%s is interposed after libzio without %s: outputs through %s are not "
                "resolved (materialised, passed on unchanged)", a, b, a);
    return same;
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
