/*
 * tls_cert.h - loading and checking certificates, keys and CA bundles (PEM or DER files, or
 * PEM text), with messages that name the file and the fault.
 *
 * Used by the contexts (tls_server.c, tls_client.c) and by the configuration check, so a bad
 * file fails `llmux -t` and a reload the same way it would fail the start.
 */
#ifndef LX_TLS_CERT_H
#define LX_TLS_CERT_H

#include <stddef.h>

#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

/* A certificate chain and its private key: file paths, or PEM text when the path is NULL. */
typedef struct lx_tls_cert_pair {
    const char *cert; /* path of the PEM chain (leaf first) */
    const char *key;  /* path of the PEM private key (unencrypted) */
    const char *cert_pem;
    const char *key_pem;
} lx_tls_cert_pair_t;

/* Loads <p> into <crt> and <pk> (initialised by the caller) and checks that the key matches the
 * leaf certificate. 0, or LX_ECONFIG with "<path>: <what is wrong>" in <err>. */
int lx_tls_cert_load(const lx_tls_cert_pair_t *p, mbedtls_x509_crt *crt, mbedtls_pk_context *pk,
                     char *err, size_t cap);

/* Loads the CA bundle at <path> into <ca>. 0, or LX_ECONFIG with the reason in <err>. */
int lx_tls_cert_load_ca(const char *path, mbedtls_x509_crt *ca, char *err, size_t cap);

/* The checks of lx_tls_cert_load / lx_tls_cert_load_ca without keeping anything. */
int lx_tls_cert_check(const lx_tls_cert_pair_t *p, char *err, size_t cap);
int lx_tls_cert_check_ca(const char *path, char *err, size_t cap);

/* True when <crt> (a leaf) is valid for host name <name>: a DNS subjectAltName (one leading
 * "*." label matches one label) or, without DNS names, the common name. Case-insensitive. */
int lx_tls_cert_matches(const mbedtls_x509_crt *crt, const char *name, size_t len);

#endif
