/*
 * body_splice.c - the upstream body planned as pieces (lx_body_splice()).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/status.h"
#include "core/str.h"
#include "llm/body_int.h"

/* One edit of the original body: replace body[off, off + len) by up to 3 texts. */
struct op {
    uint32_t off;
    uint32_t len;
    const char *text[3];
    size_t text_len[3];
};

static struct op *add_op(struct op *ops, size_t *n, uint32_t off, uint32_t len)
{
    struct op *o = &ops[(*n)++];
    memset(o, 0, sizeof(*o));
    o->off = off;
    o->len = len;
    return o;
}

static void op_text(struct op *o, const char *s, size_t len)
{
    for (int k = 0; k < 3; k++) {
        if (o->text[k] == NULL) {
            o->text[k] = s;
            o->text_len[k] = len;
            return;
        }
    }
}

#define TEXT(o, lit) op_text((o), (lit), sizeof(lit) - 1)

static int put_piece(lx_body_piece_t *pieces, size_t max, size_t *n, size_t *total, const char *ptr,
                     size_t len)
{
    if (len == 0)
        return 0;
    if (*n == max)
        return LX_ETOOBIG;
    pieces[*n].ptr = ptr;
    pieces[*n].len = len;
    (*n)++;
    *total += len;
    return 0;
}

/* The model edit: the value replaced by the escaped <esc>, or a "model" member added first,
 * followed by a comma when anything else stays. */
static void plan_model(struct op *ops, size_t *n_ops, const lx_body_scan_t *scan, const char *esc,
                       size_t esc_len)
{
    struct op *o;
    if (scan->has_model) {
        o = add_op(ops, n_ops, scan->model.off, scan->model.len);
        op_text(o, esc, esc_len);
        return;
    }
    o = add_op(ops, n_ops, scan->root_open + 1, 0);
    TEXT(o, "\"model\":\"");
    op_text(o, esc, esc_len);
    if (scan->kept > 0)
        TEXT(o, "\",");
    else
        TEXT(o, "\"");
}

/* include_usage:true for a streamed request without it (<head_model>: a "model" member was
 * added at the head). */
static void plan_include_usage(struct op *ops, size_t *n_ops, const lx_body_scan_t *scan,
                               bool head_model)
{
    struct op *o;
    if (scan->has_stream_options && scan->has_include_usage) {
        o = add_op(ops, n_ops, scan->include_usage_value.off, scan->include_usage_value.len);
        TEXT(o, "true");
    } else if (scan->has_stream_options) {
        o = add_op(ops, n_ops, scan->stream_options.off + 1, 0);
        if (scan->stream_options_members > 0)
            TEXT(o, "\"include_usage\":true,");
        else
            TEXT(o, "\"include_usage\":true");
    } else if (scan->stream_options_null) {
        o = add_op(ops, n_ops, scan->stream_options.off, scan->stream_options.len);
        TEXT(o, "{\"include_usage\":true}");
    } else if (scan->kept > 0) {
        o = add_op(ops, n_ops, scan->last_kept_end, 0);
        TEXT(o, ",\"stream_options\":{\"include_usage\":true}");
    } else {
        o = add_op(ops, n_ops, scan->root_open + 1, 0);
        if (head_model)
            TEXT(o, ",");
        TEXT(o, "\"stream_options\":{\"include_usage\":true}");
    }
}

/* Stable insertion sort by offset; at one offset insertions come before a replacement or
 * deletion starting there (an insertion at a member's end precedes the cut that follows). */
static void sort_ops(struct op *ops, size_t n_ops)
{
    for (size_t a = 1; a < n_ops; a++) {
        struct op tmp = ops[a];
        size_t b = a;
        while (b > 0 && (ops[b - 1].off > tmp.off ||
                         (ops[b - 1].off == tmp.off && ops[b - 1].len > 0 && tmp.len == 0))) {
            ops[b] = ops[b - 1];
            b--;
        }
        ops[b] = tmp;
    }
}

/* The pieces of <body> with the sorted <ops> applied; returns their number or an error. */
static int put_pieces(const char *body, size_t len, const struct op *ops, size_t n_ops,
                      lx_body_piece_t *pieces, size_t max_pieces, size_t *total_len)
{
    size_t n = 0, total = 0, cursor = 0;
    int rc;
    for (size_t a = 0; a < n_ops; a++) {
        if (ops[a].off < cursor || ops[a].off + (size_t)ops[a].len > len)
            return LX_EJSON; /* not the scan of this body */
        if ((rc = put_piece(pieces, max_pieces, &n, &total, body + cursor, ops[a].off - cursor)) !=
            0)
            return rc;
        for (int k = 0; k < 3 && ops[a].text[k] != NULL; k++)
            if ((rc = put_piece(pieces, max_pieces, &n, &total, ops[a].text[k],
                                ops[a].text_len[k])) != 0)
                return rc;
        cursor = ops[a].off + (size_t)ops[a].len;
    }
    if ((rc = put_piece(pieces, max_pieces, &n, &total, body + cursor, len - cursor)) != 0)
        return rc;
    *total_len = total;
    return (int)n;
}

int lx_body_splice(const char *body, size_t len, const lx_body_scan_t *scan, const char *model,
                   size_t model_len, bool add_include_usage, lx_body_piece_t *pieces,
                   size_t max_pieces, char *scratch, size_t scratch_size, size_t *total_len)
{
    struct op ops[12];
    size_t n_ops = 0;
    if (model != NULL) {
        size_t esc_len = lx_json_escaped_len(model, model_len);
        if (esc_len > scratch_size)
            return LX_ETOOBIG;
        lx_json_escape(scratch, scratch_size, model, model_len, NULL);
        plan_model(ops, &n_ops, scan, scratch, esc_len);
    }
    if (add_include_usage && scan->stream && !scan->include_usage)
        plan_include_usage(ops, &n_ops, scan, model != NULL && !scan->has_model);
    for (uint32_t k = 0; k < scan->n_cuts; k++)
        add_op(ops, &n_ops, scan->cuts[k].off, scan->cuts[k].len);
    sort_ops(ops, n_ops);
    return put_pieces(body, len, ops, n_ops, pieces, max_pieces, total_len);
}
