/*
 * fuzz_json.c - libFuzzer target for the JSON tokenizer (core/json).
 *
 * The first byte picks the depth limit (its low bits) and whether raw control characters in
 * strings are content (raw_controls, its top bit); the rest is the document. Reads it to the end
 * and checks what every token stream must satisfy: spans inside the input and in order, depths that
 * follow the brackets, keys only in objects and each followed by a value, brackets that match, a
 * bounded number of calls, and on success a document that is exactly one value; an error's offset
 * lies in the input. Then the same input is read again with the first container skipped by
 * lx_json_skip(), which must end the same way.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t max_depth = (data[0] & 0x7f) % 40;
    bool raw_controls = (data[0] & 0x80) != 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    lx_json_t j;
    lx_json_token_t t;
    lx_json_init(&j, p, n, max_depth);
    j.raw_controls = raw_controls;
    uint8_t kinds[64]; /* 'o' or 'a' per open container (max_depth < 40) */
    uint32_t depth = 0, prev_end = 0;
    size_t calls = 0, values = 0;
    bool want_value = false; /* a key was just read */
    lx_json_type_t first = LX_JSON_NONE;
    for (;;) {
        if (++calls > n + 2)
            abort(); /* every token takes at least one byte */
        lx_json_type_t type = lx_json_next(&j, &t);
        if (type == LX_JSON_NONE)
            break;
        if (first == LX_JSON_NONE)
            first = type;
        if (t.type != type || t.start > t.end || t.end > n || t.start < prev_end)
            abort();
        prev_end = t.end;
        switch (type) {
        case LX_JSON_OBJECT:
        case LX_JSON_ARRAY:
            if (t.depth != depth || depth >= max_depth ||
                p[t.start] != (type == LX_JSON_OBJECT ? '{' : '['))
                abort();
            kinds[depth++] = type == LX_JSON_OBJECT ? 'o' : 'a';
            want_value = false;
            values++;
            break;
        case LX_JSON_OBJECT_END:
        case LX_JSON_ARRAY_END:
            if (depth == 0 || want_value ||
                kinds[depth - 1] != (type == LX_JSON_OBJECT_END ? 'o' : 'a'))
                abort();
            depth--;
            if (t.depth != depth || p[t.start] != (type == LX_JSON_OBJECT_END ? '}' : ']'))
                abort();
            break;
        case LX_JSON_KEY:
            if (depth == 0 || kinds[depth - 1] != 'o' || want_value || t.depth != depth ||
                p[t.start - 1] != '"' || p[t.end] != '"')
                abort();
            want_value = true;
            break;
        default:
            if (t.depth != depth || (depth > 0 && kinds[depth - 1] == 'o' && !want_value))
                abort();
            if (type == LX_JSON_STRING && (p[t.start - 1] != '"' || p[t.end] != '"'))
                abort();
            if (type != LX_JSON_STRING && !lx_json_primitive_valid(p + t.start, t.end - t.start))
                abort();
            want_value = false;
            values++;
            break;
        }
    }
    if (lx_json_next(&j, &t) != LX_JSON_NONE)
        abort(); /* stays stopped */
    if (j.error == LX_JSON_OK) {
        if (depth != 0 || values == 0)
            abort();
    } else if (j.error_off > n || (j.error == LX_JSON_EEOF && j.error_off != n)) {
        abort();
    }

    /* skipping the first container ends where reading it token by token ends */
    lx_json_t k;
    lx_json_init(&k, p, n, max_depth);
    k.raw_controls = raw_controls;
    lx_json_token_t open, close;
    if (lx_json_next(&k, &open) == LX_JSON_OBJECT || open.type == LX_JSON_ARRAY) {
        if (lx_json_skip(&k, &open, &close)) {
            while (lx_json_next(&k, &t) != LX_JSON_NONE)
                ;
        }
        if (k.error != j.error || k.error_off != j.error_off)
            abort();
    }
    return 0;
}
