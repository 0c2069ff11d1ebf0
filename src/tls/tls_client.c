/*
 * tls_client.c - the client context of one provider, and its session cache.
 *
 * Built on the control thread, shared by every worker. Verification is on unless the provider
 * says insecure_skip_verify: the chain must lead to a CA of the bundle and the leaf must carry
 * the host name (set per session). The cache keeps the last session per endpoint
 * ("host:port"), so the next connection to it from any worker resumes (a session ticket, or a
 * session id the server remembers) instead of paying a full handshake; it is touched at the
 * start and end of a handshake only, under a mutex.
 */
#include "tls/tls_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "tls/tls.h"
#include "tls/tls_int.h"

static void client_free(lx_tls_client_t *c)
{
    for (size_t i = 0; i < LX_TLS_CACHE_SLOTS; i++)
        mbedtls_ssl_session_free(&c->cache[i].session);
    mbedtls_ssl_config_free(&c->conf);
    mbedtls_x509_crt_free(&c->ca);
    mbedtls_x509_crt_free(&c->own.crt);
    mbedtls_pk_free(&c->own.pk);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int lx_tls_client_new(const lx_tls_client_opts_t *o, char *err, size_t cap, lx_tls_client_t **out)
{
    *out = NULL;
    lx_tls_client_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return LX_ENOMEM;
    atomic_init(&c->refs, 1);
    pthread_mutex_init(&c->lock, NULL);
    mbedtls_ssl_config_init(&c->conf);
    mbedtls_x509_crt_init(&c->ca);
    mbedtls_x509_crt_init(&c->own.crt);
    mbedtls_pk_init(&c->own.pk);
    for (size_t i = 0; i < LX_TLS_CACHE_SLOTS; i++)
        mbedtls_ssl_session_init(&c->cache[i].session);
    int rc = 0;
    if (!o->insecure_skip_verify) {
        rc = lx_tls_cert_load_ca(o->ca_file != NULL ? o->ca_file : LX_TLS_DEFAULT_CA_FILE, &c->ca,
                                 err, cap);
        if (rc != 0)
            goto fail;
    }
    if (o->client.cert != NULL || o->client.cert_pem != NULL) {
        rc = lx_tls_cert_load(&o->client, &c->own.crt, &c->own.pk, err, cap);
        if (rc != 0)
            goto fail;
        c->has_own = true;
    }
    rc = LX_ECONFIG;
    if (mbedtls_ssl_config_defaults(&c->conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                    MBEDTLS_SSL_PRESET_DEFAULT) != 0)
        goto fail_setup;
    lx_tls_conf_defaults(&c->conf);
    if (o->insecure_skip_verify) {
        mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_NONE);
    } else {
        mbedtls_ssl_conf_authmode(&c->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
        mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
    }
    if (c->has_own && mbedtls_ssl_conf_own_cert(&c->conf, &c->own.crt, &c->own.pk) != 0)
        goto fail_setup;
    mbedtls_ssl_conf_session_tickets(&c->conf, MBEDTLS_SSL_SESSION_TICKETS_ENABLED);
    *out = c;
    return 0;
fail_setup:
    snprintf(err, cap, "tls: cannot set up the client context");
fail:
    client_free(c);
    return rc;
}

lx_tls_client_t *lx_tls_client_ref(lx_tls_client_t *c)
{
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    return c;
}

void lx_tls_client_unref(lx_tls_client_t *c)
{
    if (c != NULL && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        client_free(c);
}

static lx_tls_cached_t *find(lx_tls_client_t *c, const char *key)
{
    for (size_t i = 0; i < LX_TLS_CACHE_SLOTS; i++) {
        if (strcmp(c->cache[i].key, key) == 0)
            return &c->cache[i];
    }
    return NULL;
}

void lx_tls_client_resume(lx_tls_client_t *c, const char *key, mbedtls_ssl_context *ssl)
{
    pthread_mutex_lock(&c->lock);
    lx_tls_cached_t *e = find(c, key);
    if (e != NULL)
        mbedtls_ssl_set_session(ssl, &e->session); /* copies it: the entry stays */
    pthread_mutex_unlock(&c->lock);
}

void lx_tls_client_save(lx_tls_client_t *c, const char *key, const mbedtls_ssl_context *ssl)
{
    mbedtls_ssl_session s;
    mbedtls_ssl_session_init(&s);
    if (mbedtls_ssl_get_session(ssl, &s) != 0) {
        mbedtls_ssl_session_free(&s);
        return;
    }
    pthread_mutex_lock(&c->lock);
    lx_tls_cached_t *e = find(c, key);
    if (e == NULL) {
        e = &c->cache[0];
        for (size_t i = 1; i < LX_TLS_CACHE_SLOTS; i++) {
            if (c->cache[i].stamp < e->stamp)
                e = &c->cache[i];
        }
        snprintf(e->key, sizeof(e->key), "%s", key);
    }
    mbedtls_ssl_session old = e->session;
    e->session = s; /* moved: the previous one is freed outside the lock */
    e->stamp = ++c->stamp;
    pthread_mutex_unlock(&c->lock);
    mbedtls_ssl_session_free(&old);
}

size_t lx_tls_client_cached(lx_tls_client_t *c)
{
    size_t n = 0;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < LX_TLS_CACHE_SLOTS; i++)
        n += c->cache[i].key[0] != '\0';
    pthread_mutex_unlock(&c->lock);
    return n;
}
