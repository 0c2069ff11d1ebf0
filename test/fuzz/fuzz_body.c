/*
 * fuzz_body.c - libFuzzer target for the request body scan and splice.
 *
 * Scans arbitrary bytes; whenever the scan accepts them, splices in a fixed model (one that
 * needs escaping) with include_usage on, and checks the planned body: it must scan again, carry
 * exactly the new model, no consumed member, and include_usage:true when streaming. The scan
 * itself is linear in the input whatever it holds (no input may take long: libFuzzer's
 * -timeout and the slow-unit report catch a shape that does).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char new_model[] = "fuzz/m\"od\\el\n\xc3\xa9";

static char *concat(const lx_body_piece_t *pieces, int n, size_t total)
{
    char *out = malloc(total ? total : 1);
    if (out == NULL)
        abort();
    size_t o = 0;
    for (int k = 0; k < n; k++) {
        if (pieces[k].len == 0)
            abort();
        memcpy(out + o, pieces[k].ptr, pieces[k].len);
        o += pieces[k].len;
    }
    if (o != total)
        abort();
    return out;
}

static void check(const char *body, size_t len, const lx_body_scan_t *scan, const char *model,
                  size_t model_len)
{
    lx_body_piece_t pieces[LX_BODY_MAX_PIECES];
    char scratch[64];
    size_t total = 0;
    int n = lx_body_splice(body, len, scan, model, model_len, true, pieces, LX_BODY_MAX_PIECES,
                           scratch, sizeof(scratch), &total);
    if (n <= 0)
        abort();
    char *out = concat(pieces, n, total);
    lx_body_scan_t again;
    if (lx_body_scan(out, total, &again) != 0)
        abort();
    if (again.has_models || again.has_provider || again.has_route || again.has_session_id ||
        again.has_usage)
        abort();
    if (again.stream != scan->stream || (scan->stream && !again.include_usage))
        abort();
    if (model != NULL) {
        char decoded[64];
        if (!again.has_model)
            abort();
        int d = lx_body_unescape(out + again.model.off, again.model.len, decoded, sizeof(decoded));
        if (d != (int)model_len || memcmp(decoded, model, model_len) != 0)
            abort();
    } else if (again.has_model != scan->has_model ||
               (scan->has_model &&
                (again.model.len != scan->model.len ||
                 memcmp(out + again.model.off, body + scan->model.off, scan->model.len) != 0))) {
        abort();
    }
    /* splicing the planned body again changes nothing more */
    lx_body_piece_t pieces2[LX_BODY_MAX_PIECES];
    size_t total2 = 0;
    int n2 = lx_body_splice(out, total, &again, NULL, 0, true, pieces2, LX_BODY_MAX_PIECES, scratch,
                            sizeof(scratch), &total2);
    if (n2 <= 0 || total2 != total)
        abort();
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    lx_body_scan_t scan;
    if (lx_body_scan(body, size, &scan) != 0) {
        if (scan.error[0] == '\0')
            abort();
        return 0;
    }
    if (scan.has_model) {
        char decoded[256];
        int d = lx_body_unescape(body + scan.model.off, scan.model.len, decoded, sizeof(decoded));
        if (d < 0 && d != -5006 /* LX_ETOOBIG */)
            abort();
    }
    check(body, size, &scan, new_model, sizeof(new_model) - 1);
    check(body, size, &scan, NULL, 0);
    return 0;
}
