/*
 * config_tls.c - the `tls` sections: a listen entry's server certificates (listen[i].tls) and a
 * provider's client side (providers[i].tls). The only parser file that calls the tls layer:
 * every certificate, key and CA file is loaded and checked while the document is walked, so a
 * bad file fails `llmux -t` with its path and position.
 */
#include <stdio.h>
#include <string.h>

#include "config/config_parse_int.h"
#include "core/core.h"
#include "tls/tls_cert.h"

/* A certificate and key pair at <cert_n>/<key_n> (either may be NULL: reported missing),
 * loaded and checked now so a bad file fails `llmux -t` with its path. */
static bool get_cert(parser_t *p, yaml_node_t *map, yaml_node_t *cert_n, yaml_node_t *key_n,
                     const char *where, lx_config_cert_t *out)
{
    char what[128];
    if (cert_n == NULL || key_n == NULL) {
        REPORT(p, map, "%s: `cert` and `key` go together", where);
        return false;
    }
    const char *cert = lx_cfg_scalar(p, cert_n, lx_cfg_join(what, sizeof(what), where, "cert"));
    const char *key = lx_cfg_scalar(p, key_n, lx_cfg_join(what, sizeof(what), where, "key"));
    if (cert == NULL || key == NULL)
        return false;
    lx_tls_cert_pair_t pair = {.cert = cert, .key = key};
    char err[512];
    if (lx_tls_cert_check(&pair, err, sizeof(err)) != 0) {
        REPORT(p, strstr(err, key) == err ? key_n : cert_n, "%s: %s", where, err);
        return false;
    }
    out->cert = lx_cfg_copy(p, cert);
    out->key = lx_cfg_copy(p, key);
    return out->cert != NULL && out->key != NULL;
}

void lx_cfg_parse_listen_tls(parser_t *p, lx_config_listen_t *l, yaml_node_t *n, const char *where)
{
    field_t f[] = {{"cert", false, NULL, NULL},
                   {"key", false, NULL, NULL},
                   {"certificates", false, NULL, NULL},
                   {"min_version", false, NULL, NULL}};
    char what[96], sub[128];
    if (!lx_cfg_read_map(p, n, where, f, LX_ARRAY_SIZE(f)))
        return;
    size_t extra = 0;
    if (f[2].value != NULL) {
        if (!lx_cfg_list(p, f[2].value, lx_cfg_join(what, sizeof(what), where, "certificates")))
            return;
        extra = lx_cfg_seq_len(f[2].value);
    }
    if (f[0].value == NULL && f[1].value == NULL && extra == 0) {
        REPORT(p, n, "%s: a certificate is required (`cert` and `key`, or `certificates`)", where);
        return;
    }
    lx_config_listen_tls_t *t = lx_cfg_alloc(p, 1, sizeof(*t));
    if (t == NULL)
        return;
    t->certs = lx_cfg_alloc(p, extra + 1, sizeof(*t->certs));
    if (t->certs == NULL)
        return;
    t->min_version = 12;
    bool ok = true;
    if (f[0].value != NULL || f[1].value != NULL)
        ok = get_cert(p, n, f[0].value, f[1].value, where, &t->certs[t->n_certs++]);
    for (size_t i = 0; i < extra; i++) {
        yaml_node_t *item = lx_cfg_node(p, f[2].value->data.sequence.items.start[i]);
        field_t g[] = {{"cert", true, NULL, NULL}, {"key", true, NULL, NULL}};
        snprintf(sub, sizeof(sub), "%s.certificates[%zu]", where, i);
        if (item == NULL || !lx_cfg_read_map(p, item, sub, g, LX_ARRAY_SIZE(g))) {
            ok = false;
            continue;
        }
        if (g[0].value == NULL || g[1].value == NULL ||
            !get_cert(p, item, g[0].value, g[1].value, sub, &t->certs[t->n_certs++]))
            ok = false;
    }
    if (f[3].value != NULL) {
        const char *v =
            lx_cfg_scalar(p, f[3].value, lx_cfg_join(what, sizeof(what), where, "min_version"));
        if (v != NULL && strcmp(v, "1.2") != 0) {
            REPORT(p, f[3].value,
                   "%s: '%s' is not supported: mbedTLS 2.28 serves TLS 1.2 (`1.2`, the "
                   "default); it has no TLS 1.3 server, and 1.0/1.1 are not offered",
                   what, v);
            ok = false;
        }
    }
    if (ok)
        l->tls = t;
}

void lx_cfg_parse_provider_tls(parser_t *p, lx_config_provider_t *pv, yaml_node_t *n,
                               const char *where)
{
    field_t f[] = {{"ca_file", false, NULL, NULL},
                   {"insecure_skip_verify", false, NULL, NULL},
                   {"cert", false, NULL, NULL},
                   {"key", false, NULL, NULL},
                   {"server_name", false, NULL, NULL}};
    char sub[64], what[96];
    snprintf(sub, sizeof(sub), "%s.tls", where);
    if (!lx_cfg_read_map(p, n, sub, f, LX_ARRAY_SIZE(f)))
        return;
    lx_config_provider_tls_t *t = &pv->tls;
    if (f[0].value != NULL) {
        const char *ca =
            lx_cfg_scalar(p, f[0].value, lx_cfg_join(what, sizeof(what), sub, "ca_file"));
        char err[512];
        if (ca != NULL && lx_tls_cert_check_ca(ca, err, sizeof(err)) != 0)
            REPORT(p, f[0].value, "%s: %s", what, err);
        else if (ca != NULL)
            t->ca_file = lx_cfg_copy(p, ca);
    }
    if (f[1].value != NULL)
        lx_cfg_get_bool(p, f[1].value, lx_cfg_join(what, sizeof(what), sub, "insecure_skip_verify"),
                        &t->insecure_skip_verify);
    if (f[2].value != NULL || f[3].value != NULL)
        get_cert(p, n, f[2].value, f[3].value, sub, &t->client);
    if (f[4].value != NULL) {
        const char *name =
            lx_cfg_scalar(p, f[4].value, lx_cfg_join(what, sizeof(what), sub, "server_name"));
        if (name != NULL && (name[0] == '\0' || strlen(name) > 253 || strchr(name, '/') != NULL))
            REPORT(p, f[4].value, "%s: expected a host name", what);
        else if (name != NULL)
            t->server_name = lx_cfg_copy(p, name);
    }
}
