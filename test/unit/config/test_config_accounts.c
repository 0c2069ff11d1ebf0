/*
 * test_config_accounts.c - the settings of keys, budgets and usage records: `store` (path made
 * absolute at load, ":memory:" refused, commit_interval, retention in days),
 * `limits.default_max_cost`, the named management keys of `admin.keys` (never also auth keys),
 * route prices read exactly as micro-dollars, and what `llmux -t` shows of them.
 *
 * Runs with the repository root as working directory (CTest sets it); the tests that change
 * directory go back to it.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "core/status.h"

#define MINIMAL                                                                                    \
    "listen: 127.0.0.1:8080\n"                                                                     \
    "providers:\n"                                                                                 \
    "  - name: p\n"                                                                                \
    "    base_url: http://127.0.0.1:9000/v1\n"                                                     \
    "models:\n"                                                                                    \
    "  - id: m\n"                                                                                  \
    "    context_length: 100\n"                                                                    \
    "    providers:\n"                                                                             \
    "      - provider: p\n"

#define D1 "1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "3333333333333333333333333333333333333333333333333333333333333333"

static int parse(const char *text, char **errs, lx_config_t **cfg)
{
    size_t n;
    FILE *f = open_memstream(errs, &n);
    assert_non_null(f);
    int rc = lx_config_parse("t.yaml", text, strlen(text), f, cfg);
    fclose(f);
    return rc;
}

static lx_config_t *parse_ok(const char *text)
{
    char *errs = NULL;
    lx_config_t *cfg = NULL;
    int rc = parse(text, &errs, &cfg);
    if (rc != 0)
        fail_msg("unexpected errors:\n%s", errs);
    assert_non_null(cfg);
    assert_string_equal(errs, "");
    free(errs);
    return cfg;
}

/* <text> is refused with exactly one error line containing <needle>. */
static void expect_error(const char *text, const char *needle)
{
    char *errs = NULL;
    lx_config_t *cfg = (lx_config_t *)1;
    assert_int_equal(parse(text, &errs, &cfg), LX_ECONFIG);
    assert_null(cfg);
    size_t lines = 0;
    for (const char *c = errs; *c != '\0'; c++)
        lines += *c == '\n';
    if (strstr(errs, needle) == NULL || lines != 1)
        fail_msg("expected one error containing \"%s\", got:\n%s", needle, errs);
    free(errs);
}

static char *cwd_join(const char *name)
{
    char cwd[PATH_MAX], *out = NULL;
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_true(asprintf(&out, "%s/%s", cwd, name) > 0);
    return out;
}

static void test_defaults(void **state)
{
    (void)state;
    lx_config_t *cfg = parse_ok(MINIMAL "auth: none\n");
    char *want = cwd_join("llmux.db");
    assert_string_equal(cfg->store_path, want);
    free(want);
    assert_int_equal(cfg->store_commit_interval_ms, 50);
    assert_int_equal(cfg->store_retention_s, 90 * 86400);
    assert_int_equal(cfg->limits_default_max_cost, 1000000);
    assert_int_equal(cfg->n_admin_keys, 0);
    assert_null(cfg->admin_keys);
    assert_false(cfg->admin_enabled);
    assert_int_equal(cfg->models[0].routes[0].price_prompt_micros, 0);
    assert_int_equal(cfg->models[0].routes[0].price_completion_micros, 0);
    lx_config_unref(cfg);
}

static void test_store_settings(void **state)
{
    (void)state;
    lx_config_t *cfg = parse_ok(MINIMAL "auth: none\n"
                                        "store:\n"
                                        "  path: /var/lib/llmux/usage.db\n"
                                        "  commit_interval: 100ms\n"
                                        "  retention: 400d\n");
    assert_string_equal(cfg->store_path, "/var/lib/llmux/usage.db");
    assert_int_equal(cfg->store_commit_interval_ms, 100);
    assert_int_equal(cfg->store_retention_s, 400 * 86400);
    lx_config_unref(cfg);

    /* the bounds themselves */
    cfg = parse_ok(MINIMAL "auth: none\nstore: {commit_interval: 1ms, retention: 1d}\n");
    assert_int_equal(cfg->store_commit_interval_ms, 1);
    assert_int_equal(cfg->store_retention_s, 86400);
    lx_config_unref(cfg);
    cfg = parse_ok(MINIMAL "auth: none\nstore: {commit_interval: 10s, retention: 3650d}\n");
    assert_int_equal(cfg->store_commit_interval_ms, 10000);
    assert_int_equal(cfg->store_retention_s, 3650ull * 86400);
    lx_config_unref(cfg);
    cfg = parse_ok(MINIMAL "auth: none\nstore: {retention: 36h}\n");
    assert_int_equal(cfg->store_retention_s, 36 * 3600);
    lx_config_unref(cfg);
}

/* A relative path is the working directory's at load: a later chdir does not move it. */
static void test_store_path_resolved_at_load(void **state)
{
    (void)state;
    char home[PATH_MAX], dir[] = "/tmp/lx_cfg_XXXXXX";
    assert_non_null(getcwd(home, sizeof(home)));
    assert_non_null(mkdtemp(dir));

    lx_config_t *here = parse_ok(MINIMAL "auth: none\nstore: {path: ./data/llmux.db}\n");
    assert_int_equal(chdir(dir), 0);
    lx_config_t *there = parse_ok(MINIMAL "auth: none\nstore: {path: data/llmux.db}\n");
    lx_config_t *dflt = parse_ok(MINIMAL "auth: none\n");
    char cwd[PATH_MAX]; /* mkdtemp's name may sit behind a symbolic link: getcwd() says */
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(home), 0);
    assert_int_equal(rmdir(dir), 0);

    char *want = cwd_join("data/llmux.db");
    assert_string_equal(here->store_path, want);
    free(want);
    char want2[PATH_MAX + 32];
    snprintf(want2, sizeof(want2), "%s/data/llmux.db", cwd);
    assert_string_equal(there->store_path, want2);
    snprintf(want2, sizeof(want2), "%s/llmux.db", cwd);
    assert_string_equal(dflt->store_path, want2);
    lx_config_unref(here);
    lx_config_unref(there);
    lx_config_unref(dflt);
}

static void test_store_errors(void **state)
{
    (void)state;
    expect_error(MINIMAL "auth: none\nstore: {path: \":memory:\"}\n",
                 "t.yaml:11:15: store.path: ':memory:' is an in-memory database");
    expect_error(MINIMAL "auth: none\nstore: {path: \"file:x.db?mode=memory\"}\n",
                 "store.path: SQLite URIs");
    expect_error(MINIMAL "auth: none\nstore: {path: \"\"}\n", "store.path: empty");
    expect_error(MINIMAL "auth: none\nstore: {path: }\n", "store.path: missing value");
    expect_error(MINIMAL "auth: none\nstore: {path: /tmp}\n", "store.path: '/tmp' is a directory");
    expect_error(MINIMAL "auth: none\nstore: {path: db/}\n", "store.path: ends with '/'");
    expect_error(MINIMAL "auth: none\nstore: {path: [a]}\n", "store.path: expected a value");
    expect_error(MINIMAL "auth: none\nstore: {commit_interval: 11s}\n",
                 "store.commit_interval: must be from 1ms to 10s");
    expect_error(MINIMAL "auth: none\nstore: {commit_interval: 0s}\n",
                 "store.commit_interval: must be longer than 0s");
    expect_error(MINIMAL "auth: none\nstore: {commit_interval: 50}\n",
                 "store.commit_interval: a duration needs a unit");
    expect_error(MINIMAL "auth: none\nstore: {retention: 23h59m59s}\n",
                 "store.retention: must be at least 1d");
    expect_error(MINIMAL "auth: none\nstore: {retention: 3651d}\n",
                 "store.retention: duration is too large (at most 3650d)");
    expect_error(MINIMAL "auth: none\nstore: {retention: 1d500ms}\n",
                 "store.retention: must be whole seconds");
    expect_error(MINIMAL "auth: none\nstore: {retention: 90}\n",
                 "store.retention: a duration needs a unit");
    expect_error(MINIMAL "auth: none\nstore: {size: 1GiB}\n", "unknown key 'size' in store");
    expect_error(MINIMAL "auth: none\nstore: on\n", "store");
}

static void test_default_max_cost(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t micros;
    } good[] = {{"0.5", 500000}, {"2", 2000000},
                {"0.000001", 1}, {"123456.789", 123456789000},
                {"1e-2", 10000}, {"1000000000", INT64_C(1000000000000000)}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text), MINIMAL "auth: none\nlimits: {default_max_cost: %s}\n",
                 good[i].text);
        lx_config_t *cfg = parse_ok(text);
        assert_int_equal(cfg->limits_default_max_cost, good[i].micros);
        lx_config_unref(cfg);
    }
    expect_error(MINIMAL "auth: none\nlimits: {default_max_cost: 0}\n",
                 "limits.default_max_cost: must be more than 0");
    expect_error(MINIMAL "auth: none\nlimits: {default_max_cost: -1}\n",
                 "limits.default_max_cost: cannot be negative");
    expect_error(MINIMAL "auth: none\nlimits: {default_max_cost: 0.0000001}\n",
                 "limits.default_max_cost: at most 6 decimals");
    expect_error(MINIMAL "auth: none\nlimits: {default_max_cost: 1000000000.5}\n",
                 "limits.default_max_cost: amount is too large");
    expect_error(MINIMAL "auth: none\nlimits: {default_max_cost: one dollar}\n",
                 "limits.default_max_cost: expected a decimal number");
    expect_error(MINIMAL "auth: none\nlimits: {default_max_cost: $1}\n",
                 "limits.default_max_cost: expected a decimal number");
}

static void test_management_keys_list(void **state)
{
    (void)state;
    lx_config_t *cfg =
        parse_ok(MINIMAL "auth:\n"
                         "  keys: [{name: alice, sha256: " D1 "}]\n"
                         "admin:\n"
                         "  sha256: " D2 "\n"
                         "  keys:\n"
                         "    - {name: ops, sha256: " D3 "}\n"
                         "    - name: billing\n"
                         "      sha256: "
                         "4444444444444444444444444444444444444444444444444444444444444"
                         "444\n");
    assert_int_equal(cfg->n_admin_keys, 3);
    assert_string_equal(cfg->admin_keys[0].name, "admin");
    assert_int_equal(cfg->admin_keys[0].digest[0], 0x22);
    assert_memory_equal(cfg->admin_keys[0].digest, cfg->admin_digest, 32);
    assert_true(cfg->admin_enabled);
    assert_string_equal(cfg->admin_keys[1].name, "ops");
    assert_int_equal(cfg->admin_keys[1].digest[31], 0x33);
    assert_string_equal(cfg->admin_keys[2].name, "billing");
    assert_int_equal(cfg->admin_keys[2].digest[0], 0x44);
    assert_int_equal(cfg->n_keys, 1);
    lx_config_unref(cfg);

    /* named keys alone: no admin.sha256, so no /admin/ key */
    cfg = parse_ok(MINIMAL "auth: none\nadmin:\n  keys: [{name: ops, sha256: " D3 "}]\n");
    assert_int_equal(cfg->n_admin_keys, 1);
    assert_string_equal(cfg->admin_keys[0].name, "ops");
    assert_false(cfg->admin_enabled);
    lx_config_unref(cfg);

    /* admin.sha256 alone is one management key */
    cfg = parse_ok(MINIMAL "auth: none\nadmin: {sha256: " D2 "}\n");
    assert_int_equal(cfg->n_admin_keys, 1);
    assert_string_equal(cfg->admin_keys[0].name, "admin");
    assert_true(cfg->admin_enabled);
    lx_config_unref(cfg);
}

static void test_management_key_errors(void **state)
{
    (void)state;
    /* a management key that is also an auth key: both named */
    expect_error(MINIMAL "auth:\n  keys: [{name: alice, sha256: " D1 "}]\n"
                         "admin:\n  keys: [{name: ops, sha256: " D1 "}]\n",
                 "admin.keys[0].sha256: management key 'ops' is also the auth key 'alice'");
    expect_error(MINIMAL "auth:\n  keys: [{name: alice, sha256: " D1 "}]\n"
                         "admin:\n  sha256: " D1 "\n",
                 "admin.sha256: management key 'admin' is also the auth key 'alice'");
    /* ... whatever the order of the sections in the file */
    expect_error(MINIMAL "admin:\n  keys: [{name: ops, sha256: " D1 "}]\n"
                         "auth:\n  keys: [{name: alice, sha256: " D1 "}]\n",
                 "management key 'ops' is also the auth key 'alice'");
    /* duplicates among the management keys */
    expect_error(MINIMAL "auth: none\nadmin:\n  keys:\n"
                         "    - {name: ops, sha256: " D1 "}\n"
                         "    - {name: ops, sha256: " D2 "}\n",
                 "admin.keys[1].name: duplicate key name 'ops'");
    expect_error(MINIMAL "auth: none\nadmin:\n  keys:\n"
                         "    - {name: ops, sha256: " D1 "}\n"
                         "    - {name: ops2, sha256: " D1 "}\n",
                 "admin.keys[1].sha256: the same key is already listed as 'ops'");
    expect_error(MINIMAL "auth: none\nadmin:\n  sha256: " D1 "\n"
                         "  keys: [{name: admin, sha256: " D2 "}]\n",
                 "admin.keys[0].name: duplicate key name 'admin'");
    expect_error(MINIMAL "auth: none\nadmin:\n  sha256: " D1 "\n"
                         "  keys: [{name: ops, sha256: " D1 "}]\n",
                 "admin.keys[0].sha256: the same key is already listed as 'admin'");
    expect_error(MINIMAL "auth: none\nadmin:\n  keys: [{name: ops, sha256: abc}]\n",
                 "admin.keys[0].sha256: expected 64 hex digits");
    expect_error(MINIMAL "auth: none\nadmin:\n  keys: [{name: \"o p\", sha256: " D1 "}]\n",
                 "admin.keys[0].name: names use letters");
    expect_error(MINIMAL "auth: none\nadmin:\n  keys: [{name: ops}]\n",
                 "missing required key 'sha256' in admin.keys[0]");
    expect_error(MINIMAL "auth: none\nadmin:\n  keys: {name: ops, sha256: " D1 "}\n", "admin.keys");
    expect_error(MINIMAL "auth: none\nadmin:\n  keys: [{name: ops, sha256: " D1 ", role: x}]\n",
                 "unknown key 'role' in admin.keys[0]");
}

/* Route prices: the double as before, and the same text exactly in µ$ per million tokens. */
static void test_prices_exact(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t micros;
        double usd;
    } good[] = {{"0.15", 150000, 0.15},
                {"0.000001", 1, 0.000001},
                {"123456.789", 123456789000, 123456.789},
                {"0.1", 100000, 0.1},
                {"0.3", 300000, 0.3},
                {"2.5e-1", 250000, 0.25},
                {".07", 70000, 0.07},
                {"1000000000", INT64_C(1000000000000000), 1e9}};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char text[512];
        snprintf(text, sizeof(text),
                 MINIMAL "        price: {prompt: %s, completion: %s}\nauth: none\n", good[i].text,
                 good[i].text);
        lx_config_t *cfg = parse_ok(text);
        const lx_config_route_t *r = &cfg->models[0].routes[0];
        if (r->price_prompt_micros != good[i].micros ||
            r->price_completion_micros != good[i].micros)
            fail_msg("'%s': got %lld / %lld, want %lld", good[i].text,
                     (long long)r->price_prompt_micros, (long long)r->price_completion_micros,
                     (long long)good[i].micros);
        assert_true(r->price_prompt == good[i].usd);
        assert_true(r->price_completion == good[i].usd);
        lx_config_unref(cfg);
    }
    /* one price without the other: the other stays 0 */
    lx_config_t *cfg = parse_ok(MINIMAL "        price: {completion: 0.6}\nauth: none\n");
    assert_int_equal(cfg->models[0].routes[0].price_prompt_micros, 0);
    assert_int_equal(cfg->models[0].routes[0].price_completion_micros, 600000);
    lx_config_unref(cfg);

    expect_error(MINIMAL "        price: {prompt: 0.0000001}\nauth: none\n",
                 "models[0].providers[0].price.prompt: at most 6 decimals");
    expect_error(MINIMAL "        price: {completion: 1.0000005}\nauth: none\n",
                 "price.completion: at most 6 decimals");
    expect_error(MINIMAL "        price: {prompt: -1}\nauth: none\n", "cannot be negative");
    expect_error(MINIMAL "        price: {prompt: 2e9}\nauth: none\n", "too large");
}

static char *dump(const lx_config_t *cfg)
{
    char *text = NULL;
    size_t n;
    FILE *f = open_memstream(&text, &n);
    assert_non_null(f);
    lx_config_dump(cfg, f);
    fclose(f);
    return text;
}

static void test_dump(void **state)
{
    (void)state;
    lx_config_t *cfg =
        parse_ok(MINIMAL "        price: {prompt: 0.000001, completion: 123456.789}\n"
                         "auth: none\n"
                         "limits: {default_max_cost: 0.25}\n"
                         "store:\n"
                         "  path: /srv/llmux/usage.db\n"
                         "  commit_interval: 20ms\n"
                         "  retention: 30d\n"
                         "admin:\n"
                         "  sha256: " D2 "\n"
                         "  keys: [{name: ops, sha256: " D3 "}]\n");
    char *text = dump(cfg);
    static const char *const want[] = {
        "limits: max_header_size 16KiB, max_body_size 32MiB, default_max_cost $0.25\n",
        "store: /srv/llmux/usage.db, commit_interval 20ms, retention 30d\n",
        "    -> p as m, $0.000001 prompt / $123456.789 completion per 1M tokens\n",
        "management keys: 2: admin ops\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (strstr(text, want[i]) == NULL)
            fail_msg("summary lacks \"%s\":\n%s", want[i], text);
    }
    /* digests never appear */
    assert_null(strstr(text, "3333"));
    assert_null(strstr(text, "2222"));
    free(text);
    lx_config_unref(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_store_settings),
        cmocka_unit_test(test_store_path_resolved_at_load),
        cmocka_unit_test(test_store_errors),
        cmocka_unit_test(test_default_max_cost),
        cmocka_unit_test(test_management_keys_list),
        cmocka_unit_test(test_management_key_errors),
        cmocka_unit_test(test_prices_exact),
        cmocka_unit_test(test_dump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
