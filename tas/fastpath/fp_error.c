/* Last fast-path setup error, readable from Python as a string. */
#include <stdarg.h>
#include <stdio.h>

#include <rte_errno.h>

#include "fp_internal.h"

static char fp_error_text[256];

void fp_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fp_error_text, sizeof(fp_error_text), fmt, ap);
    va_end(ap);
}

const char *tas_fp_error(void)
{
    return fp_error_text;
}

int tas_rte_errno(void)
{
    return rte_errno;
}
