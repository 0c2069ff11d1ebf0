/*
 * tls_int.h - what the tls layer's files share: the contexts' layout and the helpers between
 * them. Not for other layers.
 */
#ifndef LX_TLS_INT_H
#define LX_TLS_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ticket.h>

#include "tls/tls_client.h"
#include "tls/tls_server.h"

typedef struct lx_tls_keypair {
    mbedtls_x509_crt crt;
    mbedtls_pk_context pk;
} lx_tls_keypair_t;

struct lx_tls_server {
    atomic_uint refs;
    mbedtls_ssl_config conf;           /* read-only once built: shared by every worker's sessions */
    mbedtls_ssl_ticket_context ticket; /* mbedTLS locks it itself (MBEDTLS_THREADING_C) */
    lx_tls_keypair_t *pairs;           /* [0] is the default certificate */
    size_t n_pairs;
};

#define LX_TLS_CACHE_SLOTS 32
#define LX_TLS_KEY_MAX     300

typedef struct lx_tls_cached {
    char key[LX_TLS_KEY_MAX]; /* "" for a free slot */
    mbedtls_ssl_session session;
    uint64_t stamp; /* last store; the oldest slot is replaced */
} lx_tls_cached_t;

struct lx_tls_client {
    atomic_uint refs;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca;
    lx_tls_keypair_t own; /* client certificate, when has_own */
    bool has_own;
    pthread_mutex_t lock; /* guards cache and stamp: taken at handshake start and end only */
    lx_tls_cached_t cache[LX_TLS_CACHE_SLOTS];
    uint64_t stamp;
};

/* Applies the policy every context shares: TLS 1.2 only, ECDHE with AEAD ciphers, modern
 * curves and hashes, the per-thread RNG, ALPN http/1.1. */
void lx_tls_conf_defaults(mbedtls_ssl_config *conf);

/* Puts the cached session for <key> into <ssl> (mbedtls_ssl_set_session). */
void lx_tls_client_resume(lx_tls_client_t *c, const char *key, mbedtls_ssl_context *ssl);

/* Stores the session of <ssl>'s completed handshake under <key>. */
void lx_tls_client_save(lx_tls_client_t *c, const char *key, const mbedtls_ssl_context *ssl);

#endif
