/*
 * config_parse_int.h - what the parser's files share: the state of one parse, the key table of
 * a mapping, the node readers (config_node.c) and the section parsers that the document walk
 * (config_parse.c) calls. Not for use outside src/config/.
 *
 * Every reader and section parser reports a problem with REPORT() and goes on: none stops the
 * walk. Readers that return a value return NULL or false after reporting; section parsers fill
 * p->cfg and return nothing.
 */
#ifndef LX_CONFIG_PARSE_INT_H
#define LX_CONFIG_PARSE_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <yaml.h>

#include "config/config.h"
#include "config/config_arena.h"

#define MAX_WORKERS 256

typedef struct problem problem_t; /* one collected error (config_parse.c) */

typedef struct parser {
    const char *name;
    yaml_document_t *doc;
    lx_config_t *cfg;
    lx_config_arena_t *arena;
    problem_t *errors;
    size_t n_errors;
    size_t dropped; /* errors beyond MAX_ERRORS */
    bool oom;
    time_t now;
} parser_t;

/* One known key of a mapping, filled by lx_cfg_read_map(). */
typedef struct field {
    const char *key;
    bool required;
    yaml_node_t *key_node;
    yaml_node_t *value;
} field_t;

/* config_parse.c: */

/* Records an error at <mark> (0-based line and column in libyaml's marks). */
__attribute__((format(printf, 3, 4))) void lx_cfg_error_at(parser_t *p, const yaml_mark_t *mark,
                                                           const char *fmt, ...);

#define REPORT(p, node, ...) lx_cfg_error_at((p), &(node)->start_mark, __VA_ARGS__)

/* config_node.c: */

/* Arena storage and copies; a failure marks the parse out of memory and returns NULL. */
void *lx_cfg_alloc(parser_t *p, size_t n, size_t size);
char *lx_cfg_copy_n(parser_t *p, const char *s, size_t len);
char *lx_cfg_copy(parser_t *p, const char *s);

/* Text for messages: a printable, bounded rendering of user-written text into <buf>; "where.key"
 * (or "key" at the top level); " in " or " at the top level"; "a mapping", "a list", "a scalar". */
const char *lx_cfg_show(const char *s, char *buf, size_t size);
const char *lx_cfg_join(char *buf, size_t size, const char *where, const char *key);
const char *lx_cfg_in_where(const char *where);
const char *lx_cfg_kind(const yaml_node_t *n);

/* A plain empty, ~ or null scalar. */
bool lx_cfg_is_null(const yaml_node_t *n);

/* The node at <index> of the document, or NULL. */
yaml_node_t *lx_cfg_node(parser_t *p, int index);

/* The text of a scalar node, or NULL after an error naming <what>. */
const char *lx_cfg_scalar(parser_t *p, yaml_node_t *n, const char *what);

size_t lx_cfg_seq_len(const yaml_node_t *n);

/* A non-empty list node for <what>, or false after an error. */
bool lx_cfg_list(parser_t *p, yaml_node_t *n, const char *what);

/*
 * Matches the keys of mapping <n> against <fields>: unknown and repeated keys are errors, as
 * are missing required ones. Returns false (after an error) when <n> is not a mapping.
 */
bool lx_cfg_read_map(parser_t *p, yaml_node_t *n, const char *where, field_t *fields,
                     size_t n_fields);

/* Typed values: each reports a bad value naming <what> and leaves *out unchanged. */
bool lx_cfg_get_uint(parser_t *p, yaml_node_t *n, const char *what, uint64_t min, uint64_t max,
                     uint64_t *out);
/* A duration longer than 0s; the _or_zero one also takes 0s (timeouts.shutdown,
 * routing.session_ttl, health.probe_interval). */
void lx_cfg_get_duration(parser_t *p, yaml_node_t *n, const char *what, uint64_t *out);
void lx_cfg_get_duration_or_zero(parser_t *p, yaml_node_t *n, const char *what, uint64_t *out);
void lx_cfg_get_size(parser_t *p, yaml_node_t *n, const char *what, uint64_t min, uint64_t max,
                     uint64_t *out);
void lx_cfg_get_bool(parser_t *p, yaml_node_t *n, const char *what, bool *out);
/* An amount of USD read exactly into micro-dollars (lx_config_value_micros()). */
bool lx_cfg_get_micros(parser_t *p, yaml_node_t *n, const char *what, int64_t *out);

/* A name usable in headers, metrics and logs: [A-Za-z0-9._-], 1..64 characters; or NULL. */
const char *lx_cfg_get_name(parser_t *p, yaml_node_t *n, const char *what);

/* The sections, in the order config_parse.c walks them. */

/* config_server.c: */
void lx_cfg_parse_listen(parser_t *p, yaml_node_t *n);
void lx_cfg_parse_workers(parser_t *p, yaml_node_t *n);
void lx_cfg_parse_limits(parser_t *p, yaml_node_t *n);
void lx_cfg_parse_timeouts(parser_t *p, yaml_node_t *n);
void lx_cfg_parse_stream(parser_t *p, yaml_node_t *n);
void lx_cfg_parse_log(parser_t *p, yaml_node_t *n);

/* config_store.c: `store`; lx_cfg_store_path() resolves the default path when the file names
 * none (called after the walk). */
void lx_cfg_parse_store(parser_t *p, yaml_node_t *n);
void lx_cfg_store_path(parser_t *p);

/* config_tls.c: listen[i].tls into l->tls (set only when all of it is valid), and
 * providers[i].tls into pv->tls. */
void lx_cfg_parse_listen_tls(parser_t *p, lx_config_listen_t *l, yaml_node_t *n, const char *where);
void lx_cfg_parse_provider_tls(parser_t *p, lx_config_provider_t *pv, yaml_node_t *n,
                               const char *where);

/* config_provider.c: */
void lx_cfg_parse_providers(parser_t *p, yaml_node_t *n);

/* Index of the provider named <name> among the first <count>, or count. */
size_t lx_cfg_find_provider(const lx_config_t *cfg, size_t count, const char *name);

/* config_model.c: needs the providers parsed. */
void lx_cfg_parse_models(parser_t *p, yaml_node_t *n);

/* config_access.c: <n> is NULL when the file has no `auth` (an error, reported at <root>). */
void lx_cfg_parse_auth(parser_t *p, yaml_node_t *root, yaml_node_t *n);
void lx_cfg_parse_admin(parser_t *p, yaml_node_t *n);

/* config_routing.c: */
void lx_cfg_parse_routing(parser_t *p, yaml_node_t *n);
void lx_cfg_parse_health(parser_t *p, yaml_node_t *n);

#endif
