/*
 * pki.h - a throwaway test PKI, generated at test time with mbedTLS's own x509write API (no
 * key is ever committed): a CA, certificates it issues (for localhost/127.0.0.1, expired, for
 * another host, for SNI names, a client certificate) and a second, untrusted CA.
 *
 * Header-only (static inline), shared by the tls unit test, the TLS fuzz target and the
 * integration harness. EC P-256 keys: fast to make, accepted by OpenSSL, curl and Node.
 */
#ifndef LX_TEST_PKI_H
#define LX_TEST_PKI_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include "tls/tls.h"

typedef struct pki_cert {
    char cert_pem[4096];
    char key_pem[1024];
    char subject[128];
    mbedtls_pk_context key;
} pki_cert_t;

/* "YYYYMMDDHHMMSS" for now + <days>. */
static inline void pki_time(char out[16], long days)
{
    time_t t = time(NULL) + days * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 16, "%Y%m%d%H%M%S", &tm);
}

/* DER of a subjectAltName: dNSName entries, plus iPAddress 127.0.0.1 when <loopback>. */
static inline size_t pki_san(unsigned char *out, const char *const *dns, bool loopback)
{
    unsigned char body[512];
    size_t n = 0;
    for (size_t i = 0; dns != NULL && dns[i] != NULL; i++) {
        size_t l = strlen(dns[i]);
        body[n++] = 0x82; /* [2] dNSName */
        body[n++] = (unsigned char)l;
        memcpy(body + n, dns[i], l);
        n += l;
    }
    if (loopback) {
        static const unsigned char ip[] = {0x87, 4, 127, 0, 0, 1}; /* [7] iPAddress */
        memcpy(body + n, ip, sizeof(ip));
        n += sizeof(ip);
    }
    out[0] = 0x30; /* SEQUENCE */
    out[1] = (unsigned char)n;
    memcpy(out + 2, body, n);
    return n + 2;
}

/*
 * Makes a key and a certificate for <cn> valid from now+<from_days> to now+<to_days>, signed
 * by <issuer> (NULL: self-signed), a CA when <ca>. 0 or an mbedTLS code. Free with pki_free.
 */
static inline int pki_issue(pki_cert_t *c, const char *cn, const char *const *dns, bool loopback,
                            const pki_cert_t *issuer, bool ca, long from_days, long to_days)
{
    static unsigned serial_no = 1;
    memset(c, 0, sizeof(*c));
    mbedtls_pk_init(&c->key);
    snprintf(c->subject, sizeof(c->subject), "CN=%s,O=llmux test", cn);
    int rc = mbedtls_pk_setup(&c->key, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
    if (rc == 0)
        rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(c->key), lx_tls_rng, NULL);
    if (rc == 0)
        rc = mbedtls_pk_write_key_pem(&c->key, (unsigned char *)c->key_pem, sizeof(c->key_pem));
    if (rc != 0)
        return rc;
    mbedtls_x509write_cert w;
    mbedtls_x509write_crt_init(&w);
    mbedtls_mpi serial;
    mbedtls_mpi_init(&serial);
    mbedtls_mpi_lset(&serial, (mbedtls_mpi_sint)(serial_no++ + (unsigned)time(NULL) % 100000));
    char nb[16], na[16];
    pki_time(nb, from_days);
    pki_time(na, to_days);
    const pki_cert_t *iss = issuer != NULL ? issuer : c;
    mbedtls_x509write_crt_set_version(&w, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&w, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_subject_key(&w, &c->key);
    mbedtls_x509write_crt_set_issuer_key(&w, (mbedtls_pk_context *)&iss->key);
    rc = mbedtls_x509write_crt_set_subject_name(&w, c->subject);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_issuer_name(&w, iss->subject);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_serial(&w, &serial);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_validity(&w, nb, na);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_basic_constraints(&w, ca, -1);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_subject_key_identifier(&w);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_authority_key_identifier(&w);
    if (rc == 0)
        rc = mbedtls_x509write_crt_set_key_usage(&w, ca ? MBEDTLS_X509_KU_KEY_CERT_SIGN |
                                                              MBEDTLS_X509_KU_CRL_SIGN
                                                        : MBEDTLS_X509_KU_DIGITAL_SIGNATURE);
    if (rc == 0 && !ca && (dns != NULL || loopback)) {
        unsigned char san[600];
        size_t n = pki_san(san, dns, loopback);
        rc = mbedtls_x509write_crt_set_extension(&w, MBEDTLS_OID_SUBJECT_ALT_NAME,
                                                 MBEDTLS_OID_SIZE(MBEDTLS_OID_SUBJECT_ALT_NAME), 0,
                                                 san, n);
    }
    if (rc == 0)
        rc = mbedtls_x509write_crt_pem(&w, (unsigned char *)c->cert_pem, sizeof(c->cert_pem),
                                       lx_tls_rng, NULL);
    mbedtls_x509write_crt_free(&w);
    mbedtls_mpi_free(&serial);
    return rc;
}

static inline void pki_free(pki_cert_t *c)
{
    mbedtls_pk_free(&c->key);
}

/* Writes <c> as <dir>/<name>.pem and <dir>/<name>.key. 0 or -1. */
static inline int pki_write(const pki_cert_t *c, const char *dir, const char *name)
{
    char path[512];
    const char *what[2] = {c->cert_pem, c->key_pem};
    const char *ext[2] = {"pem", "key"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext[i]);
        FILE *f = fopen(path, "w");
        if (f == NULL)
            return -1;
        fputs(what[i], f);
        if (fclose(f) != 0)
            return -1;
    }
    return 0;
}

/* The whole test PKI. */
typedef struct pki {
    pki_cert_t ca, server, expired, wronghost, other_ca, other, sni, client;
} pki_t;

/*
 * Generates every certificate, and writes them into <dir> when not NULL: ca, server (localhost
 * and 127.0.0.1), expired, wronghost (wrong.example), other_ca, other (localhost, by other_ca),
 * sni (sni.test, *.wild.test), client. 0 or an error.
 */
static inline int pki_make(pki_t *p, const char *dir)
{
    static const char *const local[] = {"localhost", NULL};
    static const char *const wrong[] = {"wrong.example", NULL};
    static const char *const sni[] = {"sni.test", "*.wild.test", NULL};
    memset(p, 0, sizeof(*p));
    int rc = pki_issue(&p->ca, "llmux test CA", NULL, false, NULL, true, -2, 3650);
    if (rc == 0)
        rc = pki_issue(&p->server, "localhost", local, true, &p->ca, false, -1, 365);
    if (rc == 0)
        rc = pki_issue(&p->expired, "localhost", local, true, &p->ca, false, -30, -1);
    if (rc == 0)
        rc = pki_issue(&p->wronghost, "wrong.example", wrong, false, &p->ca, false, -1, 365);
    if (rc == 0)
        rc = pki_issue(&p->other_ca, "another CA", NULL, false, NULL, true, -2, 3650);
    if (rc == 0)
        rc = pki_issue(&p->other, "localhost", local, true, &p->other_ca, false, -1, 365);
    if (rc == 0)
        rc = pki_issue(&p->sni, "sni.test", sni, false, &p->ca, false, -1, 365);
    if (rc == 0)
        rc = pki_issue(&p->client, "llmux client", NULL, false, &p->ca, false, -1, 365);
    if (rc != 0 || dir == NULL)
        return rc;
    const pki_cert_t *all[] = {&p->ca,       &p->server, &p->expired, &p->wronghost,
                               &p->other_ca, &p->other,  &p->sni,     &p->client};
    const char *names[] = {"ca",       "server", "expired", "wronghost",
                           "other_ca", "other",  "sni",     "client"};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (pki_write(all[i], dir, names[i]) != 0)
            return -1;
    }
    return 0;
}

static inline void pki_dispose(pki_t *p)
{
    pki_cert_t *all[] = {&p->ca,       &p->server, &p->expired, &p->wronghost,
                         &p->other_ca, &p->other,  &p->sni,     &p->client};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        pki_free(all[i]);
}

#endif
