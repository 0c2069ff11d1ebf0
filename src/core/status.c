/*
 * status.c - text for error codes: the project's own and, below, libc's for libuv's.
 *
 * core links libc only, so libuv codes (negated errno values on Unix) are named through
 * strerror(), which is what uv_strerror() does for them too.
 */
#include "core/status.h"

#include <string.h>

const char *lx_strerror(int code)
{
    switch (code) {
#define XX(name, c, text)                                                                          \
    case c:                                                                                        \
        return text;
        LX_STATUS_MAP(XX)
#undef XX
    case 0:
        return "success";
    case -4095:
        return "end of file";
    /* libuv's resolver codes (UV_EAI_*), which are no errno values */
    case -3001:
        return "temporary failure in name resolution";
    case -3003:
        return "name resolution canceled";
    case -3004:
        return "permanent failure in name resolution";
    case -3007:
    case -3008:
        return "host name not found";
    default:
        break;
    }
    if (code < 0 && code > -4000)
        return strerror(-code);
    return "unknown error";
}
