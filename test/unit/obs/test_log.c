/*
 * test_log.c - the access-log buffer (reserve/commit/flush into a real file, disabled when no
 * path), JSON and text escaping with their truncation rule, the time format, the error log's
 * level filter (stderr captured through a temporary file), its escaping of what a line carries
 * (defect 8: forged lines, terminal escapes), and the secrets set.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "obs/log.h"

static lx_access_log_t al; /* 64 KiB: not on the stack */

/* Reads the whole file at <path> into a NUL-terminated buffer (freed by the caller). */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0)
        n += r;
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void put_line(lx_access_log_t *a, const char *line)
{
    size_t cap = 0;
    char *p = lx_access_log_reserve(a, &cap);
    assert_non_null(p);
    assert_true(cap >= strlen(line));
    memcpy(p, line, strlen(line));
    lx_access_log_commit(a, strlen(line));
}

static void test_access_log_file(void **state)
{
    (void)state;
    char path[] = "/tmp/lx_test_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);

    assert_int_equal(lx_access_log_open(&al, path), 0);
    assert_true(al.fd >= 0);
    assert_true(al.own_fd);
    put_line(&al, "{\"a\":1}\n");
    put_line(&al, "{\"b\":2}\n");
    assert_int_equal(al.len, 16);

    /* nothing reaches the file before a flush */
    size_t n;
    char *got = slurp(path, &n);
    assert_int_equal(n, 0);
    free(got);

    lx_access_log_flush(&al);
    assert_int_equal(al.len, 0);
    got = slurp(path, &n);
    assert_string_equal(got, "{\"a\":1}\n{\"b\":2}\n");
    free(got);

    /* an empty flush writes nothing; close flushes what is left */
    lx_access_log_flush(&al);
    put_line(&al, "{\"c\":3}\n");
    lx_access_log_close(&al);
    assert_int_equal(al.fd, -1);
    assert_int_equal(al.dropped, 0);
    got = slurp(path, &n);
    assert_string_equal(got, "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
    free(got);

    /* reopening appends */
    assert_int_equal(lx_access_log_open(&al, path), 0);
    put_line(&al, "{\"d\":4}\n");
    lx_access_log_close(&al);
    got = slurp(path, &n);
    assert_string_equal(got, "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n{\"d\":4}\n");
    free(got);
    unlink(path);
}

static void test_access_log_fills(void **state)
{
    (void)state;
    char path[] = "/tmp/lx_test_log_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(lx_access_log_open(&al, path), 0);
    /* many 100-byte lines: reserve flushes when the room gets short, and lines stay whole */
    char line[101];
    size_t total = 0;
    for (int i = 0; i < 2000; i++) {
        int k = snprintf(line, sizeof(line), "%05d", i);
        memset(line + k, 'x', 99 - (size_t)k);
        line[99] = '\n';
        line[100] = '\0';
        size_t cap = 0;
        char *p = lx_access_log_reserve(&al, &cap);
        assert_non_null(p);
        assert_true(cap >= 4096);
        assert_true(al.len + cap <= LX_ACCESS_LOG_BUF);
        memcpy(p, line, 100);
        lx_access_log_commit(&al, 100);
        total += 100;
    }
    lx_access_log_close(&al);
    size_t n;
    char *got = slurp(path, &n);
    assert_int_equal(n, total);
    for (int i = 0; i < 2000; i++) {
        char want[6];
        snprintf(want, sizeof(want), "%05d", i);
        assert_memory_equal(got + (size_t)i * 100, want, 5);
        assert_int_equal(got[(size_t)i * 100 + 99], '\n');
    }
    free(got);
    unlink(path);
}

static void test_access_log_disabled(void **state)
{
    (void)state;
    assert_int_equal(lx_access_log_open(&al, NULL), 0);
    assert_int_equal(al.fd, -1);
    size_t cap = 77;
    assert_null(lx_access_log_reserve(&al, &cap));
    lx_access_log_flush(&al);
    lx_access_log_close(&al);
    assert_int_equal(al.dropped, 0);

    /* an unopenable path is an error, not a crash */
    assert_true(lx_access_log_open(&al, "/nonexistent-dir-lx/x.log") < 0);
    assert_null(lx_access_log_reserve(&al, &cap));
    lx_access_log_close(&al);
}

static size_t esc(char *out, size_t cap, const char *s)
{
    size_t n = lx_log_json_escape(out, cap, s, strlen(s));
    assert_true(n <= cap);
    out[n] = '\0';
    return n;
}

static void test_json_escape(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(esc(out, 200, "plain text"), 10);
    assert_string_equal(out, "plain text");
    esc(out, 200, "say \"hi\"");
    assert_string_equal(out, "say \\\"hi\\\"");
    esc(out, 200, "C:\\dir");
    assert_string_equal(out, "C:\\\\dir");
    esc(out, 200, "a\nb\rc\td");
    assert_string_equal(out, "a\\nb\\rc\\td");
    esc(out, 200, "\x01\x1f\x7f");
    assert_string_equal(out, "\\u0001\\u001f\\u007f");
    esc(out, 200, "\b\f");
    assert_string_equal(out, "\\u0008\\u000c");
    /* valid UTF-8 passes as it is (escaping its bytes one by one would double-encode it) */
    esc(out, 200, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    assert_string_equal(out, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    /* each byte of invalid UTF-8 is the text \xNN, so the line stays valid JSON */
    esc(out, 200, "\xff");
    assert_string_equal(out, "\\\\xff");
    esc(out, 200, "a\xc3");
    assert_string_equal(out, "a\\\\xc3");
    esc(out, 200, "\xed\xa0\x80"); /* a surrogate */
    assert_string_equal(out, "\\\\xed\\\\xa0\\\\x80");
    /* C1 controls, line separators and direction overrides are escaped as characters */
    esc(out, 200,
        "\xc2\x9b"
        "2J\xe2\x80\xa8\xe2\x80\xae\xe2\x81\xa6");
    assert_string_equal(out, "\\u009b2J\\u2028\\u202e\\u2066");
    /* a NUL inside the input is escaped too */
    size_t n = lx_log_json_escape(out, 200, "a\0b", 3);
    assert_int_equal(n, 8);
    assert_memory_equal(out, "a\\u0000b", 8);
    assert_int_equal(lx_log_json_escape(out, 200, "", 0), 0);
}

static void test_json_escape_truncation(void **state)
{
    (void)state;
    char out[64];
    /* cut at a character boundary: never half an escape */
    assert_int_equal(esc(out, 4, "abcdef"), 4);
    assert_string_equal(out, "abcd");
    assert_int_equal(esc(out, 2, "a\"b"), 1); /* `\"` needs 2, only 1 left after 'a' */
    assert_string_equal(out, "a");
    assert_int_equal(esc(out, 3, "a\"b"), 3);
    assert_string_equal(out, "a\\\"");
    assert_int_equal(esc(out, 6, "ab\x01"), 2); /* \u0001 needs 6 */
    assert_string_equal(out, "ab");
    assert_int_equal(esc(out, 8, "ab\x01"), 8);
    assert_string_equal(out, "ab\\u0001");
    assert_int_equal(esc(out, 0, "abc"), 0);
    assert_int_equal(esc(out, 4, "a\xe2\x82\xac"), 4); /* a whole character or nothing */
    assert_int_equal(esc(out, 3, "a\xe2\x82\xac"), 1);
    /* once an escape does not fit, later short characters are not squeezed in after it */
    assert_int_equal(esc(out, 5, "ab\x01z"), 2);
    assert_string_equal(out, "ab");
    /* the output never exceeds cap: the guard byte stays */
    memset(out, '#', sizeof(out));
    size_t n = lx_log_json_escape(out, 7, "\\\\\\\\", 4);
    assert_int_equal(n, 6);
    assert_int_equal(out[7], '#');
    assert_memory_equal(out, "\\\\\\\\\\\\", 6);
}

static void test_log_time(void **state)
{
    (void)state;
    char ts[32];
    lx_log_time(ts, sizeof(ts));
    /* 2024-01-02T03:04:05.678Z */
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[4], '-');
    assert_int_equal(ts[7], '-');
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[13], ':');
    assert_int_equal(ts[16], ':');
    assert_int_equal(ts[19], '.');
    assert_int_equal(ts[23], 'Z');
}

/* Runs lx_log with stderr redirected to a temporary file; returns what was written. */
static char *capture_log(int level, const char *msg)
{
    char path[] = "/tmp/lx_test_stderr_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    lx_log(level, "%s", msg);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    close(fd);
    size_t n;
    char *got = slurp(path, &n);
    unlink(path);
    return got;
}

static void test_log_levels(void **state)
{
    (void)state;
    lx_log_set_level(LX_LOG_WARN);
    assert_true(lx_log_enabled(LX_LOG_ERROR));
    assert_true(lx_log_enabled(LX_LOG_WARN));
    assert_false(lx_log_enabled(LX_LOG_INFO));
    assert_false(lx_log_enabled(LX_LOG_DEBUG));

    char *got = capture_log(LX_LOG_ERROR, "disk on fire");
    /* "<24-char time> [error] disk on fire\n" */
    assert_int_equal(strlen(got), 24 + strlen(" [error] disk on fire\n"));
    assert_int_equal(got[23], 'Z');
    assert_string_equal(got + 24, " [error] disk on fire\n");
    free(got);

    got = capture_log(LX_LOG_WARN, "careful");
    assert_string_equal(got + 24, " [warn] careful\n");
    free(got);

    got = capture_log(LX_LOG_INFO, "chatter");
    assert_string_equal(got, "");
    free(got);
    got = capture_log(LX_LOG_DEBUG, "noise");
    assert_string_equal(got, "");
    free(got);

    lx_log_set_level(LX_LOG_DEBUG);
    got = capture_log(LX_LOG_DEBUG, "noise");
    assert_string_equal(got + 24, " [debug] noise\n");
    free(got);
    got = capture_log(LX_LOG_INFO, "chatter");
    assert_string_equal(got + 24, " [info] chatter\n");
    free(got);

    lx_log_set_level(LX_LOG_ERROR);
    got = capture_log(LX_LOG_WARN, "careful");
    assert_string_equal(got, "");
    free(got);
    lx_log_set_level(LX_LOG_INFO);
}

static void test_log_long_line(void **state)
{
    (void)state;
    lx_log_set_level(LX_LOG_INFO);
    char *msg = malloc(5000);
    assert_non_null(msg);
    memset(msg, 'm', 4999);
    msg[4999] = '\0';
    char *got = capture_log(LX_LOG_ERROR, msg);
    size_t n = strlen(got);
    /* cut to the line buffer, still one whole line ending in '\n' */
    assert_true(n > 1000 && n <= 4096);
    assert_int_equal(got[n - 1], '\n');
    assert_null(memchr(got, '\n', n - 1));
    assert_int_equal(got[n - 2], 'm');
    free(got);
    free(msg);
}

static size_t text(char *out, size_t cap, const char *s, size_t len)
{
    size_t n = lx_log_text_escape(out, cap, s, len);
    assert_true(n <= cap);
    out[n] = '\0';
    return n;
}

#define TEXT(out, cap, lit) text(out, cap, lit, sizeof(lit) - 1)

static void test_text_escape(void **state)
{
    (void)state;
    char out[256];
    TEXT(out, 200, "plain \"quoted\" text");
    assert_string_equal(out, "plain \"quoted\" text");
    TEXT(out, 200, "a\nb\rc\td\\e");
    assert_string_equal(out, "a\\nb\\rc\\td\\\\e");
    /* every C0 control, DEL and ESC */
    TEXT(out, 200, "\x00\x01\x1b[2J\x7f");
    assert_string_equal(out, "\\u0000\\u0001\\u001b[2J\\u007f");
    TEXT(out, 200, "\b\f");
    assert_string_equal(out, "\\u0008\\u000c");
    TEXT(out, 200, "caf\xc3\xa9");
    assert_string_equal(out, "caf\xc3\xa9");
    TEXT(out, 200, "\xff\xc3(");
    assert_string_equal(out, "\\xff\\xc3(");
    TEXT(out, 200, "\xc2\x85\xe2\x80\xa9\xe2\x81\xa9\xe2\x80\xa7");
    assert_string_equal(out, "\\u0085\\u2029\\u2069\xe2\x80\xa7");
    /* whole escapes only */
    assert_int_equal(TEXT(out, 6, "ab\x1b"), 2);
    assert_int_equal(TEXT(out, 8, "ab\x1b"), 8);
    assert_int_equal(TEXT(out, 4, "ab\xff"), 2);
}

/* Defect 8: what a provider's error message can carry into a log line. */
static void test_log_injection(void **state)
{
    (void)state;
    lx_log_set_level(LX_LOG_INFO);
    char *got = capture_log(LX_LOG_INFO, "attempt 1: provider returned HTTP 400: bad model "
                                         "x\n2026-01-01T00:00:00.000Z [error] admin key accepted"
                                         "\x1b[2J\x1b]0;pwned\x07\r\xc2\x9b\xff");
    size_t n = strlen(got);
    /* one line: its only LF is the last byte, no CR, no ESC, no BEL, no C1 CSI */
    assert_int_equal(got[n - 1], '\n');
    assert_null(memchr(got, '\n', n - 1));
    assert_null(strchr(got, '\r'));
    assert_null(strchr(got, '\x1b'));
    assert_null(strchr(got, '\x07'));
    assert_null(strstr(got, "\xc2\x9b"));
    assert_string_equal(got + 24, " [info] attempt 1: provider returned HTTP 400: bad model x\\n"
                                  "2026-01-01T00:00:00.000Z [error] admin key accepted\\u001b[2J"
                                  "\\u001b]0;pwned\\u0007\\r\\u009b\\xff\n");
    free(got);
}

static void test_secrets(void **state)
{
    (void)state;
    static const char key[] = "sk-live-abcdefghijklmnop";
    const lx_log_secrets_t *before = lx_log_secrets();
    assert_true(lx_log_secrets_empty(before));
    char *got = capture_log(LX_LOG_ERROR, "echo: Authorization: Bearer sk-live-abcdefghijklmnop");
    assert_non_null(strstr(got, "abcdefghijklmnop"));
    free(got);

    assert_int_equal(lx_log_secret_add(key, sizeof(key) - 1), 0);
    assert_int_equal(lx_log_secret_add(key, sizeof(key) - 1), 0); /* once is enough */
    assert_int_equal(lx_log_secret_add("abc", 3), 0);             /* too short: ignored */
    assert_int_equal(lx_log_secret_add("header-value-42", 15), 0);
    const lx_log_secrets_t *set = lx_log_secrets();
    assert_false(lx_log_secrets_empty(set));
    assert_true(lx_log_secrets_empty(before)); /* a snapshot never changes */

    /* whole, cut short anywhere (at least LX_LOG_SECRET_MIN bytes of it), or not at all */
    assert_int_equal(lx_log_secrets_match(set, key, sizeof(key) - 1), sizeof(key) - 1);
    assert_int_equal(lx_log_secrets_match(set, "sk-live-abcdefghijklmnopXYZ", 27), 24);
    assert_int_equal(lx_log_secrets_match(set, "sk-live-abc; more", 17), 11);
    assert_int_equal(lx_log_secrets_match(set, "sk-live-", 8), 8);
    assert_int_equal(lx_log_secrets_match(set, "sk-live", 7), 0);
    assert_int_equal(lx_log_secrets_match(set, "xsk-live-abc", 12), 0);
    assert_int_equal(lx_log_secrets_match(set, "abc", 3), 0);
    assert_int_equal(lx_log_secrets_match(set, "header-value-42", 15), 15);

    got = capture_log(LX_LOG_ERROR, "echo: Authorization: Bearer sk-live-abcdefghijklmnop, "
                                    "X-Org: header-value-42; cut: sk-live-abcdefg");
    assert_null(strstr(got, "abcdefg"));
    assert_null(strstr(got, "value-42"));
    assert_string_equal(got + 24, " [error] echo: Authorization: Bearer [redacted], X-Org: "
                                  "[redacted]; cut: [redacted]\n");
    free(got);

    /* the access log's escaping redacts too */
    char out[128];
    esc(out, sizeof(out), "/v1/sk-live-abcdefghijklmnop");
    assert_string_equal(out, "/v1/[redacted]");
    /* ... as whole replacements only */
    assert_int_equal(esc(out, 13, "/v1/sk-live-abcdefghijklmnop"), 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_access_log_file),
        cmocka_unit_test(test_access_log_fills),
        cmocka_unit_test(test_access_log_disabled),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_json_escape_truncation),
        cmocka_unit_test(test_log_time),
        cmocka_unit_test(test_log_levels),
        cmocka_unit_test(test_log_long_line),
        cmocka_unit_test(test_text_escape),
        cmocka_unit_test(test_log_injection),
        cmocka_unit_test(test_secrets), /* last: the secrets set only grows */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
