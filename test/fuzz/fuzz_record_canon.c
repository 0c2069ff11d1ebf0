/*
 * fuzz_record_canon.c - libFuzzer target for the canonical form of a usage record's strings
 * (store/record.h: lx_record_canon, lx_record_canonicalize), which the store thread applies to
 * provider ids, model names and the other strings a provider or a client chose.
 *
 * The input is canonicalized at every cap from 1 to its length + 1 and at a field's caps: the
 * result must be well-formed UTF-8, no longer than the cap allows, a fixed point (its
 * canonical form is itself), and equal to the input whenever the input is well-formed and fits.
 * The whole input is also set as a record's provider id and canonicalized in place.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/str.h"
#include "store/record.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool well_formed(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t n = lx_str_utf8_len((const unsigned char *)s + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

static void check(const char *in, size_t len, size_t cap)
{
    char out[3 * 300 + 1], again[3 * 300 + 1];
    size_t n = lx_record_canon(out, cap, in, len);
    if (n > cap - 1 || out[n] != '\0' || !well_formed(out, n))
        abort();
    if (lx_record_canon(again, cap, out, n) != n || memcmp(again, out, n) != 0)
        abort();
    if (len < cap && well_formed(in, len) && (n != len || memcmp(out, in, len) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 300)
        size = 300;
    const char *in = (const char *)data;
    for (size_t cap = 1; cap <= size + 1; cap++)
        check(in, size, cap);
    check(in, size, 3 * 300 + 1);
    lx_record_t *r = lx_record_new();
    if (r == NULL)
        return 0;
    lx_record_set(r, LX_RF_UPSTREAM_ID, in, size);
    lx_record_share(r, LX_RF_USER, LX_RF_UPSTREAM_ID);
    lx_record_canonicalize(r);
    for (unsigned f = 0; f < LX_RF_SLOTS; f++)
        if (lx_record_len(r, f) > lx_record_cap(f) ||
            !well_formed(lx_record_str(r, f), lx_record_len(r, f)))
            abort();
    if (strcmp(lx_record_str(r, LX_RF_USER), lx_record_str(r, LX_RF_UPSTREAM_ID)) != 0)
        abort();
    free(r);
    return 0;
}
