/*
 * test_tls.c - TLS sessions through the chunk-queue interface alone: a client and a server
 * session talk to each other in memory, the ciphertext cut at every split size, and the bytes
 * must come out exact; resumption is asserted on both sides; each verification failure gives
 * its own code; SNI picks the certificate; garbage and close_notify end a session cleanly; an
 * idle session holds no chunk.
 *
 * The certificates are generated at start into a temporary directory (pki.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/status.h"
#include "pki.h"
#include "tls/tls.h"

static pki_t P;
static char dir[64];
static char path_ca[128], path_other_ca[128];

typedef struct end {
    lx_tls_t *t;
    lx_buf_pool_t pool;
    lx_buf_t *spare;
    int err;
    char *rx;
    size_t rx_len, rx_cap;
} end_t;

static void end_init(end_t *e)
{
    memset(e, 0, sizeof(*e));
    lx_buf_pool_init(&e->pool, 8);
    e->rx_cap = 1 << 20;
    e->rx = malloc(e->rx_cap);
    assert_non_null(e->rx);
}

static void end_dispose(end_t *e)
{
    lx_tls_free(e->t);
    lx_buf_unref(e->spare);
    free(e->rx);
    assert_int_equal(e->pool.n_out, 0); /* every chunk came back */
    lx_buf_pool_dispose(&e->pool);
}

/* Advances <e> with what it has been fed: the handshake, then plaintext into rx. */
static void drive(end_t *e)
{
    if (e->err != 0)
        return;
    if (!lx_tls_ready(e->t)) {
        int rc = lx_tls_handshake(e->t);
        if (rc < 0)
            e->err = rc;
        if (rc != 0)
            return;
    }
    for (;;) {
        int n = lx_tls_read(e->t, e->rx + e->rx_len, e->rx_cap - e->rx_len);
        if (n > 0) {
            e->rx_len += (size_t)n;
            continue;
        }
        if (n < 0)
            e->err = n;
        return;
    }
}

/* Moves <from>'s ciphertext to <to> in pieces of <split> bytes, driving <to> after each. */
static bool transfer(end_t *from, end_t *to, size_t split)
{
    lx_slice_t sl[LX_TLS_OUT_MAX];
    bool moved = false;
    size_t n;
    while ((n = lx_tls_out(from->t, sl, LX_TLS_OUT_MAX)) > 0) {
        for (size_t i = 0; i < n; i++) {
            for (size_t off = 0; off < sl[i].len; off += split) {
                size_t k = sl[i].len - off < split ? sl[i].len - off : split;
                assert_int_equal(lx_tls_feed(to->t, sl[i].buf, lx_slice_ptr(&sl[i]) + off, k), 0);
                drive(to);
            }
            lx_buf_unref(sl[i].buf);
        }
        moved = true;
    }
    return moved;
}

static void converse(end_t *a, end_t *b, size_t split)
{
    drive(a);
    drive(b);
    for (int i = 0; i < 1000; i++) {
        bool m1 = transfer(a, b, split);
        bool m2 = transfer(b, a, split);
        if (!m1 && !m2)
            break;
    }
}

static lx_tls_server_t *server_ctx(const pki_cert_t *const *certs, size_t n)
{
    lx_tls_cert_pair_t pairs[4];
    for (size_t i = 0; i < n; i++) {
        memset(&pairs[i], 0, sizeof(pairs[i]));
        pairs[i].cert_pem = certs[i]->cert_pem;
        pairs[i].key_pem = certs[i]->key_pem;
    }
    lx_tls_server_opts_t o = {.certs = pairs, .n_certs = n, .min_version = 12};
    char err[256];
    lx_tls_server_t *s = NULL;
    int rc = lx_tls_server_new(&o, err, sizeof(err), &s);
    if (rc != 0)
        fail_msg("server context: %s", err);
    return s;
}

static lx_tls_client_t *client_ctx(const char *ca, bool insecure)
{
    lx_tls_client_opts_t o = {.ca_file = ca, .insecure_skip_verify = insecure};
    char err[256];
    lx_tls_client_t *c = NULL;
    int rc = lx_tls_client_new(&o, err, sizeof(err), &c);
    if (rc != 0)
        fail_msg("client context: %s", err);
    return c;
}

/* A client of <cc> for <name> meets a server of <sc>; returns after the handshake. */
static void pair(end_t *cli, end_t *srv, lx_tls_client_t *cc, const char *name, const char *key,
                 lx_tls_server_t *sc, size_t split)
{
    end_init(cli);
    end_init(srv);
    assert_int_equal(lx_tls_new_client(cc, name, key, &cli->pool, &cli->spare, &cli->t), 0);
    assert_int_equal(lx_tls_new_server(sc, &srv->pool, &srv->spare, &srv->t), 0);
    converse(cli, srv, split);
}

static void fill(char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)((i * 131u + seed * 7u + (i >> 9)) & 0xff);
}

/* Writes <len> bytes from <from> to <to>, taking the output whenever the queue fills. */
static void send_all(end_t *from, end_t *to, const char *data, size_t len, size_t split)
{
    size_t done = 0;
    while (done < len) {
        int n = lx_tls_write(from->t, data + done, len - done);
        assert_true(n >= 0);
        done += (size_t)n;
        transfer(from, to, split);
    }
}

static void test_exchange_every_split(void **state)
{
    (void)state;
    const pki_cert_t *certs[] = {&P.server};
    lx_tls_server_t *sc = server_ctx(certs, 1);
    lx_tls_client_t *cc = client_ctx(path_ca, false);
    static char up[70000], down[50000];
    fill(up, sizeof(up), 1);
    fill(down, sizeof(down), 2);
    size_t splits[80];
    size_t ns = 0;
    for (size_t s = 1; s <= 64; s++)
        splits[ns++] = s;
    size_t big[] = {100, 517, 1000, 4096, 16384, 16413, 70000};
    for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
        splits[ns++] = big[i];
    for (size_t i = 0; i < ns; i++) {
        end_t c, s;
        pair(&c, &s, cc, "localhost", NULL, sc, splits[i]);
        assert_int_equal(c.err, 0);
        assert_int_equal(s.err, 0);
        assert_true(lx_tls_ready(c.t) && lx_tls_ready(s.t));
        assert_string_equal(lx_tls_alpn(c.t), "http/1.1");
        assert_string_equal(lx_tls_alpn(s.t), "http/1.1");
        /* larger transfers at the coarse splits only: the fine ones cover the record edges */
        size_t nu = splits[i] < 8 ? 20000 : sizeof(up);
        send_all(&c, &s, up, nu, splits[i]);
        send_all(&s, &c, down, sizeof(down), splits[i]);
        assert_int_equal(s.rx_len, nu);
        assert_memory_equal(s.rx, up, nu);
        assert_int_equal(c.rx_len, sizeof(down));
        assert_memory_equal(c.rx, down, sizeof(down));
        /* nothing left waiting: an idle session holds no input and no output chunk */
        assert_false(lx_tls_pending(c.t));
        assert_false(lx_tls_pending(s.t));
        assert_int_equal(lx_tls_out_bytes(c.t), 0);
        assert_true(c.pool.n_out <= 1 && s.pool.n_out <= 1); /* the shared spare slot only */
        end_dispose(&c);
        end_dispose(&s);
    }
    lx_tls_client_unref(cc);
    lx_tls_server_unref(sc);
}

static void test_large_write_is_partial(void **state)
{
    (void)state;
    const pki_cert_t *certs[] = {&P.server};
    lx_tls_server_t *sc = server_ctx(certs, 1);
    lx_tls_client_t *cc = client_ctx(path_ca, false);
    end_t c, s;
    pair(&c, &s, cc, "localhost", NULL, sc, 4096);
    size_t len = 600000;
    char *big = malloc(len);
    assert_non_null(big);
    fill(big, len, 3);
    int n = lx_tls_write(c.t, big, len);
    assert_true(n > 0 && (size_t)n < len); /* the output queue is bounded */
    transfer(&c, &s, 16384);
    send_all(&c, &s, big + n, len - (size_t)n, 9000);
    assert_int_equal(s.rx_len, len);
    assert_memory_equal(s.rx, big, len);
    free(big);
    end_dispose(&c);
    end_dispose(&s);
    lx_tls_client_unref(cc);
    lx_tls_server_unref(sc);
}

static void test_resumption(void **state)
{
    (void)state;
    const pki_cert_t *certs[] = {&P.server};
    lx_tls_server_t *sc = server_ctx(certs, 1);
    lx_tls_client_t *cc = client_ctx(path_ca, false);
    end_t c, s;
    pair(&c, &s, cc, "localhost", "127.0.0.1:443", sc, 1000);
    assert_int_equal(c.err, 0);
    assert_false(lx_tls_resumed(c.t));
    assert_false(lx_tls_resumed(s.t));
    end_dispose(&c);
    end_dispose(&s);
    assert_int_equal(lx_tls_client_cached(cc), 1);
    for (int i = 0; i < 3; i++) {
        /* the same endpoint resumes, again and again (the ticket is renewed each time) */
        pair(&c, &s, cc, "localhost", "127.0.0.1:443", sc, 7);
        assert_int_equal(c.err, 0);
        assert_int_equal(s.err, 0);
        assert_true(lx_tls_resumed(c.t));
        assert_true(lx_tls_resumed(s.t));
        send_all(&c, &s, "ping", 4, 3);
        assert_int_equal(s.rx_len, 4);
        end_dispose(&c);
        end_dispose(&s);
    }
    /* the same endpoint under another name does not: a resumed session skips verification,
     * so it must not carry a name it was not verified for */
    pair(&c, &s, cc, "sni.test", "127.0.0.1:443", sc, 1000);
    assert_int_equal(c.err, LX_ETLSHOST);
    end_dispose(&c);
    end_dispose(&s);
    /* another endpoint does not */
    pair(&c, &s, cc, "localhost", "127.0.0.1:444", sc, 1000);
    assert_int_equal(c.err, 0);
    assert_false(lx_tls_resumed(c.t));
    end_dispose(&c);
    end_dispose(&s);
    /* a server with other ticket keys (a new context, as after a reload) refuses the ticket:
     * a full handshake, not a failure */
    lx_tls_server_t *sc2 = server_ctx(certs, 1);
    pair(&c, &s, cc, "localhost", "127.0.0.1:443", sc2, 1000);
    assert_int_equal(c.err, 0);
    assert_int_equal(s.err, 0);
    assert_false(lx_tls_resumed(c.t));
    end_dispose(&c);
    end_dispose(&s);
    assert_int_equal(lx_tls_client_cached(cc), 2);
    lx_tls_server_unref(sc2);
    lx_tls_client_unref(cc);
    lx_tls_server_unref(sc);
}

static int handshake_error(const pki_cert_t *cert, const char *ca, const char *name, bool insecure)
{
    const pki_cert_t *certs[] = {cert};
    lx_tls_server_t *sc = server_ctx(certs, 1);
    lx_tls_client_t *cc = client_ctx(ca, insecure);
    end_t c, s;
    pair(&c, &s, cc, name, "k", sc, 300);
    int err = c.err;
    if (err == 0)
        assert_true(lx_tls_ready(c.t) && lx_tls_ready(s.t));
    else
        assert_true(s.err < 0); /* the server hears the client's alert */
    end_dispose(&c);
    end_dispose(&s);
    if (err != 0)
        assert_int_equal(lx_tls_client_cached(cc), 0); /* a failed session is not cached */
    lx_tls_client_unref(cc);
    lx_tls_server_unref(sc);
    return err;
}

static void test_verification_failures(void **state)
{
    (void)state;
    assert_int_equal(handshake_error(&P.server, path_ca, "localhost", false), 0);
    assert_int_equal(handshake_error(&P.expired, path_ca, "localhost", false), LX_ETLSEXPIRED);
    assert_int_equal(handshake_error(&P.wronghost, path_ca, "localhost", false), LX_ETLSHOST);
    assert_int_equal(handshake_error(&P.server, path_ca, "example.com", false), LX_ETLSHOST);
    assert_int_equal(handshake_error(&P.other, path_ca, "localhost", false), LX_ETLSCA);
    /* mbedTLS 2.28 matches DNS names only: an IP subjectAltName does not cover "127.0.0.1"
     * (hence the provider's tls.server_name) */
    assert_int_equal(handshake_error(&P.server, path_ca, "127.0.0.1", false), LX_ETLSHOST);
    /* the other CA trusts its own certificate */
    assert_int_equal(handshake_error(&P.other, path_other_ca, "localhost", false), 0);
    /* insecure_skip_verify accepts all of them */
    assert_int_equal(handshake_error(&P.other, path_ca, "localhost", true), 0);
    assert_int_equal(handshake_error(&P.expired, path_ca, "nothing.example", true), 0);
    /* each failure has its own words */
    assert_string_equal(lx_strerror(LX_ETLSCA), "TLS: certificate signed by an unknown authority");
    assert_string_not_equal(lx_strerror(LX_ETLSHOST), lx_strerror(LX_ETLSEXPIRED));
}

static void test_sni_selects_certificate(void **state)
{
    (void)state;
    const pki_cert_t *certs[] = {&P.server, &P.sni};
    lx_tls_server_t *sc = server_ctx(certs, 2);
    lx_tls_client_t *cc = client_ctx(path_ca, false);
    const char *names[] = {"localhost", "sni.test", "a.wild.test", "SNI.TEST"};
    for (size_t i = 0; i < 4; i++) {
        end_t c, s;
        pair(&c, &s, cc, names[i], NULL, sc, 512);
        assert_int_equal(c.err, 0); /* verified against the name: the right certificate */
        end_dispose(&c);
        end_dispose(&s);
    }
    /* a name no certificate carries gets the default one, which the client then refuses */
    end_t c, s;
    pair(&c, &s, cc, "b.a.wild.test", NULL, sc, 512);
    assert_int_equal(c.err, LX_ETLSHOST);
    end_dispose(&c);
    end_dispose(&s);
    lx_tls_client_unref(cc);
    lx_tls_server_unref(sc);
}

static void test_garbage_and_plain_http(void **state)
{
    (void)state;
    const pki_cert_t *certs[] = {&P.server};
    lx_tls_server_t *sc = server_ctx(certs, 1);
    const char *inputs[] = {"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
                            "\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", "\x80\x80\x80\x80\x80"};
    size_t lens[] = {strlen(inputs[0]), 10, 5};
    for (size_t i = 0; i < 3; i++) {
        end_t s;
        end_init(&s);
        assert_int_equal(lx_tls_new_server(sc, &s.pool, &s.spare, &s.t), 0);
        lx_buf_t *b = lx_buf_pool_get(&s.pool);
        memcpy(b->data, inputs[i], lens[i]);
        b->len = (uint32_t)lens[i];
        assert_int_equal(lx_tls_feed(s.t, b, b->data, lens[i]), 0);
        lx_buf_unref(b);
        drive(&s);
        assert_true(s.err == LX_ETLSPROTO || s.err == LX_ETLS);
        assert_int_equal(lx_tls_handshake(s.t), s.err); /* sticky */
        /* an alert may be queued for the peer: it is taken and released like any output */
        lx_slice_t sl[LX_TLS_OUT_MAX];
        size_t n = lx_tls_out(s.t, sl, LX_TLS_OUT_MAX);
        for (size_t k = 0; k < n; k++)
            lx_buf_unref(sl[k].buf);
        end_dispose(&s);
    }
    assert_int_equal(LX_ETLSPROTO, -5019);
    lx_tls_server_unref(sc);
}

static void test_close_notify(void **state)
{
    (void)state;
    const pki_cert_t *certs[] = {&P.server};
    lx_tls_server_t *sc = server_ctx(certs, 1);
    lx_tls_client_t *cc = client_ctx(path_ca, false);
    end_t c, s;
    pair(&c, &s, cc, "localhost", NULL, sc, 2048);
    send_all(&s, &c, "bye", 3, 2);
    lx_tls_close_notify(s.t);
    transfer(&s, &c, 1);
    assert_int_equal(c.rx_len, 3);
    assert_int_equal(c.err, LX_ECLOSED);
    end_dispose(&c);
    end_dispose(&s);
    lx_tls_client_unref(cc);
    lx_tls_server_unref(sc);
}

static void test_bad_context_options(void **state)
{
    (void)state;
    char err[256];
    lx_tls_client_t *c = NULL;
    lx_tls_client_opts_t co = {.ca_file = "/nonexistent/ca.pem"};
    assert_int_equal(lx_tls_client_new(&co, err, sizeof(err), &c), LX_ECONFIG);
    assert_null(c);
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    lx_tls_cert_pair_t pair = {.cert_pem = P.server.cert_pem, .key_pem = P.server.key_pem};
    lx_tls_server_t *s = NULL;
    lx_tls_server_opts_t so = {.certs = &pair, .n_certs = 1, .min_version = 13};
    assert_int_equal(lx_tls_server_new(&so, err, sizeof(err), &s), LX_ECONFIG);
    assert_non_null(strstr(err, "TLS 1.2"));
    so.min_version = 12;
    pair.key_pem = P.other.key_pem; /* not the certificate's key */
    assert_int_equal(lx_tls_server_new(&so, err, sizeof(err), &s), LX_ECONFIG);
    assert_non_null(strstr(err, "does not match"));
    so.n_certs = 0;
    assert_int_equal(lx_tls_server_new(&so, err, sizeof(err), &s), LX_ECONFIG);
    /* with a client certificate */
    co.ca_file = path_ca;
    co.client.cert_pem = P.client.cert_pem;
    co.client.key_pem = P.client.key_pem;
    assert_int_equal(lx_tls_client_new(&co, err, sizeof(err), &c), 0);
    lx_tls_client_unref(c);
}

static int setup_pki(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/llmux-tls-XXXXXX");
    if (mkdtemp(dir) == NULL || pki_make(&P, dir) != 0)
        return -1;
    snprintf(path_ca, sizeof(path_ca), "%s/ca.pem", dir);
    snprintf(path_other_ca, sizeof(path_other_ca), "%s/other_ca.pem", dir);
    return 0;
}

static int teardown_pki(void **state)
{
    (void)state;
    pki_dispose(&P);
    const char *names[] = {"ca",       "server", "expired", "wronghost",
                           "other_ca", "other",  "sni",     "client"};
    char path[160];
    for (size_t i = 0; i < 8; i++) {
        snprintf(path, sizeof(path), "%s/%s.pem", dir, names[i]);
        unlink(path);
        snprintf(path, sizeof(path), "%s/%s.key", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exchange_every_split),
        cmocka_unit_test(test_large_write_is_partial),
        cmocka_unit_test(test_resumption),
        cmocka_unit_test(test_verification_failures),
        cmocka_unit_test(test_sni_selects_certificate),
        cmocka_unit_test(test_garbage_and_plain_http),
        cmocka_unit_test(test_close_notify),
        cmocka_unit_test(test_bad_context_options),
    };
    return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
