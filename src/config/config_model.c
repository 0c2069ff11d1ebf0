/*
 * config_model.c - the `models` list: ids, metadata, and each model's routes (provider,
 * upstream model, price, parameters); then the ids sorted into model_order for
 * lx_config_find_model(), where equal neighbours are reported as duplicates.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_parse_int.h"
#include "config/config_value.h"
#include "core/core.h"

/* A route's `price`: each value read twice from the same text, as a double (for existing users)
 * and exactly as µ$ per million tokens (what costs and budgets use). */
static void parse_price(parser_t *p, lx_config_route_t *r, yaml_node_t *n, const char *where)
{
    field_t f[] = {{"prompt", false, NULL, NULL}, {"completion", false, NULL, NULL}};
    double *slots[] = {&r->price_prompt, &r->price_completion};
    int64_t *micros[] = {&r->price_prompt_micros, &r->price_completion_micros};
    char sub[160], what[192];
    const char *why;

    snprintf(sub, sizeof(sub), "%.96s.price", where);
    if (!lx_cfg_read_map(p, n, sub, f, 2))
        return;
    for (size_t i = 0; i < 2; i++) {
        if (f[i].value == NULL)
            continue;
        const char *s =
            lx_cfg_scalar(p, f[i].value, lx_cfg_join(what, sizeof(what), sub, f[i].key));
        if (s == NULL)
            continue;
        if (lx_config_value_price(s, slots[i], &why) != 0 ||
            lx_config_value_micros(s, micros[i], &why) != 0)
            REPORT(p, f[i].value, "%s: %s", what, why);
    }
}

static void parse_route(parser_t *p, lx_config_model_t *m, const char *model_where, size_t index,
                        yaml_node_t *n)
{
    const lx_config_t *cfg = p->cfg;
    lx_config_route_t *r = &m->routes[m->n_routes];
    field_t f[] = {{"provider", true, NULL, NULL},
                   {"model", false, NULL, NULL},
                   {"price", false, NULL, NULL},
                   {"parameters", false, NULL, NULL}};
    char where[96], what[128], buf[80];
    bool ok = true;

    memset(r, 0, sizeof(*r));
    snprintf(where, sizeof(where), "%s.providers[%zu]", model_where, index);
    if (!lx_cfg_read_map(p, n, where, f, LX_ARRAY_SIZE(f)))
        return;
    if (f[0].value == NULL) {
        ok = false;
    } else {
        const char *name =
            lx_cfg_scalar(p, f[0].value, lx_cfg_join(what, sizeof(what), where, "provider"));
        if (name == NULL) {
            ok = false;
        } else {
            r->provider = lx_cfg_find_provider(cfg, cfg->n_providers, name);
            if (r->provider == cfg->n_providers) {
                REPORT(p, f[0].value, "unknown provider '%s'%s%s",
                       lx_cfg_show(name, buf, sizeof(buf)), lx_cfg_in_where(where), where);
                ok = false;
            }
        }
    }
    if (f[1].value != NULL) {
        const char *s =
            lx_cfg_scalar(p, f[1].value, lx_cfg_join(what, sizeof(what), where, "model"));
        r->upstream_model = s != NULL ? lx_cfg_copy(p, s) : NULL;
        ok = ok && r->upstream_model != NULL;
    } else if (m->id != NULL) {
        r->upstream_model = m->id;
    } else {
        ok = false;
    }
    if (f[2].value != NULL)
        parse_price(p, r, f[2].value, where);
    if (f[3].value != NULL &&
        lx_cfg_list(p, f[3].value, lx_cfg_join(what, sizeof(what), where, "parameters"))) {
        yaml_node_t *list = f[3].value;
        r->parameters = lx_cfg_alloc(p, lx_cfg_seq_len(list), sizeof(*r->parameters));
        for (size_t i = 0; r->parameters != NULL && i < lx_cfg_seq_len(list); i++) {
            yaml_node_t *item = lx_cfg_node(p, list->data.sequence.items.start[i]);
            const char *name = item != NULL ? lx_cfg_get_name(p, item, what) : NULL;
            if (name != NULL)
                r->parameters[r->n_parameters++] = lx_cfg_copy(p, name);
        }
    }
    if (!ok)
        return;
    for (size_t j = 0; j < m->n_routes; j++) {
        if (m->routes[j].provider == r->provider &&
            strcmp(m->routes[j].upstream_model, r->upstream_model) == 0) {
            REPORT(p, n, "%s: the same provider and model are listed twice", where);
            return;
        }
    }
    m->n_routes++;
}

/* A model while models are sorted by id. */
typedef struct model_ref {
    const char *id;
    size_t index;
    yaml_node_t *node; /* the id's node, for messages */
} model_ref_t;

/* Model ids are printed in JSON and matched against request bodies: printable, no quotes. */
static const char *get_model_id(parser_t *p, yaml_node_t *n, const char *what)
{
    const char *s = lx_cfg_scalar(p, n, what);
    if (s == NULL)
        return NULL;
    size_t len = strlen(s);
    for (size_t i = 0; i < len; i++) {
        if (s[i] <= 0x20 || s[i] >= 0x7f || s[i] == '"' || s[i] == '\\') {
            REPORT(p, n, "%s: a model id has no spaces, quotes, backslashes or control characters",
                   what);
            return NULL;
        }
    }
    if (len > 256) {
        REPORT(p, n, "%s: a model id has at most 256 characters", what);
        return NULL;
    }
    if ((len > 6 && strcmp(s + len - 6, ":nitro") == 0) ||
        (len > 6 && strcmp(s + len - 6, ":floor") == 0)) {
        REPORT(p, n, "%s: the suffixes :nitro and :floor are request options, not model ids", what);
        return NULL;
    }
    return s;
}

static void parse_model(parser_t *p, size_t index, yaml_node_t *n, model_ref_t *refs)
{
    lx_config_model_t *m = &p->cfg->models[index];
    field_t f[] = {{"id", true, NULL, NULL},
                   {"context_length", true, NULL, NULL},
                   {"created", false, NULL, NULL},
                   {"owned_by", false, NULL, NULL},
                   {"providers", true, NULL, NULL}};
    char where[32], what[64];
    uint64_t v;

    m->created = (int64_t)p->now;
    snprintf(where, sizeof(where), "models[%zu]", index);
    if (!lx_cfg_read_map(p, n, where, f, LX_ARRAY_SIZE(f)))
        return;
    if (f[0].value != NULL) {
        const char *id = get_model_id(p, f[0].value, lx_cfg_join(what, sizeof(what), where, "id"));
        if (id != NULL) {
            m->id = lx_cfg_copy(p, id);
            refs[index].node = f[0].value;
        }
    }
    if (f[1].value != NULL &&
        lx_cfg_get_uint(p, f[1].value, lx_cfg_join(what, sizeof(what), where, "context_length"), 1,
                        UINT32_MAX, &v))
        m->context_length = (uint32_t)v;
    if (f[2].value != NULL &&
        lx_cfg_get_uint(p, f[2].value, lx_cfg_join(what, sizeof(what), where, "created"), 0,
                        INT64_MAX, &v))
        m->created = (int64_t)v;
    if (f[3].value != NULL) {
        const char *s =
            lx_cfg_scalar(p, f[3].value, lx_cfg_join(what, sizeof(what), where, "owned_by"));
        if (s != NULL)
            m->owned_by = lx_cfg_copy(p, s);
    } else if (m->id != NULL) {
        const char *slash = strchr(m->id, '/');
        m->owned_by = slash != NULL && slash > m->id
                          ? lx_cfg_copy_n(p, m->id, (size_t)(slash - m->id))
                          : lx_cfg_copy(p, "llmux");
    }
    if (f[4].value != NULL &&
        lx_cfg_list(p, f[4].value, lx_cfg_join(what, sizeof(what), where, "providers"))) {
        yaml_node_t *list = f[4].value;
        m->routes = lx_cfg_alloc(p, lx_cfg_seq_len(list), sizeof(*m->routes));
        for (size_t i = 0; m->routes != NULL && i < lx_cfg_seq_len(list); i++)
            parse_route(p, m, where, i, lx_cfg_node(p, list->data.sequence.items.start[i]));
    }
}

static int compare_models(const void *a, const void *b)
{
    const model_ref_t *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c != 0 ? c : (x->index < y->index ? -1 : x->index > y->index);
}

void lx_cfg_parse_models(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    if (!lx_cfg_list(p, n, "models"))
        return;
    size_t count = lx_cfg_seq_len(n);
    cfg->models = lx_cfg_alloc(p, count, sizeof(*cfg->models));
    cfg->model_order = lx_cfg_alloc(p, count, sizeof(*cfg->model_order));
    model_ref_t *refs = calloc(count, sizeof(*refs));
    if (cfg->models == NULL || cfg->model_order == NULL || refs == NULL) {
        p->oom = true;
        free(refs);
        return;
    }
    cfg->n_models = count;
    for (size_t i = 0; i < count; i++)
        parse_model(p, i, lx_cfg_node(p, n->data.sequence.items.start[i]), refs);

    /* Sort by id for lx_config_find_model(); equal neighbours are duplicates. */
    size_t n_ids = 0;
    for (size_t i = 0; i < count; i++) {
        if (cfg->models[i].id != NULL)
            refs[n_ids++] = (model_ref_t){cfg->models[i].id, i, refs[i].node};
    }
    qsort(refs, n_ids, sizeof(*refs), compare_models);
    for (size_t i = 0; i < n_ids; i++) {
        cfg->model_order[i] = refs[i].index;
        if (i > 0 && strcmp(refs[i - 1].id, refs[i].id) == 0)
            REPORT(p, refs[i].node, "models[%zu].id: duplicate model id '%s'", refs[i].index,
                   refs[i].id);
    }
    free(refs);
}
