/* kb_getenv: include/kb/env.h. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kb/env.h"

static const char *const prefixes[] = {"TAS_", "STRATA_", "ZIO_"};
static char **saved;       /* "NAME=value" copies, NULL-terminated */

/* At load, before main: the environment the program was started with. */
__attribute__((constructor)) static void kb_env_save(void)
{
    size_t n = 0;
    for (char **e = environ; e != NULL && *e != NULL; e++)
        n++;
    saved = calloc(n + 1, sizeof(*saved));
    if (saved == NULL)
        return;
    size_t k = 0;
    for (char **e = environ; e != NULL && *e != NULL; e++)
        for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++)
            if (strncmp(*e, prefixes[p], strlen(prefixes[p])) == 0) {
                char *copy = strdup(*e);
                if (copy != NULL)
                    saved[k++] = copy;
                break;
            }
}

const char *kb_getenv(const char *name)
{
    const char *v = getenv(name);
    if (v != NULL || saved == NULL)
        return v;
    size_t n = strlen(name);
    for (char **s = saved; *s != NULL; s++)
        if (strncmp(*s, name, n) == 0 && (*s)[n] == '=')
            return *s + n + 1;
    return NULL;
}
