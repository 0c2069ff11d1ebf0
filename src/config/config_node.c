/*
 * config_node.c - reading one YAML node for the parser: scalars, lists, mappings matched
 * against a table of known keys, and the typed values every section uses (whole numbers,
 * durations, sizes, booleans, names), plus the arena copies and the bits of text messages are
 * made of. A reader reports what is wrong with the node (REPORT) and returns NULL or false; it
 * never stops the walk.
 */
#include <stdio.h>
#include <string.h>

#include "config/config_arena.h"
#include "config/config_parse_int.h"
#include "config/config_value.h"

/* Arena helpers: a failure marks the parse as out of memory and returns NULL. */
void *lx_cfg_alloc(parser_t *p, size_t n, size_t size)
{
    void *mem = lx_config_arena_alloc(p->arena, n, size);
    if (mem == NULL)
        p->oom = true;
    return mem;
}

char *lx_cfg_copy_n(parser_t *p, const char *s, size_t len)
{
    char *copy = lx_config_arena_strndup(p->arena, s, len);
    if (copy == NULL)
        p->oom = true;
    return copy;
}

char *lx_cfg_copy(parser_t *p, const char *s)
{
    return lx_cfg_copy_n(p, s, strlen(s));
}

/* A printable, bounded rendering of user-written text (a key, a name) for messages. */
const char *lx_cfg_show(const char *s, char *buf, size_t size)
{
    size_t n = 0, i = 0;
    for (; s[i] != '\0' && n + 4 < size; i++)
        buf[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    if (s[i] != '\0') {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* "where.key", or "key" at the top level. */
const char *lx_cfg_join(char *buf, size_t size, const char *where, const char *key)
{
    snprintf(buf, size, "%s%s%s", where, where[0] != '\0' ? "." : "", key);
    return buf;
}

const char *lx_cfg_in_where(const char *where)
{
    return where[0] != '\0' ? " in " : " at the top level";
}

const char *lx_cfg_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    default:
        return "a scalar";
    }
}

bool lx_cfg_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

yaml_node_t *lx_cfg_node(parser_t *p, int index)
{
    return yaml_document_get_node(p->doc, index);
}

/* The text of a scalar node, or NULL after an error naming <what>. */
const char *lx_cfg_scalar(parser_t *p, yaml_node_t *n, const char *what)
{
    if (n->type != YAML_SCALAR_NODE) {
        REPORT(p, n, "%s: expected a value, got %s", what, lx_cfg_kind(n));
        return NULL;
    }
    if (lx_cfg_is_null(n)) {
        REPORT(p, n, "%s: missing value", what);
        return NULL;
    }
    if (strlen((const char *)n->data.scalar.value) != n->data.scalar.length) {
        REPORT(p, n, "%s: contains a NUL character", what);
        return NULL;
    }
    return (const char *)n->data.scalar.value;
}

size_t lx_cfg_seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

/* A non-empty list node for <what>, or false after an error. */
bool lx_cfg_list(parser_t *p, yaml_node_t *n, const char *what)
{
    if (n->type != YAML_SEQUENCE_NODE) {
        REPORT(p, n, "%s: expected a list, got %s", what,
               lx_cfg_is_null(n) ? "nothing" : lx_cfg_kind(n));
        return false;
    }
    if (lx_cfg_seq_len(n) == 0) {
        REPORT(p, n, "%s: the list is empty", what);
        return false;
    }
    return true;
}

/*
 * Matches the keys of mapping <n> against <fields>: unknown and repeated keys are errors, as
 * are missing required ones. Returns false (after an error) when <n> is not a mapping.
 */
bool lx_cfg_read_map(parser_t *p, yaml_node_t *n, const char *where, field_t *fields,
                     size_t n_fields)
{
    char buf[80];

    if (n->type != YAML_MAPPING_NODE) {
        REPORT(p, n, "%s: expected a mapping, got %s",
               where[0] != '\0' ? where : "the configuration",
               lx_cfg_is_null(n) ? "nothing" : lx_cfg_kind(n));
        return false;
    }
    for (yaml_node_pair_t *pair = n->data.mapping.pairs.start; pair < n->data.mapping.pairs.top;
         pair++) {
        yaml_node_t *k = lx_cfg_node(p, pair->key), *v = lx_cfg_node(p, pair->value);
        if (k == NULL || v == NULL)
            continue;
        if (k->type != YAML_SCALAR_NODE) {
            REPORT(p, k, "keys must be plain names%s%s", lx_cfg_in_where(where), where);
            continue;
        }
        const char *key = (const char *)k->data.scalar.value;
        size_t i = 0;
        while (i < n_fields && strcmp(fields[i].key, key) != 0)
            i++;
        if (i == n_fields) {
            REPORT(p, k, "unknown key '%s'%s%s", lx_cfg_show(key, buf, sizeof(buf)),
                   lx_cfg_in_where(where), where);
        } else if (fields[i].value != NULL) {
            REPORT(p, k, "duplicate key '%s'%s%s (first at line %zu)", fields[i].key,
                   lx_cfg_in_where(where), where, fields[i].key_node->start_mark.line + 1);
        } else {
            fields[i].key_node = k;
            fields[i].value = v;
        }
    }
    for (size_t i = 0; i < n_fields; i++) {
        if (fields[i].required && fields[i].value == NULL)
            REPORT(p, n, "missing required key '%s'%s%s", fields[i].key, lx_cfg_in_where(where),
                   where);
    }
    return true;
}

bool lx_cfg_get_uint(parser_t *p, yaml_node_t *n, const char *what, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    const char *why, *s = lx_cfg_scalar(p, n, what);
    if (s == NULL)
        return false;
    if (lx_config_value_uint(s, min, max, out, &why) != 0) {
        REPORT(p, n, "%s: %s (expected %llu to %llu)", what, why, (unsigned long long)min,
               (unsigned long long)max);
        return false;
    }
    return true;
}

/* A duration in milliseconds (0s included), or false after an error. */
static bool duration(parser_t *p, yaml_node_t *n, const char *what, uint64_t *ms)
{
    const char *why, *s = lx_cfg_scalar(p, n, what);
    if (s == NULL)
        return false;
    if (lx_config_value_duration(s, ms, &why) != 0) {
        REPORT(p, n, "%s: %s", what, why);
        return false;
    }
    return true;
}

void lx_cfg_get_duration(parser_t *p, yaml_node_t *n, const char *what, uint64_t *out)
{
    uint64_t ms;
    if (!duration(p, n, what, &ms))
        return;
    if (ms == 0) {
        REPORT(p, n, "%s: must be longer than 0s", what);
        return;
    }
    *out = ms;
}

void lx_cfg_get_duration_or_zero(parser_t *p, yaml_node_t *n, const char *what, uint64_t *out)
{
    uint64_t ms;
    if (duration(p, n, what, &ms))
        *out = ms;
}

bool lx_cfg_get_micros(parser_t *p, yaml_node_t *n, const char *what, int64_t *out)
{
    const char *why, *s = lx_cfg_scalar(p, n, what);
    if (s == NULL)
        return false;
    if (lx_config_value_micros(s, out, &why) != 0) {
        REPORT(p, n, "%s: %s", what, why);
        return false;
    }
    return true;
}

void lx_cfg_get_size(parser_t *p, yaml_node_t *n, const char *what, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    const char *why, *s = lx_cfg_scalar(p, n, what);
    uint64_t bytes;
    char lo[32], hi[32];
    if (s == NULL)
        return;
    if (lx_config_value_size(s, &bytes, &why) != 0) {
        REPORT(p, n, "%s: %s", what, why);
        return;
    }
    if (bytes < min || bytes > max) {
        lx_config_value_format_size(min, lo, sizeof(lo));
        lx_config_value_format_size(max, hi, sizeof(hi));
        REPORT(p, n, "%s: must be from %s to %s", what, lo, hi);
        return;
    }
    *out = bytes;
}

void lx_cfg_get_bool(parser_t *p, yaml_node_t *n, const char *what, bool *out)
{
    const char *s = lx_cfg_scalar(p, n, what);
    if (s == NULL)
        return;
    if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 || strcmp(s, "on") == 0)
        *out = true;
    else if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0 || strcmp(s, "off") == 0)
        *out = false;
    else
        REPORT(p, n, "%s: expected true or false", what);
}

/* A name usable in headers, metrics and logs: [A-Za-z0-9._-], 1..64 characters. */
const char *lx_cfg_get_name(parser_t *p, yaml_node_t *n, const char *what)
{
    const char *s = lx_cfg_scalar(p, n, what);
    if (s == NULL)
        return NULL;
    size_t len = strlen(s);
    if (len > 64 ||
        strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != len) {
        REPORT(p, n, "%s: names use letters, digits, '.', '_' and '-' (at most 64)", what);
        return NULL;
    }
    return s;
}
