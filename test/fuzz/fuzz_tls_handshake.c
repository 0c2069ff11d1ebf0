/*
 * fuzz_tls_handshake.c - arbitrary bytes from a client into a server-side TLS session.
 *
 * The bytes go through the chunk-queue interface alone (tls/tls.h), as net/stream.c feeds
 * them: the first input byte chooses a split size, the rest is fed in pieces of that size,
 * the handshake is advanced after each piece, and the output (alerts, a server flight) is
 * taken and released. The server's certificate is generated in-process at the first call
 * (mbedTLS x509write; nothing committed). Crashes, leaks and sanitizer reports are the
 * findings; every session must end in a clean error or keep waiting for input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls.h"

#include "../unit/tls/pki.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static lx_tls_server_t *ctx;
static pki_cert_t cert;

static void cleanup(void)
{
    lx_tls_server_unref(ctx);
    pki_free(&cert);
}

static int init(void)
{
    static const char *const names[] = {"localhost", NULL};
    if (pki_issue(&cert, "localhost", names, true, NULL, false, -1, 30) != 0)
        return -1;
    lx_tls_cert_pair_t pair = {.cert_pem = cert.cert_pem, .key_pem = cert.key_pem};
    lx_tls_server_opts_t o = {.certs = &pair, .n_certs = 1};
    char err[256];
    if (lx_tls_server_new(&o, err, sizeof(err), &ctx) != 0)
        return -1;
    atexit(cleanup);
    return 0;
}

static void drain(lx_tls_t *t)
{
    lx_slice_t sl[LX_TLS_OUT_MAX];
    size_t n;
    while ((n = lx_tls_out(t, sl, LX_TLS_OUT_MAX)) > 0) {
        for (size_t i = 0; i < n; i++)
            lx_buf_unref(sl[i].buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (ctx == NULL && init() != 0)
        abort();
    if (size == 0)
        return 0;
    size_t split = data[0] == 0 ? size : data[0];
    data++;
    size--;
    lx_buf_pool_t pool;
    lx_buf_pool_init(&pool, 4);
    lx_buf_t *spare = NULL;
    lx_tls_t *t = NULL;
    if (lx_tls_new_server(ctx, &pool, &spare, &t) != 0)
        abort();
    lx_buf_t *in = lx_buf_new(size > 0 ? size : 1);
    if (in == NULL)
        abort();
    memcpy(in->data, data, size);
    in->len = (uint32_t)size;
    int rc = 1;
    for (size_t off = 0; off < size && rc >= 0; off += split) {
        size_t k = size - off < split ? size - off : split;
        if (lx_tls_feed(t, in, in->data + off, k) != 0)
            abort(); /* the queue is drained after every piece: never full */
        rc = lx_tls_handshake(t);
        drain(t);
        if (rc == 0) {
            char plain[4096];
            while (lx_tls_read(t, plain, sizeof(plain)) > 0)
                ;
            drain(t);
        }
    }
    /* a failure is sticky and the session is still safe to use */
    if (rc < 0 && lx_tls_handshake(t) != rc)
        abort();
    lx_buf_unref(in);
    lx_tls_free(t);
    lx_buf_unref(spare);
    if (pool.n_out != 0)
        abort(); /* a chunk reference was lost */
    lx_buf_pool_dispose(&pool);
    return 0;
}
