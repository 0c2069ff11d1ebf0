/*
 * test_keys_cli.c - `llmux keys ...` (account/keys_cli.h) on a real store file in a temporary
 * directory: create (the plaintext key once, first), list, show, update, disable, delete, the
 * usage errors (exit 2), a key that does not exist and a file that is not a database (exit 1).
 * Answers are read back with jsmn.
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

#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

#include "account/keys_cli.h"
#include "store/keyset.h"

static char dir[64];
static char path[128];
static char *out_text, *err_text;

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/llmux-keys-cli-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(path, sizeof(path), "%s/store.db", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(out_text);
    free(err_text);
    out_text = err_text = NULL;
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Runs `llmux keys <args...>` (NULL-terminated) on <path>; out_text and err_text hold what
 * it printed. */
static int keys(const char *first, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a != NULL && argc < 31; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    free(out_text);
    free(err_text);
    size_t on, en;
    FILE *out = open_memstream(&out_text, &on);
    FILE *err = open_memstream(&err_text, &en);
    assert_non_null(out);
    assert_non_null(err);
    int rc = lx_keys_cli_main(path, argc, argv, out, err);
    fclose(out);
    fclose(err);
    return rc;
}

static jsmntok_t toks[1024];
static const char *doc;

/* Reads the JSON document at <s> (up to its newline). */
static void read_json(const char *s)
{
    const char *nl = strchr(s, '\n');
    assert_non_null(nl);
    assert_string_equal(nl + 1, "");
    jsmn_parser p;
    jsmn_init(&p);
    doc = s;
    int n = jsmn_parse(&p, s, (size_t)(nl - s), toks, sizeof(toks) / sizeof(toks[0]));
    if (n < 1 || toks[0].end != nl - s)
        fail_msg("not one JSON document: %s", s);
}

static int tok_skip(int i)
{
    int n = toks[i].size, j = i + 1;
    for (int k = 0; k < n; k++)
        j = toks[i].type == JSMN_OBJECT ? tok_skip(j + 1) : tok_skip(j);
    return j;
}

static int member(int obj, const char *name)
{
    assert_int_equal(toks[obj].type, JSMN_OBJECT);
    int j = obj + 1;
    for (int k = 0; k < toks[obj].size; k++) {
        size_t n = strlen(name);
        if ((size_t)(toks[j].end - toks[j].start) == n && memcmp(doc + toks[j].start, name, n) == 0)
            return j + 1;
        j = tok_skip(j + 1);
    }
    fail_msg("no member %s in %s", name, doc);
    return -1;
}

static void want_value(int obj, const char *name, const char *want)
{
    int v = member(obj, name);
    size_t n = strlen(want);
    if ((size_t)(toks[v].end - toks[v].start) != n || memcmp(doc + toks[v].start, want, n) != 0)
        fail_msg("%s is %.*s, want %s", name, toks[v].end - toks[v].start, doc + toks[v].start,
                 want);
}

static char hash[65];
static char secret[LX_KEY_SECRET_LEN + 1];

/* Creates the key the tests work on. */
static void create_key(void)
{
    int rc = keys("create", "--name", "ops \"team\"", "--limit", "5", "--limit-reset=daily",
                  "--models", "meta-llama/*,openai/gpt-4o", "--rpm", "60", "--provider",
                  "{\"sort\":\"price\"}", "--expires-at", "2099-01-01T00:00:00Z", NULL);
    if (rc != 0)
        fail_msg("create: %d %s", rc, err_text);
    assert_string_equal(err_text, "");
    /* the plaintext key alone on the first line, then the key's JSON without it */
    const char *nl = strchr(out_text, '\n');
    assert_non_null(nl);
    assert_int_equal(nl - out_text, LX_KEY_SECRET_LEN);
    assert_memory_equal(out_text, LX_KEY_PREFIX, strlen(LX_KEY_PREFIX));
    memcpy(secret, out_text, LX_KEY_SECRET_LEN);
    secret[LX_KEY_SECRET_LEN] = '\0';
    assert_null(strstr(nl + 1, secret));
    read_json(nl + 1);
    int d = member(0, "data");
    int h = member(d, "hash");
    assert_int_equal(toks[h].end - toks[h].start, 64);
    memcpy(hash, doc + toks[h].start, 64);
    hash[64] = '\0';
    want_value(d, "name", "ops \\\"team\\\"");
    want_value(d, "limit", "5");
    want_value(d, "limit_reset", "daily");
    want_value(d, "disabled", "false");
    want_value(d, "expires_at", "2099-01-01T00:00:00Z");
    int m = member(d, "models");
    assert_int_equal(toks[m].size, 2);
    want_value(member(d, "rate_limit"), "rpm", "60");
    want_value(member(d, "rate_limit"), "tpm", "0");
    want_value(member(d, "provider"), "sort", "price");
    want_value(d, "priority", "interactive"); /* the default */
}

static void test_create_show_list(void **state)
{
    (void)state;
    create_key();
    assert_int_equal(keys("show", hash, NULL), 0);
    read_json(out_text);
    want_value(member(0, "data"), "hash", hash);
    assert_null(strstr(out_text, secret));
    /* upper-case hex names the same key */
    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (char)(hash[i] >= 'a' && hash[i] <= 'f' ? hash[i] - 32 : hash[i]);
    assert_int_equal(keys("show", upper, NULL), 0);
    assert_int_equal(keys("create", "--name=second", NULL), 0);
    assert_int_equal(keys("list", NULL), 0);
    read_json(out_text);
    assert_int_equal(toks[member(0, "data")].size, 2);
    /* the plaintext key is in no answer, and not in the file */
    assert_null(strstr(out_text, secret));
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char file[1 << 20];
    size_t n = fread(file, 1, sizeof(file), f);
    fclose(f);
    assert_null(memmem(file, n, secret, strlen(secret)));
}

static void test_update_disable_delete(void **state)
{
    (void)state;
    create_key();
    /* a rate limit not given keeps its value */
    assert_int_equal(keys("update", hash, "--tpm", "1000", "--limit", "7.25", NULL), 0);
    read_json(out_text);
    int d = member(0, "data");
    want_value(member(d, "rate_limit"), "rpm", "60");
    want_value(member(d, "rate_limit"), "tpm", "1000");
    want_value(d, "limit", "7.25");
    want_value(d, "name", "ops \\\"team\\\"");
    assert_int_equal(keys("update", hash, "--no-limit", "--models", "", NULL), 0);
    read_json(out_text);
    d = member(0, "data");
    want_value(d, "limit", "null");
    want_value(d, "models", "null");
    assert_int_equal(keys("update", hash, "--limit-reset", "none", NULL), 0);
    read_json(out_text);
    want_value(member(0, "data"), "limit_reset", "null");
    /* priority: set by update, kept by the next update, shown by show and list */
    assert_int_equal(keys("update", hash, "--priority", "batch", NULL), 0);
    read_json(out_text);
    want_value(member(0, "data"), "priority", "batch");
    assert_int_equal(keys("update", hash, "--tpm", "5", NULL), 0);
    read_json(out_text);
    want_value(member(0, "data"), "priority", "batch");
    assert_int_equal(keys("show", hash, NULL), 0);
    read_json(out_text);
    want_value(member(0, "data"), "priority", "batch");
    assert_int_equal(keys("create", "--name", "bulk", "--priority=batch", NULL), 0);
    read_json(strchr(out_text, '\n') + 1);
    want_value(member(0, "data"), "priority", "batch");
    char bulk[65];
    int bh = member(member(0, "data"), "hash");
    snprintf(bulk, sizeof(bulk), "%.*s", toks[bh].end - toks[bh].start, doc + toks[bh].start);
    assert_int_equal(keys("delete", bulk, NULL), 0); /* (the lists below count one key) */

    assert_int_equal(keys("disable", hash, NULL), 0);
    read_json(out_text);
    want_value(member(0, "data"), "disabled", "true");
    assert_int_equal(keys("list", NULL), 0);
    read_json(out_text);
    assert_int_equal(toks[member(0, "data")].size, 0);
    assert_int_equal(keys("list", "--all", NULL), 0);
    read_json(out_text);
    assert_int_equal(toks[member(0, "data")].size, 1);
    assert_int_equal(keys("update", hash, "--enable", NULL), 0);
    read_json(out_text);
    want_value(member(0, "data"), "disabled", "false");

    assert_int_equal(keys("delete", hash, NULL), 0);
    assert_string_equal(out_text, "{\"deleted\":true}\n");
    assert_int_equal(keys("show", hash, NULL), 1);
    assert_non_null(strstr(err_text, hash));
    assert_int_equal(keys("delete", hash, NULL), 1);
    assert_int_equal(keys("update", hash, "--rpm", "1", NULL), 1);
}

/* Refused with exit status <want> and a message containing <what>. */
static void refused(int rc, int want, const char *what)
{
    if (rc != want || strstr(err_text, what) == NULL)
        fail_msg("exit %d (want %d), stderr \"%s\" (want \"%s\")", rc, want, err_text, what);
    assert_string_equal(out_text, "");
}

static void test_usage_errors(void **state)
{
    (void)state;
    refused(keys(NULL), 2, "usage");
    refused(keys("frobnicate", NULL), 2, "usage");
    assert_int_equal(keys("help", NULL), 0);
    assert_non_null(strstr(out_text, "create --name"));
    refused(keys("create", NULL), 2, "name is required");
    refused(keys("create", "--name", NULL), 2, "--name needs a value");
    refused(keys("create", "--name", "k", "--bogus", NULL), 2, "unknown option --bogus");
    refused(keys("create", "--name", "k", "--no-limit", NULL), 2, "unknown option --no-limit");
    refused(keys("create", "--name", "k", "--disabled=yes", NULL), 2, "takes no value");
    refused(keys("create", "--name", "k", "--limit", "-1", NULL), 2, "limit");
    refused(keys("create", "--name", "k", "--limit", "abc", NULL), 2, "--limit");
    refused(keys("create", "--name", "k", "--limit", "true", NULL), 2, "--limit");
    refused(keys("create", "--name", "k", "--limit", "1,\"x\":2", NULL), 2, "--limit");
    refused(keys("create", "--name", "k", "--rpm", "1.5", NULL), 2, "rate_limit.rpm");
    refused(keys("create", "--name", "k", "--rpm", "60}", NULL), 2, "--rpm");
    refused(keys("create", "--name", "k", "--limit-reset", "yearly", NULL), 2, "limit_reset");
    refused(keys("create", "--name", "k", "--priority", "high", NULL), 2,
            "priority must be \"interactive\", \"batch\" or null");
    refused(keys("create", "--name", "k", "--provider", "{", NULL), 2, "--provider");
    refused(keys("create", "--name", "k", "--provider", "{},\"name\":\"x\"", NULL), 2,
            "--provider");
    refused(keys("create", "--name", "k", "--provider", "{\"sort\":\"x\"}", NULL), 2,
            "provider.sort");
    refused(keys("create", "--name", "k", "--expires-at", "2001-01-01T00:00:00Z", NULL), 2,
            "future");
    refused(keys("create", "--name", "", NULL), 2, "name");
    refused(keys("create", "--name", "a\nb", NULL), 2, "name");
    refused(keys("create", "--name", "k", "--models", "a,,b", NULL), 2, "models[1]");
    refused(keys("create", "--name", "k", "extra", NULL), 2, "unexpected argument");
    refused(keys("show", NULL), 2, "hash");
    refused(keys("show", "abc", NULL), 2, "64 hex digits");
    refused(keys("show", "0000000000000000000000000000000000000000000000000000000000000000", "more",
                 NULL),
            2, "unexpected argument");
    refused(
        keys("update", "0000000000000000000000000000000000000000000000000000000000000000", NULL), 2,
        "nothing to change");
    refused(keys("update", "0000000000000000000000000000000000000000000000000000000000000000",
                 "--expires-at", "2099-01-01T00:00:00Z", NULL),
            2, "unknown option --expires-at");
    refused(keys("list", "--all=1", NULL), 2, "takes no value");
    /* nothing above touched the store (usage errors come first) */
    assert_int_equal(access(path, F_OK), -1);
    refused(keys("show", "0000000000000000000000000000000000000000000000000000000000000000", NULL),
            1, "no key");
}

static void test_bad_store(void **state)
{
    (void)state;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < 4096; i++)
        fputc("not a database "[i % 15], f);
    fclose(f);
    refused(keys("list", NULL), 1, path);
    refused(keys("create", "--name", "k", NULL), 1, path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_show_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_disable_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_store, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
