/*
 * fuzz_body.c - libFuzzer target for the request body scan and splice.
 *
 * Scans arbitrary bytes and checks the direct scan against the reference scan
 * (check_reference()); whenever the scan accepts them, splices in a fixed model (one that
 * needs escaping) with include_usage on, and checks the planned body: it must scan again, carry
 * exactly the new model, no consumed member, and include_usage:true when streaming. The scan
 * itself is linear in the input whatever it holds (no input may take long: libFuzzer's
 * -timeout and the slow-unit report catch a shape that does).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/body.h"

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
        int d = lx_json_unescape(out + again.model.off, again.model.len, decoded, sizeof(decoded));
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

static bool ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool same_span(lx_body_span_t a, lx_body_span_t b, uint32_t shift)
{
    return a.len == b.len && (a.len == 0 && a.off == 0 ? b.off == 0 : b.off == a.off + shift);
}

/*
 * The direct scan accepts only what the reference scan accepts, with the same record, and
 * leaves it the same errors: the body with a "models":null member put first, which the direct
 * scan gives up on at its key, goes to the reference scan; its bytes after that member are the
 * body's, 14 bytes later.
 */
static void check_reference(const char *body, size_t size, const lx_body_scan_t *scan, int rc)
{
    static const char head[] = "{\"models\":null,";
    const uint32_t shift = sizeof(head) - 2;
    size_t lead = 0, k;
    while (lead < size && ws(body[lead]))
        lead++;
    if (lead == size || body[lead] != '{' || memmem(body, size, "\"models\"", 8) != NULL)
        return;
    for (k = lead + 1; k < size && ws(body[k]); k++)
        ;
    if (k == size || body[k] == '}' || body[k] == ']') /* no first member to put it before */
        return;
    char *ref = malloc(size + shift);
    if (ref == NULL)
        abort();
    memcpy(ref, body, lead);
    memcpy(ref + lead, head, shift + 1);
    memcpy(ref + lead + shift + 1, body + lead + 1, size - lead - 1);
    lx_body_scan_t r;
    int rc2 = lx_body_scan(ref, size + shift, &r);
    if (rc2 != rc)
        abort();
    if (rc != 0) {
        unsigned long a, b;
        if (sscanf(scan->error, "invalid JSON at byte %lu", &a) == 1) {
            if (sscanf(r.error, "invalid JSON at byte %lu", &b) != 1 || b != a + shift)
                abort();
        } else if (strcmp(scan->error, r.error) != 0) {
            abort();
        }
        free(ref);
        return;
    }
    if (r.has_model != scan->has_model || !same_span(scan->model, r.model, shift) ||
        r.has_stream != scan->has_stream || r.stream != scan->stream ||
        r.has_stream_options != scan->has_stream_options ||
        r.stream_options_null != scan->stream_options_null ||
        !same_span(scan->stream_options, r.stream_options, shift) ||
        r.stream_options_members != scan->stream_options_members ||
        r.has_include_usage != scan->has_include_usage || r.include_usage != scan->include_usage ||
        !same_span(scan->include_usage_value, r.include_usage_value, shift) ||
        r.has_provider != scan->has_provider || !same_span(scan->provider, r.provider, shift) ||
        r.has_route != scan->has_route || !same_span(scan->route, r.route, shift) ||
        r.has_session_id != scan->has_session_id ||
        !same_span(scan->session_id, r.session_id, shift) || r.has_usage != scan->has_usage ||
        r.usage_include != scan->usage_include || r.root_open != scan->root_open ||
        r.kept != scan->kept || (scan->kept > 0 && r.last_kept_end != scan->last_kept_end + shift))
        abort();
    free(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    lx_body_scan_t scan;
    int rc = lx_body_scan(body, size, &scan);
    check_reference(body, size, &scan, rc);
    if (rc != 0) {
        if (scan.error[0] == '\0')
            abort();
        return 0;
    }
    if (scan.has_model) {
        char decoded[256];
        int d = lx_json_unescape(body + scan.model.off, scan.model.len, decoded, sizeof(decoded));
        if (d < 0 && d != -5006 /* LX_ETOOBIG */)
            abort();
    }
    check(body, size, &scan, new_model, sizeof(new_model) - 1);
    check(body, size, &scan, NULL, 0);
    return 0;
}
