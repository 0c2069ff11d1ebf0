/*
 * tls_server.c - the server context of one TLS listen entry.
 *
 * Built once on the control thread (start, reload): the certificates are parsed and checked
 * against their keys here, never at handshake time, and the mbedtls_ssl_config is complete
 * before any worker sees it. Workers only read it; the ticket context is the one piece that
 * changes (key rotation), and mbedTLS guards it with its own mutex.
 */
#include "tls/tls_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "tls/tls.h"
#include "tls/tls_int.h"

/* SNI: the first certificate whose names cover the requested one; none: the default. */
static int on_sni(void *arg, mbedtls_ssl_context *ssl, const unsigned char *name, size_t len)
{
    lx_tls_server_t *s = arg;
    for (size_t i = 0; i < s->n_pairs; i++) {
        if (lx_tls_cert_matches(&s->pairs[i].crt, (const char *)name, len))
            return mbedtls_ssl_set_hs_own_cert(ssl, &s->pairs[i].crt, &s->pairs[i].pk);
    }
    return 0; /* keep the default certificate rather than refuse the handshake */
}

static void server_free(lx_tls_server_t *s)
{
    mbedtls_ssl_config_free(&s->conf);
    mbedtls_ssl_ticket_free(&s->ticket);
    for (size_t i = 0; s->pairs != NULL && i < s->n_pairs; i++) {
        mbedtls_x509_crt_free(&s->pairs[i].crt);
        mbedtls_pk_free(&s->pairs[i].pk);
    }
    free(s->pairs);
    free(s);
}

int lx_tls_server_new(const lx_tls_server_opts_t *o, char *err, size_t cap, lx_tls_server_t **out)
{
    *out = NULL;
    if (o->n_certs == 0) {
        snprintf(err, cap, "tls: at least one certificate is required");
        return LX_ECONFIG;
    }
    if (o->min_version != 0 && o->min_version != 12) {
        snprintf(err, cap, "tls: min_version %u.%u is not supported (mbedTLS 2.28 serves TLS 1.2)",
                 o->min_version / 10, o->min_version % 10);
        return LX_ECONFIG;
    }
    lx_tls_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return LX_ENOMEM;
    atomic_init(&s->refs, 1);
    mbedtls_ssl_config_init(&s->conf);
    mbedtls_ssl_ticket_init(&s->ticket);
    s->pairs = calloc(o->n_certs, sizeof(*s->pairs));
    int rc = LX_ENOMEM;
    if (s->pairs == NULL)
        goto fail;
    s->n_pairs = o->n_certs;
    for (size_t i = 0; i < o->n_certs; i++) {
        mbedtls_x509_crt_init(&s->pairs[i].crt);
        mbedtls_pk_init(&s->pairs[i].pk);
    }
    for (size_t i = 0; i < o->n_certs; i++) {
        rc = lx_tls_cert_load(&o->certs[i], &s->pairs[i].crt, &s->pairs[i].pk, err, cap);
        if (rc != 0)
            goto fail;
    }
    rc = LX_ETLS;
    if (mbedtls_ssl_config_defaults(&s->conf, MBEDTLS_SSL_IS_SERVER, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0)
        goto fail;
    lx_tls_conf_defaults(&s->conf);
    mbedtls_ssl_conf_authmode(&s->conf, MBEDTLS_SSL_VERIFY_NONE);
    if (mbedtls_ssl_conf_own_cert(&s->conf, &s->pairs[0].crt, &s->pairs[0].pk) != 0)
        goto fail;
    mbedtls_ssl_conf_sni(&s->conf, on_sni, s);
    uint32_t life = o->ticket_lifetime_s != 0 ? o->ticket_lifetime_s : 86400;
    if (mbedtls_ssl_ticket_setup(&s->ticket, lx_tls_rng, NULL, MBEDTLS_CIPHER_AES_256_GCM, life) !=
        0)
        goto fail;
    mbedtls_ssl_conf_session_tickets_cb(&s->conf, mbedtls_ssl_ticket_write,
                                        mbedtls_ssl_ticket_parse, &s->ticket);
    *out = s;
    return 0;
fail:
    if (rc == LX_ETLS)
        snprintf(err, cap, "tls: cannot set up the server context");
    else if (rc == LX_ENOMEM)
        snprintf(err, cap, "tls: out of memory");
    server_free(s);
    return rc == LX_ETLS ? LX_ECONFIG : rc;
}

lx_tls_server_t *lx_tls_server_ref(lx_tls_server_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void lx_tls_server_unref(lx_tls_server_t *s)
{
    if (s != NULL && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        server_free(s);
}
