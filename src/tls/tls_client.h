/*
 * tls_client.h - the client side's shared context for one provider: trusted CAs, verification
 * policy, optional client certificate, ALPN, and a cache of the last session per endpoint so a
 * new connection resumes instead of paying a full handshake.
 *
 * Built on the control thread, shared by every worker; only the session cache changes after
 * creation, under a mutex taken at handshake time only (never per record).
 */
#ifndef LX_TLS_CLIENT_H
#define LX_TLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "tls/tls_cert.h"

typedef struct lx_tls_client lx_tls_client_t;

#define LX_TLS_DEFAULT_CA_FILE "/etc/ssl/certs/ca-certificates.crt"

typedef struct lx_tls_client_opts {
    const char *ca_file;       /* NULL: LX_TLS_DEFAULT_CA_FILE */
    bool insecure_skip_verify; /* no chain and no host name check (logged by the caller) */
    lx_tls_cert_pair_t client; /* optional client certificate: cert/cert_pem NULL for none */
} lx_tls_client_opts_t;

/* Builds a context. 0 and *out (refcount 1), or LX_ECONFIG with "<path>: <reason>" in <err>,
 * or LX_ENOMEM. */
int lx_tls_client_new(const lx_tls_client_opts_t *o, char *err, size_t cap, lx_tls_client_t **out);

lx_tls_client_t *lx_tls_client_ref(lx_tls_client_t *c);
void lx_tls_client_unref(lx_tls_client_t *c); /* NULL is a no-op */

/* Sessions cached (tests, metrics). */
size_t lx_tls_client_cached(lx_tls_client_t *c);

#endif
