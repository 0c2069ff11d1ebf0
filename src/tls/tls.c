/*
 * tls.c - one TLS session: ciphertext in, plaintext out, and back.
 *
 *   lx_tls_feed(ciphertext slice) ─> input queue ─> bio_recv ─> mbedTLS record layer
 *   lx_tls_read(dst)   <─ mbedtls_ssl_read: decrypts, copies the plaintext into dst
 *   lx_tls_write(src)  ─> mbedtls_ssl_write: encrypts ─> bio_send ─> output chunks
 *   lx_tls_out()       <─ output queue: slices of the ciphertext chunks, to write as they are
 *
 * mbedTLS 2.28 keeps each record in its own buffer (ssl->in_buf, ssl->out_buf) and en/decrypts
 * it in place there, so bio_recv and bio_send move bytes between those buffers and the chunks;
 * the plaintext goes straight between mbedTLS's record buffer and the caller's buffer. The
 * output chunks are appended to in a shared slot (one per thread), so a session that is not
 * sending holds no chunk, and a session whose input queue is empty holds none either.
 */
#include "tls/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/error.h>

#include "core/core.h"
#include "core/status.h"
#include "tls/tls_int.h"

#define IN_MAX 8
/* A chunk with less room than this is not worth starting a record in. */
#define MIN_OUT_ROOM 512
/* Free output slots lx_tls_write keeps for one record (16 KiB + overhead spans up to 3). */
#define SLOTS_PER_RECORD 3
#define RECORD_MAX       16384

struct lx_tls {
    mbedtls_ssl_context ssl;
    lx_tls_server_t *server; /* one of the two, referenced */
    lx_tls_client_t *client;
    char *session_key; /* client: the cache entry of its endpoint, or NULL */
    lx_buf_pool_t *pool;
    lx_buf_t **spare; /* the chunk output is appended to (shared slot, or own_spare) */
    lx_buf_t *own_spare;
    lx_slice_t in[IN_MAX]; /* queued ciphertext, in order; in[0] is partly consumed */
    unsigned n_in;
    lx_slice_t out[LX_TLS_OUT_MAX]; /* ciphertext to send, in order */
    unsigned n_out;
    size_t out_bytes;
    int error; /* sticky failure (a project code) */
    int mbed_error;
    bool ready;
    bool full_handshake; /* a certificate was sent: not a resumption */
};

/* --- the random generator -------------------------------------------------------------------- */

static int entropy(void *ctx, unsigned char *out, size_t len)
{
    (void)ctx;
    while (len > 0) {
        ssize_t n = getrandom(out, len, 0);
        if (n <= 0)
            return MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
        out += n;
        len -= (size_t)n;
    }
    return 0;
}

int lx_tls_rng(void *ctx, unsigned char *out, size_t len)
{
    /* One generator per thread: workers never contend for it. Its state holds no heap memory,
     * so a thread that ends leaves nothing behind. */
    static _Thread_local mbedtls_ctr_drbg_context drbg;
    static _Thread_local bool seeded;
    (void)ctx;
    if (!seeded) {
        static const unsigned char pers[] = "llmux tls";
        mbedtls_ctr_drbg_init(&drbg);
        if (mbedtls_ctr_drbg_seed(&drbg, entropy, NULL, pers, sizeof(pers) - 1) != 0)
            return MBEDTLS_ERR_CTR_DRBG_ENTROPY_SOURCE_FAILED;
        seeded = true;
    }
    return mbedtls_ctr_drbg_random(&drbg, out, len);
}

/* --- shared policy --------------------------------------------------------------------------- */

/* ECDHE key exchange (forward secrecy) with AEAD ciphers only. */
static const int ciphersuites[] = {
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    0,
};

static const mbedtls_ecp_group_id curves[] = {
    MBEDTLS_ECP_DP_CURVE25519,
    MBEDTLS_ECP_DP_SECP256R1,
    MBEDTLS_ECP_DP_SECP384R1,
    MBEDTLS_ECP_DP_NONE,
};

static const int sig_hashes[] = {
    MBEDTLS_MD_SHA256,
    MBEDTLS_MD_SHA384,
    MBEDTLS_MD_SHA512,
    MBEDTLS_MD_NONE,
};

static const char *alpn[] = {"http/1.1", NULL};

void lx_tls_conf_defaults(mbedtls_ssl_config *conf)
{
    mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_ciphersuites(conf, ciphersuites);
    mbedtls_ssl_conf_curves(conf, curves);
    mbedtls_ssl_conf_sig_hashes(conf, sig_hashes);
    mbedtls_ssl_conf_rng(conf, lx_tls_rng, NULL);
    mbedtls_ssl_conf_alpn_protocols(conf, alpn);
    mbedtls_ssl_conf_renegotiation(conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);
}

/* --- bio ------------------------------------------------------------------------------------- */

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    lx_tls_t *t = ctx;
    size_t got = 0;
    while (got < len && t->n_in > 0) {
        lx_slice_t *s = &t->in[0];
        size_t k = LX_MIN(len - got, (size_t)s->len);
        memcpy(buf + got, lx_slice_ptr(s), k);
        got += k;
        s->off += (uint32_t)k;
        s->len -= (uint32_t)k;
        if (s->len == 0) {
            lx_buf_unref(s->buf);
            memmove(&t->in[0], &t->in[1], (t->n_in - 1) * sizeof(lx_slice_t));
            t->n_in--;
        }
    }
    return got > 0 ? (int)got : MBEDTLS_ERR_SSL_WANT_READ;
}

/* The chunk to append <want> bytes of output to: the shared slot's, rewound when nobody else
 * holds any of its bytes, or a fresh one when it has too little room. */
static lx_buf_t *out_chunk(lx_tls_t *t)
{
    lx_buf_t *b = *t->spare;
    if (b != NULL && b->refcnt == 1)
        b->len = 0;
    if (b == NULL || lx_buf_avail(b) < MIN_OUT_ROOM) {
        lx_buf_unref(b);
        b = t->pool != NULL ? lx_buf_pool_get(t->pool) : lx_buf_new(LX_BUF_CHUNK_SIZE);
        *t->spare = b;
    }
    return b;
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    lx_tls_t *t = ctx;
    size_t done = 0;
    while (done < len) {
        lx_buf_t *b = out_chunk(t);
        if (b == NULL)
            return MBEDTLS_ERR_SSL_ALLOC_FAILED;
        size_t k = LX_MIN(len - done, lx_buf_avail(b));
        lx_slice_t *last = t->n_out > 0 ? &t->out[t->n_out - 1] : NULL;
        if (last != NULL && last->buf == b && last->off + last->len == b->len) {
            last->len += (uint32_t)k; /* continues the previous slice */
        } else {
            if (t->n_out == LX_TLS_OUT_MAX)
                return done > 0 ? (int)done : MBEDTLS_ERR_SSL_WANT_WRITE;
            t->out[t->n_out++] = lx_slice_make(b, b->len, k);
        }
        memcpy(lx_buf_tail(b), buf + done, k);
        b->len += (uint32_t)k;
        done += k;
        t->out_bytes += k;
    }
    return (int)len;
}

/* --- errors ---------------------------------------------------------------------------------- */

static int map_error(lx_tls_t *t, int rc)
{
    t->mbed_error = rc;
    switch (rc) {
    case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED: {
        uint32_t f = mbedtls_ssl_get_verify_result(&t->ssl);
        if (f & (MBEDTLS_X509_BADCERT_NOT_TRUSTED | MBEDTLS_X509_BADCERT_MISSING))
            return LX_ETLSCA;
        if (f & (MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE))
            return LX_ETLSEXPIRED;
        if (f & MBEDTLS_X509_BADCERT_CN_MISMATCH)
            return LX_ETLSHOST;
        return LX_ETLSCERT;
    }
    case MBEDTLS_ERR_SSL_ALLOC_FAILED:
        return LX_ENOMEM;
    case MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY:
        return LX_ECLOSED;
    case MBEDTLS_ERR_SSL_BAD_HS_PROTOCOL_VERSION:
    case MBEDTLS_ERR_SSL_NO_CIPHER_CHOSEN:
    case MBEDTLS_ERR_SSL_NO_USABLE_CIPHERSUITE:
    case MBEDTLS_ERR_SSL_INVALID_RECORD:
    case MBEDTLS_ERR_SSL_BAD_HS_CLIENT_HELLO:
    case MBEDTLS_ERR_SSL_BAD_HS_SERVER_HELLO:
    case MBEDTLS_ERR_SSL_UNEXPECTED_MESSAGE:
        return t->ready ? LX_ETLS : LX_ETLSPROTO;
    default:
        return LX_ETLS;
    }
}

/* --- sessions -------------------------------------------------------------------------------- */

static int session_new(lx_buf_pool_t *pool, lx_buf_t **spare, lx_tls_t **out)
{
    lx_tls_t *t = calloc(1, sizeof(*t));
    *out = t;
    if (t == NULL)
        return LX_ENOMEM;
    mbedtls_ssl_init(&t->ssl);
    t->pool = pool;
    t->spare = spare != NULL ? spare : &t->own_spare;
    return 0;
}

static int session_setup(lx_tls_t *t, const mbedtls_ssl_config *conf)
{
    int rc = mbedtls_ssl_setup(&t->ssl, conf);
    if (rc != 0)
        return rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? LX_ENOMEM : LX_ETLS;
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    return 0;
}

int lx_tls_new_server(lx_tls_server_t *srv, lx_buf_pool_t *pool, lx_buf_t **spare, lx_tls_t **out)
{
    lx_tls_t *t;
    int rc = session_new(pool, spare, &t);
    if (rc != 0)
        return rc;
    t->server = lx_tls_server_ref(srv);
    rc = session_setup(t, &srv->conf);
    if (rc != 0) {
        lx_tls_free(t);
        t = NULL;
    }
    *out = t;
    return rc;
}

int lx_tls_new_client(lx_tls_client_t *cli, const char *server_name, const char *session_key,
                      lx_buf_pool_t *pool, lx_buf_t **spare, lx_tls_t **out)
{
    lx_tls_t *t;
    int rc = session_new(pool, spare, &t);
    if (rc != 0)
        return rc;
    t->client = lx_tls_client_ref(cli);
    rc = session_setup(t, &cli->conf);
    if (rc == 0 && server_name != NULL && mbedtls_ssl_set_hostname(&t->ssl, server_name) != 0)
        rc = LX_ENOMEM;
    if (rc == 0 && session_key != NULL && session_key[0] != '\0') {
        /* the name is part of the key: a resumed session skips certificate verification, so a
         * session verified for one name must never be offered for another */
        if (asprintf(&t->session_key, "%s|%s", server_name != NULL ? server_name : "",
                     session_key) < 0) {
            t->session_key = NULL;
            rc = LX_ENOMEM;
        } else {
            lx_tls_client_resume(cli, t->session_key, &t->ssl);
        }
    }
    if (rc != 0) {
        lx_tls_free(t);
        t = NULL;
    }
    *out = t;
    return rc;
}

void lx_tls_free(lx_tls_t *t)
{
    if (t == NULL)
        return;
    for (unsigned i = 0; i < t->n_in; i++)
        lx_buf_unref(t->in[i].buf);
    for (unsigned i = 0; i < t->n_out; i++)
        lx_buf_unref(t->out[i].buf);
    lx_buf_unref(t->own_spare);
    mbedtls_ssl_free(&t->ssl);
    lx_tls_server_unref(t->server);
    lx_tls_client_unref(t->client);
    free(t->session_key);
    free(t);
}

int lx_tls_feed(lx_tls_t *t, lx_buf_t *b, const char *data, size_t len)
{
    if (len == 0)
        return 0;
    if (t->n_in == IN_MAX)
        return LX_ENOMEM;
    t->in[t->n_in++] = lx_slice_make(b, (size_t)(data - b->data), len);
    return 0;
}

static bool want(int rc)
{
    return rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE;
}

int lx_tls_handshake(lx_tls_t *t)
{
    if (t->error != 0)
        return t->error;
    if (t->ready)
        return 0;
    while (t->ssl.state != MBEDTLS_SSL_HANDSHAKE_OVER) {
        int rc = mbedtls_ssl_handshake_step(&t->ssl);
        /* both sides pass this state in a full handshake, and skip it when resuming */
        if (t->ssl.state == MBEDTLS_SSL_SERVER_CERTIFICATE)
            t->full_handshake = true;
        if (want(rc))
            return 1;
        if (rc != 0)
            return t->error = map_error(t, rc);
    }
    t->ready = true;
    if (t->client != NULL && t->session_key != NULL)
        lx_tls_client_save(t->client, t->session_key, &t->ssl);
    return 0;
}

int lx_tls_read(lx_tls_t *t, char *dst, size_t cap)
{
    if (t->error != 0)
        return t->error;
    if (cap == 0)
        return 0;
    int rc = mbedtls_ssl_read(&t->ssl, (unsigned char *)dst, cap);
    if (rc > 0)
        return rc;
    if (want(rc) || rc == 0)
        return 0;
    return t->error = map_error(t, rc);
}

int lx_tls_write(lx_tls_t *t, const char *data, size_t len)
{
    if (t->error != 0)
        return t->error;
    size_t done = 0;
    while (done < len && LX_TLS_OUT_MAX - t->n_out >= SLOTS_PER_RECORD) {
        size_t k = LX_MIN(len - done, (size_t)RECORD_MAX);
        int rc = mbedtls_ssl_write(&t->ssl, (const unsigned char *)data + done, k);
        if (rc < 0)
            return t->error = map_error(t, rc);
        done += (size_t)rc;
    }
    return (int)done;
}

void lx_tls_close_notify(lx_tls_t *t)
{
    if (t->ready && t->error == 0 && LX_TLS_OUT_MAX - t->n_out >= SLOTS_PER_RECORD)
        mbedtls_ssl_close_notify(&t->ssl);
}

size_t lx_tls_out(lx_tls_t *t, lx_slice_t *dst, size_t max)
{
    size_t n = LX_MIN(max, (size_t)t->n_out);
    for (size_t i = 0; i < n; i++) {
        dst[i] = t->out[i];
        t->out_bytes -= t->out[i].len;
    }
    memmove(&t->out[0], &t->out[n], (t->n_out - n) * sizeof(lx_slice_t));
    t->n_out -= (unsigned)n;
    return n;
}

size_t lx_tls_out_bytes(const lx_tls_t *t)
{
    return t->out_bytes;
}

bool lx_tls_pending(lx_tls_t *t)
{
    return t->n_in > 0 || mbedtls_ssl_get_bytes_avail(&t->ssl) > 0 ||
           mbedtls_ssl_check_pending(&t->ssl) != 0;
}

bool lx_tls_ready(const lx_tls_t *t)
{
    return t->ready;
}

bool lx_tls_resumed(const lx_tls_t *t)
{
    return t->ready && !t->full_handshake;
}

const char *lx_tls_alpn(const lx_tls_t *t)
{
    return mbedtls_ssl_get_alpn_protocol(&t->ssl);
}

int lx_tls_last_error(const lx_tls_t *t)
{
    return t->mbed_error;
}
