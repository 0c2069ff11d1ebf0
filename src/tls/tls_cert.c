/*
 * tls_cert.c - certificate, key and CA bundle loading with readable errors.
 *
 * Everything that reads a certificate file goes through here: the server and client contexts
 * at start and reload, and the configuration check (`llmux -t`), so a file that would fail the
 * start fails the check with the same words: its path and what is wrong with it.
 */
#include "tls/tls_cert.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <mbedtls/error.h>
#include <mbedtls/oid.h>

#include "core/status.h"

static const char *shown(const char *path, const char *what)
{
    return path != NULL ? path : what;
}

/* "<path>: <reason>" from an mbedTLS code. */
static int fail(char *err, size_t cap, const char *path, const char *reason, int rc)
{
    if (err != NULL && cap > 0) {
        char mb[128] = "";
        if (rc != 0)
            mbedtls_strerror(rc, mb, sizeof(mb));
        snprintf(err, cap, "%s: %s%s%s", path, reason, mb[0] != '\0' ? ": " : "", mb);
    }
    return LX_ECONFIG;
}

int lx_tls_cert_load(const lx_tls_cert_pair_t *p, mbedtls_x509_crt *crt, mbedtls_pk_context *pk,
                     char *err, size_t cap)
{
    const char *cn = shown(p->cert, "certificate");
    const char *kn = shown(p->key, "key");
    int rc;
    if (p->cert != NULL)
        rc = mbedtls_x509_crt_parse_file(crt, p->cert);
    else if (p->cert_pem != NULL)
        rc = mbedtls_x509_crt_parse(crt, (const unsigned char *)p->cert_pem,
                                    strlen(p->cert_pem) + 1);
    else
        return fail(err, cap, "tls", "a certificate is required", 0);
    if (rc == MBEDTLS_ERR_PK_FILE_IO_ERROR)
        return fail(err, cap, cn, "cannot read the certificate file", 0);
    if (rc != 0)
        return fail(err, cap, cn,
                    rc > 0 ? "some certificates in the file are invalid"
                           : "not a valid PEM or DER certificate",
                    rc > 0 ? 0 : rc);
    if (p->key != NULL)
        rc = mbedtls_pk_parse_keyfile(pk, p->key, NULL);
    else if (p->key_pem != NULL)
        rc = mbedtls_pk_parse_key(pk, (const unsigned char *)p->key_pem, strlen(p->key_pem) + 1,
                                  NULL, 0);
    else
        return fail(err, cap, cn, "a private key (`key`) is required with the certificate", 0);
    if (rc == MBEDTLS_ERR_PK_FILE_IO_ERROR)
        return fail(err, cap, kn, "cannot read the key file", 0);
    if (rc == MBEDTLS_ERR_PK_PASSWORD_REQUIRED)
        return fail(err, cap, kn, "the key is encrypted (a passphrase is not supported)", 0);
    if (rc != 0)
        return fail(err, cap, kn, "not a valid PEM or DER private key", rc);
    rc = mbedtls_pk_check_pair(&crt->pk, pk);
    if (rc != 0)
        return fail(err, cap, kn, "the key does not match the certificate", 0);
    return 0;
}

int lx_tls_cert_load_ca(const char *path, mbedtls_x509_crt *ca, char *err, size_t cap)
{
    int rc = mbedtls_x509_crt_parse_file(ca, path);
    if (rc == MBEDTLS_ERR_PK_FILE_IO_ERROR)
        return fail(err, cap, path, "cannot read the CA file", 0);
    /* a system bundle may hold a certificate mbedTLS cannot parse: the others still count */
    if (rc < 0 || ca->version == 0)
        return fail(err, cap, path, "no valid CA certificate in the file", rc < 0 ? rc : 0);
    return 0;
}

int lx_tls_cert_check(const lx_tls_cert_pair_t *p, char *err, size_t cap)
{
    mbedtls_x509_crt crt;
    mbedtls_pk_context pk;
    mbedtls_x509_crt_init(&crt);
    mbedtls_pk_init(&pk);
    int rc = lx_tls_cert_load(p, &crt, &pk, err, cap);
    mbedtls_x509_crt_free(&crt);
    mbedtls_pk_free(&pk);
    return rc;
}

int lx_tls_cert_check_ca(const char *path, char *err, size_t cap)
{
    mbedtls_x509_crt ca;
    mbedtls_x509_crt_init(&ca);
    int rc = lx_tls_cert_load_ca(path, &ca, err, cap);
    mbedtls_x509_crt_free(&ca);
    return rc;
}

static int name_matches(const unsigned char *pat, size_t plen, const char *name, size_t len)
{
    if (plen == len && strncasecmp((const char *)pat, name, len) == 0)
        return 1;
    /* "*.example.com" matches exactly one label in front of "example.com" */
    if (plen > 2 && pat[0] == '*' && pat[1] == '.') {
        const char *dot = memchr(name, '.', len);
        if (dot != NULL && dot != name) {
            size_t rest = len - (size_t)(dot - name);
            return rest == plen - 1 && strncasecmp((const char *)pat + 1, dot, rest) == 0;
        }
    }
    return 0;
}

int lx_tls_cert_matches(const mbedtls_x509_crt *crt, const char *name, size_t len)
{
    bool any_dns = false;
    if (crt->ext_types & MBEDTLS_X509_EXT_SUBJECT_ALT_NAME) {
        for (const mbedtls_x509_sequence *s = &crt->subject_alt_names; s != NULL; s = s->next) {
            if (s->buf.tag != (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_DNS_NAME))
                continue;
            any_dns = true;
            if (name_matches(s->buf.p, s->buf.len, name, len))
                return 1;
        }
    }
    if (any_dns)
        return 0;
    for (const mbedtls_x509_name *n = &crt->subject; n != NULL; n = n->next) {
        if (MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0 &&
            name_matches(n->val.p, n->val.len, name, len))
            return 1;
    }
    return 0;
}
