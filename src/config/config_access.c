/*
 * config_access.c - who may call llmux: `auth` (`none`, or keys by name and sha256) and
 * `admin` (the admin key, the named management keys, whether /metrics needs the admin key).
 * Every key appears once: names and digests are unique within each list, and a management key
 * (admin.sha256, admin.keys) is never also a client key (auth.keys), which `auth` being read
 * first lets the admin keys check.
 */
#include <stdio.h>
#include <string.h>

#include "config/config_parse_int.h"
#include "config/config_value.h"
#include "core/core.h"

/* A list of keys being read: auth.keys or admin.keys. */
struct key_list {
    const char *where; /* "auth.keys" or "admin.keys" */
    lx_config_key_t *keys;
    size_t *n;
};

/* The key of <cfg->keys> (auth) with this digest, or NULL. */
static const lx_config_key_t *auth_key_of(const lx_config_t *cfg, const uint8_t *digest)
{
    for (size_t i = 0; i < cfg->n_keys; i++) {
        if (memcmp(cfg->keys[i].digest, digest, 32) == 0)
            return &cfg->keys[i];
    }
    return NULL;
}

/* A management key's digest at <n> is no auth key's: false after an error naming both. */
static bool not_an_auth_key(parser_t *p, yaml_node_t *n, const char *what, const char *name,
                            const uint8_t *digest)
{
    const lx_config_key_t *k = auth_key_of(p->cfg, digest);
    if (k == NULL)
        return true;
    REPORT(p, n,
           "%s: management key '%s' is also the auth key '%s' (auth.keys): a key is either a "
           "management key or a client key",
           what, name, k->name);
    return false;
}

/* The digest at <n> (64 hex digits) into <digest>, unique in <list>; false after an error. */
static bool parse_digest(parser_t *p, const struct key_list *list, yaml_node_t *n, const char *what,
                         uint8_t *digest)
{
    const char *why, *s = lx_cfg_scalar(p, n, what);
    if (s == NULL)
        return false;
    if (lx_config_value_hex(s, digest, 32, &why) != 0) {
        REPORT(p, n, "%s: expected 64 hex digits (the output of `llmux hash-key`): %s", what, why);
        return false;
    }
    for (size_t i = 0; i < *list->n; i++) {
        if (memcmp(list->keys[i].digest, digest, 32) == 0) {
            REPORT(p, n, "%s: the same key is already listed as '%s'", what, list->keys[i].name);
            return false;
        }
    }
    return true;
}

/* auth.keys[i].priority: interactive (the default) or batch. */
static bool parse_priority(parser_t *p, yaml_node_t *n, const char *what, uint8_t *out)
{
    const char *s = lx_cfg_scalar(p, n, what);
    if (s != NULL && strcmp(s, "interactive") == 0)
        *out = LX_CONFIG_PRIORITY_INTERACTIVE;
    else if (s != NULL && strcmp(s, "batch") == 0)
        *out = LX_CONFIG_PRIORITY_BATCH;
    else if (s != NULL)
        REPORT(p, n, "%s: expected interactive or batch", what);
    return s != NULL && (strcmp(s, "interactive") == 0 || strcmp(s, "batch") == 0);
}

static void parse_key(parser_t *p, const struct key_list *list, size_t index, yaml_node_t *n)
{
    field_t f[] = {
        {"name", true, NULL, NULL}, {"sha256", true, NULL, NULL}, {"priority", false, NULL, NULL}};
    char where[32], what[64];
    const char *name = NULL;
    lx_config_key_t key = {0};
    bool ok = true;
    bool client = list->keys == p->cfg->keys; /* auth.keys: priority applies */

    snprintf(where, sizeof(where), "%s[%zu]", list->where, index);
    if (!lx_cfg_read_map(p, n, where, f, client ? 3 : 2))
        return;
    if (f[2].value != NULL)
        ok = parse_priority(p, f[2].value, lx_cfg_join(what, sizeof(what), where, "priority"),
                            &key.priority);
    if (f[0].value != NULL) {
        name = lx_cfg_get_name(p, f[0].value, lx_cfg_join(what, sizeof(what), where, "name"));
        for (size_t i = 0; name != NULL && i < *list->n; i++) {
            if (strcmp(list->keys[i].name, name) == 0) {
                REPORT(p, f[0].value, "%s: duplicate key name '%s'", what, name);
                ok = false;
            }
        }
    }
    if (f[1].value != NULL) {
        lx_cfg_join(what, sizeof(what), where, "sha256");
        ok = parse_digest(p, list, f[1].value, what, key.digest) && ok;
        if (ok && name != NULL && list->keys != p->cfg->keys)
            ok = not_an_auth_key(p, f[1].value, what, name, key.digest);
    }
    if (!ok || name == NULL || f[1].value == NULL)
        return;
    key.name = lx_cfg_copy(p, name);
    if (key.name != NULL)
        list->keys[(*list->n)++] = key;
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
    struct key_list list = {"auth.keys", cfg->keys, &cfg->n_keys};
    for (size_t i = 0; cfg->keys != NULL && i < lx_cfg_seq_len(keys); i++)
        parse_key(p, &list, i, lx_cfg_node(p, keys->data.sequence.items.start[i]));
}

/* admin.sha256: the management key named "admin", first of admin_keys. */
static void parse_admin_digest(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    struct key_list list = {"admin", cfg->admin_keys, &cfg->n_admin_keys};
    lx_config_key_t *k = &cfg->admin_keys[0];

    if (!parse_digest(p, &list, n, "admin.sha256", k->digest) ||
        !not_an_auth_key(p, n, "admin.sha256", "admin", k->digest))
        return;
    k->name = lx_cfg_copy(p, "admin");
    if (k->name == NULL)
        return;
    memcpy(cfg->admin_digest, k->digest, sizeof(cfg->admin_digest));
    cfg->admin_enabled = true;
    cfg->n_admin_keys = 1;
}

void lx_cfg_parse_admin(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    field_t f[] = {{"sha256", false, NULL, NULL},
                   {"metrics_public", false, NULL, NULL},
                   {"keys", false, NULL, NULL}};

    if (!lx_cfg_read_map(p, n, "admin", f, LX_ARRAY_SIZE(f)))
        return;
    yaml_node_t *keys = f[2].value;
    bool listed = keys != NULL && lx_cfg_list(p, keys, "admin.keys");
    size_t room = (f[0].value != NULL ? 1 : 0) + (listed ? lx_cfg_seq_len(keys) : 0);
    if (room > 0)
        cfg->admin_keys = lx_cfg_alloc(p, room, sizeof(*cfg->admin_keys));
    if (cfg->admin_keys != NULL && f[0].value != NULL)
        parse_admin_digest(p, f[0].value);
    struct key_list list = {"admin.keys", cfg->admin_keys, &cfg->n_admin_keys};
    for (size_t i = 0; listed && cfg->admin_keys != NULL && i < lx_cfg_seq_len(keys); i++)
        parse_key(p, &list, i, lx_cfg_node(p, keys->data.sequence.items.start[i]));
    if (f[1].value != NULL)
        lx_cfg_get_bool(p, f[1].value, "admin.metrics_public", &cfg->metrics_public);
}
