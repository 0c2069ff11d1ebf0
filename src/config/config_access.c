/*
 * config_access.c - who may call llmux: `auth` (`none`, or keys by name and sha256) and
 * `admin` (the admin key, whether /metrics needs it).
 */
#include <stdio.h>
#include <string.h>

#include "config/config_parse_int.h"
#include "config/config_value.h"
#include "core/core.h"

static void parse_key(parser_t *p, size_t index, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    field_t f[] = {{"name", true, NULL, NULL}, {"sha256", true, NULL, NULL}};
    char where[32], what[64];
    const char *name = NULL, *why;
    lx_config_key_t key;
    bool ok = true;

    snprintf(where, sizeof(where), "auth.keys[%zu]", index);
    if (!lx_cfg_read_map(p, n, where, f, 2))
        return;
    if (f[0].value != NULL) {
        name = lx_cfg_get_name(p, f[0].value, lx_cfg_join(what, sizeof(what), where, "name"));
        for (size_t i = 0; name != NULL && i < cfg->n_keys; i++) {
            if (strcmp(cfg->keys[i].name, name) == 0) {
                REPORT(p, f[0].value, "%s: duplicate key name '%s'", what, name);
                ok = false;
            }
        }
    }
    if (f[1].value != NULL) {
        const char *s =
            lx_cfg_scalar(p, f[1].value, lx_cfg_join(what, sizeof(what), where, "sha256"));
        if (s != NULL && lx_config_value_hex(s, key.digest, sizeof(key.digest), &why) != 0) {
            REPORT(p, f[1].value, "%s: expected 64 hex digits (the output of `llmux hash-key`): %s",
                   what, why);
            ok = false;
        } else if (s != NULL) {
            for (size_t i = 0; i < cfg->n_keys; i++) {
                if (memcmp(cfg->keys[i].digest, key.digest, sizeof(key.digest)) == 0) {
                    REPORT(p, f[1].value, "%s: the same key is already listed as '%s'", what,
                           cfg->keys[i].name);
                    ok = false;
                }
            }
        } else {
            ok = false;
        }
    }
    if (!ok || name == NULL || f[1].value == NULL)
        return;
    key.name = lx_cfg_copy(p, name);
    if (key.name != NULL)
        cfg->keys[cfg->n_keys++] = key;
}

void lx_cfg_parse_auth(parser_t *p, yaml_node_t *root, yaml_node_t *n)
{
    static const char hint[] = "set `auth: none` to run without keys, or list keys";
    lx_config_t *cfg = p->cfg;

    if (n == NULL) {
        REPORT(p, root, "no `auth` section: %s", hint);
        return;
    }
    if (n->type == YAML_SCALAR_NODE && strcmp((const char *)n->data.scalar.value, "none") == 0) {
        cfg->auth_none = true;
        return;
    }
    if (n->type != YAML_MAPPING_NODE) {
        REPORT(p, n, "auth: expected `none` or a mapping with `keys`: %s", hint);
        return;
    }
    field_t f[] = {{"keys", false, NULL, NULL}};
    if (!lx_cfg_read_map(p, n, "auth", f, 1))
        return;
    yaml_node_t *keys = f[0].value;
    if (keys == NULL || (keys->type == YAML_SEQUENCE_NODE && lx_cfg_seq_len(keys) == 0) ||
        lx_cfg_is_null(keys)) {
        REPORT(p, keys != NULL ? keys : n, "auth: no keys listed: %s", hint);
        return;
    }
    if (!lx_cfg_list(p, keys, "auth.keys"))
        return;
    cfg->keys = lx_cfg_alloc(p, lx_cfg_seq_len(keys), sizeof(*cfg->keys));
    for (size_t i = 0; cfg->keys != NULL && i < lx_cfg_seq_len(keys); i++)
        parse_key(p, i, lx_cfg_node(p, keys->data.sequence.items.start[i]));
}

void lx_cfg_parse_admin(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    field_t f[] = {{"sha256", false, NULL, NULL}, {"metrics_public", false, NULL, NULL}};
    const char *why;

    if (!lx_cfg_read_map(p, n, "admin", f, LX_ARRAY_SIZE(f)))
        return;
    if (f[0].value != NULL) {
        const char *s = lx_cfg_scalar(p, f[0].value, "admin.sha256");
        if (s != NULL &&
            lx_config_value_hex(s, cfg->admin_digest, sizeof(cfg->admin_digest), &why) != 0)
            REPORT(p, f[0].value,
                   "admin.sha256: expected 64 hex digits (the output of `llmux hash-key`): %s",
                   why);
        else if (s != NULL)
            cfg->admin_enabled = true;
    }
    if (f[1].value != NULL)
        lx_cfg_get_bool(p, f[1].value, "admin.metrics_public", &cfg->metrics_public);
}
