/*
 * fuzz_body.c - libFuzzer target for the request body scan and splice.
 *
 * Scans arbitrary bytes and checks the direct scan against the reference scan
 * (check_reference()) and the recorded members (max_tokens, max_completion_tokens, user)
 * against core/json's reading (check_recorded()); whenever the scan accepts them, splices in a
 * fixed model (one that needs escaping) with include_usage on, and checks the planned body: it must
 * scan again, carry exactly the new model, no consumed member, and include_usage:true when
 * streaming. The scan itself is linear in the input whatever it holds (no input may take long:
 * libFuzzer's -timeout and the slow-unit report catch a shape that does).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "llm/body.h"
#include "llm/prefix.h"

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
    /* the recorded members are forwarded as they are */
    if (again.max_tokens != scan->max_tokens ||
        again.max_completion_tokens != scan->max_completion_tokens ||
        again.has_user != scan->has_user || again.user.len != scan->user.len ||
        memcmp(out + again.user.off, body + scan->user.off, scan->user.len) != 0)
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
        r.usage_include != scan->usage_include || r.max_tokens != scan->max_tokens ||
        r.max_completion_tokens != scan->max_completion_tokens || r.has_user != scan->has_user ||
        !same_span(scan->user, r.user, shift) || r.has_messages != scan->has_messages ||
        !same_span(scan->messages, r.messages, shift) || r.n_messages != scan->n_messages ||
        r.messages_last != (scan->messages_last ? scan->messages_last + shift : 0) ||
        r.has_prompt != scan->has_prompt || r.prompt_array != scan->prompt_array ||
        !same_span(scan->prompt, r.prompt, shift) || r.n_prompt != scan->n_prompt ||
        r.prompt_last != (scan->prompt_last ? scan->prompt_last + shift : 0) ||
        r.root_open != scan->root_open || r.kept != scan->kept ||
        (scan->kept > 0 && r.last_kept_end != scan->last_kept_end + shift))
        abort();
    free(ref);
}

/* A count as the scan must read it: digits only, saturated; -2 for anything else. */
static int64_t count_of(const char *p, size_t n)
{
    int64_t v = 0;
    if (n == 0)
        return -2;
    for (size_t k = 0; k < n; k++) {
        if (p[k] < '0' || p[k] > '9')
            return -2;
        int64_t d = p[k] - '0';
        v = v > (INT64_MAX - d) / 10 ? INT64_MAX : v * 10 + d;
    }
    return v;
}

/*
 * The recorded members of an accepted body, as core/json's tokens show them: max_tokens and
 * max_completion_tokens (-1 when absent or null, else digits only), user (a string's content,
 * or absent when null or missing). Keys are compared raw, as the scan does.
 */
static void check_recorded(const char *body, size_t size, const lx_body_scan_t *scan)
{
    lx_json_t j;
    lx_json_token_t t, k, v;
    int64_t max_tokens = -1, max_completion = -1;
    bool has_user = false;
    lx_body_span_t user = {0, 0};
    lx_json_init(&j, body, size, LX_BODY_MAX_DEPTH);
    if (lx_json_next(&j, &t) != LX_JSON_OBJECT)
        abort();
    while (lx_json_next(&j, &k) == LX_JSON_KEY) {
        lx_json_type_t type = lx_json_next(&j, &v);
        size_t n = k.end - k.start;
        const char *key = body + k.start;
        bool mt = n == 10 && memcmp(key, "max_tokens", 10) == 0;
        bool mct = n == 21 && memcmp(key, "max_completion_tokens", 21) == 0;
        if ((mt || mct) && type != LX_JSON_NULL) {
            int64_t c = type == LX_JSON_NUMBER ? count_of(body + v.start, v.end - v.start) : -2;
            if (c < 0) /* the scan accepted what it must refuse */
                abort();
            *(mt ? &max_tokens : &max_completion) = c;
        } else if (n == 4 && memcmp(key, "user", 4) == 0 && type != LX_JSON_NULL) {
            if (type != LX_JSON_STRING)
                abort();
            has_user = true;
            user.off = v.start;
            user.len = v.end - v.start;
        }
        if ((type == LX_JSON_OBJECT || type == LX_JSON_ARRAY) && !lx_json_skip(&j, &v, &t))
            abort();
    }
    if (max_tokens != scan->max_tokens || max_completion != scan->max_completion_tokens ||
        has_user != scan->has_user || user.off != scan->user.off || user.len != scan->user.len)
        abort();
}

/*
 * The prompt's spans lie in the body, its last element inside it, and the prefix hash over
 * them keeps its bounds: a key whenever there is a prompt (chain[0] once a block is whole), at
 * most LX_PREFIX_MAX_BLOCKS blocks, the stable ones among them, the key alone the same.
 */
static void check_prefix(const char *body, const lx_body_scan_t *scan)
{
    if (scan->has_messages &&
        (body[scan->messages.off] != '[' ||
         body[scan->messages.off + scan->messages.len - 1] != ']' ||
         (scan->n_messages > 0) != (scan->messages_last > scan->messages.off) ||
         scan->messages_last >= scan->messages.off + scan->messages.len))
        abort();
    if (scan->has_prompt && scan->prompt_array &&
        (body[scan->prompt.off] != '[' ||
         (scan->n_prompt > 0) != (scan->prompt_last > scan->prompt.off) ||
         scan->prompt_last >= scan->prompt.off + scan->prompt.len))
        abort();
    lx_prefix_t p, one;
    bool has = lx_prefix_of_body(body, scan, 7, LX_PREFIX_MAX_BLOCKS, &p);
    if (has != (scan->has_messages || scan->has_prompt) || (has ? p.key == 0 : p.key != 0))
        abort();
    if (!has)
        return;
    if (p.n_blocks > LX_PREFIX_MAX_BLOCKS ||
        p.n_blocks != (p.len / LX_PREFIX_BLOCK < 64 ? p.len / LX_PREFIX_BLOCK : 64) ||
        p.stable_blocks > p.n_blocks || (p.n_blocks > 0 && p.key != p.chain[0]) ||
        (p.stable_blocks > 0) != (p.stable != 0))
        abort();
    lx_prefix_of_body(body, scan, 7, 1, &one);
    if (one.key != p.key)
        abort();
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
    check_recorded(body, size, &scan);
    check_prefix(body, &scan);
    check(body, size, &scan, new_model, sizeof(new_model) - 1);
    check(body, size, &scan, NULL, 0);
    return 0;
}
