/*
 * tls_server.h - the server side's shared context: certificates (several, chosen by SNI),
 * protocol and cipher policy, session-ticket keys.
 *
 * Built on the control thread from one `listen` entry's `tls` section, then shared read-only
 * by every worker (refcounted: a reload builds a new one for new connections while existing
 * sessions keep theirs).
 */
#ifndef LX_TLS_SERVER_H
#define LX_TLS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "tls/tls_cert.h"

typedef struct lx_tls_server lx_tls_server_t;

typedef struct lx_tls_server_opts {
    const lx_tls_cert_pair_t *certs; /* the first one also answers clients without SNI or with */
    size_t n_certs;                  /* ... a name no certificate carries; at least one */
    unsigned min_version;            /* 12 = TLS 1.2, the only one mbedTLS 2.28 serves well */
    uint32_t ticket_lifetime_s;      /* session tickets; 0 = 86400 */
} lx_tls_server_opts_t;

/* Builds a context. 0 and *out (refcount 1), or LX_ECONFIG with "<path>: <reason>" in <err>,
 * or LX_ENOMEM. */
int lx_tls_server_new(const lx_tls_server_opts_t *o, char *err, size_t cap, lx_tls_server_t **out);

/* Takes a reference (any thread). */
lx_tls_server_t *lx_tls_server_ref(lx_tls_server_t *s);

/* Drops a reference (any thread); frees at zero. NULL is a no-op. */
void lx_tls_server_unref(lx_tls_server_t *s);

#endif
