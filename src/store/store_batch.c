/*
 * store_batch.c - the virtual table `lx_batch` that one INSERT ... SELECT per transaction reads
 * the transaction's records from (store_thread.c: commit_batch).
 *
 * Why: a prepared INSERT run once per record pays SQLite's per-statement work for every row
 * (the VM's start and halt, a table cursor opened, a seek from the root to the leaf, closed
 * again, the bindings, the reset): about 2,600 of its 6,900 instructions a row (a standalone
 * program, 16 KiB pages, 1,000 rows a transaction). One statement over all the rows keeps one
 * cursor at the table's right edge, where SQLite appends without a seek: 4,300 a row.
 *
 * The table is eponymous (no CREATE VIRTUAL TABLE): its rows are s->batch[0, s->n_batch),
 * columns seq (the row's key), uh (the provider id's hash, NULL without one) and rec (the
 * record's JSON, store_record_json). It exists only on the store's connection and is read
 * only by the store's own statement, on the thread that filled the array.
 */
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct batch_cursor {
    sqlite3_vtab_cursor base;
    size_t i;
} batch_cursor_t;

typedef struct batch_vtab {
    sqlite3_vtab base;
    lx_store_t *s;
} batch_vtab_t;

static int b_connect(sqlite3 *db, void *aux, int argc, const char *const *argv, sqlite3_vtab **out,
                     char **err)
{
    (void)argc;
    (void)argv;
    (void)err;
    int rc = sqlite3_declare_vtab(db, "CREATE TABLE x(seq INTEGER, uh INTEGER, rec TEXT)");
    if (rc != SQLITE_OK)
        return rc;
    batch_vtab_t *v = sqlite3_malloc(sizeof(*v));
    if (v == NULL)
        return SQLITE_NOMEM;
    memset(v, 0, sizeof(*v));
    v->s = aux;
    *out = &v->base;
    return SQLITE_OK;
}

static int b_disconnect(sqlite3_vtab *v)
{
    sqlite3_free(v);
    return SQLITE_OK;
}

static int b_best_index(sqlite3_vtab *v, sqlite3_index_info *info)
{
    (void)v;
    info->estimatedCost = 1000;
    info->estimatedRows = 1000;
    return SQLITE_OK;
}

static int b_open(sqlite3_vtab *v, sqlite3_vtab_cursor **out)
{
    (void)v;
    batch_cursor_t *c = sqlite3_malloc(sizeof(*c));
    if (c == NULL)
        return SQLITE_NOMEM;
    memset(c, 0, sizeof(*c));
    *out = &c->base;
    return SQLITE_OK;
}

static int b_close(sqlite3_vtab_cursor *c)
{
    sqlite3_free(c);
    return SQLITE_OK;
}

/* The record of row <i> + 1 on its way while row <i> is written (the first pass over the
 * batch read it some rows ago: it may have left the cache again). */
static void b_prefetch(const lx_store_t *s, size_t i)
{
    if (i + 1 < s->n_batch)
        for (size_t o = 0; o < offsetof(lx_record_t, arena) + 256; o += 64)
            __builtin_prefetch((const char *)s->batch[i + 1].r + o);
}

static int b_filter(sqlite3_vtab_cursor *c, int idx, const char *idx_str, int argc,
                    sqlite3_value **argv)
{
    (void)idx;
    (void)idx_str;
    (void)argc;
    (void)argv;
    batch_cursor_t *bc = (batch_cursor_t *)c;
    bc->i = 0;
    b_prefetch(((batch_vtab_t *)c->pVtab)->s, 0);
    return SQLITE_OK;
}

static int b_next(sqlite3_vtab_cursor *c)
{
    batch_cursor_t *bc = (batch_cursor_t *)c;
    bc->i++;
    b_prefetch(((batch_vtab_t *)c->pVtab)->s, bc->i);
    return SQLITE_OK;
}

static int b_eof(sqlite3_vtab_cursor *c)
{
    const batch_cursor_t *bc = (const batch_cursor_t *)c;
    return bc->i >= ((batch_vtab_t *)c->pVtab)->s->n_batch;
}

static int b_column(sqlite3_vtab_cursor *c, sqlite3_context *ctx, int col)
{
    static _Thread_local char js[STORE_RECORD_JSON_MAX];
    const batch_cursor_t *bc = (const batch_cursor_t *)c;
    const store_batch_row_t *row = &((batch_vtab_t *)c->pVtab)->s->batch[bc->i];
    size_t ul;
    switch (col) {
    case 0:
        sqlite3_result_int64(ctx, (int64_t)row->seq);
        break;
    case 1:
        if ((ul = lx_record_len(row->r, LX_RF_UPSTREAM_ID)) > 0)
            sqlite3_result_int64(ctx, store_hash63(lx_record_str(row->r, LX_RF_UPSTREAM_ID), ul));
        else
            sqlite3_result_null(ctx);
        break;
    default:
        sqlite3_result_text(ctx, js, (int)store_record_json(row->r, row->named, js),
                            SQLITE_TRANSIENT);
        break;
    }
    return SQLITE_OK;
}

static int b_rowid(sqlite3_vtab_cursor *c, sqlite3_int64 *rowid)
{
    *rowid = (sqlite3_int64)((const batch_cursor_t *)c)->i;
    return SQLITE_OK;
}

static const sqlite3_module batch_module = {
    .iVersion = 0,
    .xCreate = NULL, /* eponymous only: no CREATE VIRTUAL TABLE makes one */
    .xConnect = b_connect,
    .xBestIndex = b_best_index,
    .xDisconnect = b_disconnect,
    .xDestroy = b_disconnect,
    .xOpen = b_open,
    .xClose = b_close,
    .xFilter = b_filter,
    .xNext = b_next,
    .xEof = b_eof,
    .xColumn = b_column,
    .xRowid = b_rowid,
};

int store_batch_register(lx_store_t *s)
{
    return sqlite3_create_module(s->db, "lx_batch", &batch_module, s);
}
