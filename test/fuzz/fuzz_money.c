/*
 * fuzz_money.c - libFuzzer target for the store's value readers of untrusted bytes (the
 * management API's `limit` and `expires_at`): lx_money_parse and lx_period_parse_iso.
 *
 * The whole input goes to both. An accepted amount must lie in 0..LX_MONEY_MAX and survive a
 * round trip through lx_money_format; an accepted timestamp must format back to a string that
 * parses to the same second (when it lies in years 0..9999), and a refusal must be LX_EINVAL.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "store/money.h"
#include "store/period.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void money(const char *s, size_t len)
{
    int64_t v = -1;
    int rc = lx_money_parse(s, len, &v);
    if (rc != 0) {
        if (rc != LX_EINVAL)
            abort();
        return;
    }
    if (v < 0 || v > LX_MONEY_MAX)
        abort();
    char buf[LX_MONEY_FMT_MAX];
    size_t n = lx_money_format(v, buf);
    int64_t back = -1;
    if (n != strlen(buf) || lx_money_parse(buf, n, &back) != 0 || back != v)
        abort();
}

static void iso(const char *s, size_t len)
{
    int64_t t = 0;
    int rc = lx_period_parse_iso(s, len, &t);
    if (rc != 0) {
        if (rc != LX_EINVAL)
            abort();
        return;
    }
    char out[21];
    lx_period_format_iso(t, out);
    int64_t back = -1;
    if (lx_period_parse_iso(out, 20, &back) != 0 || back != t)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    money(s, size);
    iso(s, size);
    return 0;
}
