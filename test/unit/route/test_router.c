/*
 * test_router.c - the attempt plan (filters, order, sorts, weights, models chain, unavailable
 * candidates, round robin) and the power-of-two-choices endpoint pick.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/status.h"
#include "llm/body.h"
#include "route/prefs.h"
#include "route/router.h"

#define MAXC 16

static lx_router_cand_t cands[MAXC];
static size_t n_cands;
static lx_prefs_t prefs;
static lx_router_opts_t opts;
static uint16_t plan[MAXC];
static char why[256];
static uint64_t rng;
static char body[2048];
static lx_body_scan_t scan;

static void reset(void)
{
    memset(cands, 0, sizeof(cands));
    n_cands = 0;
    lx_prefs_init(&prefs);
    memset(&opts, 0, sizeof(opts));
    opts.strategy = LX_ROUTER_HEALTH;
    opts.exploration = 0.05;
    rng = 42;
}

static int setup(void **state)
{
    (void)state;
    reset();
    return 0;
}

/* Adds a candidate: model <model> (rank <rank>), provider <prov>, price prompt + completion,
 * health score with data, available, no flags, every parameter. Returns it for tweaking. */
static lx_router_cand_t *add(uint16_t rank, const char *model, const char *prov, double pp,
                             double pc, double score)
{
    lx_router_cand_t *c = &cands[n_cands];
    c->model_rank = rank;
    c->model = model;
    c->model_len = strlen(model);
    c->provider = prov;
    c->provider_len = strlen(prov);
    c->price_prompt = pp;
    c->price_completion = pc;
    c->score = score;
    c->has_data = true;
    c->tps_p50 = -1;
    c->ttft_p50_ms = -1;
    c->available = true;
    c->user = (uint32_t)(1000 + n_cands);
    n_cands++;
    return c;
}

/* Sets prefs from a provider object (and optional extra top-level members). */
static void use_provider(const char *provider, const char *extra)
{
    snprintf(body, sizeof(body), "{\"model\":\"m\",\"provider\":%s%s}", provider,
             extra ? extra : "");
    if (lx_body_scan(body, strlen(body), &scan) != 0)
        fail_msg("bad test body %s", body);
    char err[128];
    if (lx_prefs_parse(body, strlen(body), &scan, &prefs, err, sizeof(err)) != 0)
        fail_msg("prefs %s: %s", provider, err);
    if (prefs.require_parameters &&
        lx_prefs_request_params(body, strlen(body), &prefs, err, sizeof(err)) != 0)
        fail_msg("params: %s", err);
}

static int run(void)
{
    memset(plan, 0xff, sizeof(plan));
    return lx_router_plan(&opts, &prefs, cands, n_cands, &rng, plan, MAXC, why, sizeof(why));
}

/* Checks the plan is exactly the candidates named by provider, in this order. */
static void expect_plan(const char *want)
{
    int n = run();
    char got[256] = "";
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        assert_true(plan[i] < n_cands);
        o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%.*s", i ? " " : "",
                              (int)cands[plan[i]].provider_len, cands[plan[i]].provider);
    }
    if (n < 0 || strcmp(got, want) != 0)
        fail_msg("plan: got \"%s\" (rc %d, %s), want \"%s\"", got, n, why, want);
}

static void expect_none(const char *want_why)
{
    int n = run();
    if (n != LX_ENOROUTE)
        fail_msg("rc %d, want LX_ENOROUTE", n);
    if (strcmp(why, want_why) != 0)
        fail_msg("why:\n  got  %s\n  want %s", why, want_why);
}

static void test_basics(void **state)
{
    (void)state;
    expect_none("no provider serves the requested model");
    add(0, "m", "a", 1, 1, 1);
    expect_plan("a");
    assert_int_equal(cands[plan[0]].user, 1000);
    /* plan_cap cuts the plan */
    add(0, "m", "b", 1, 1, 1);
    assert_int_equal(lx_router_plan(&opts, &prefs, cands, 2, &rng, plan, 1, why, sizeof(why)), 1);
    assert_int_equal(lx_router_plan(&opts, &prefs, cands, 2, &rng, plan, 0, why, sizeof(why)), 0);
    /* too many candidates */
    static lx_router_cand_t many[LX_ROUTER_MAX_CANDS + 1];
    for (size_t i = 0; i < LX_ROUTER_MAX_CANDS + 1; i++)
        many[i] = cands[0];
    assert_int_equal(lx_router_plan(&opts, &prefs, many, LX_ROUTER_MAX_CANDS + 1, &rng, plan, MAXC,
                                    why, sizeof(why)),
                     LX_ETOOBIG);
    int n = lx_router_plan(&opts, &prefs, many, LX_ROUTER_MAX_CANDS, &rng, plan, MAXC, why,
                           sizeof(why));
    assert_int_equal(n, MAXC);
}

static void test_filter_only_ignore(void **state)
{
    (void)state;
    add(0, "m", "a", 1, 1, 1);
    add(0, "m", "b", 1, 1, 1);
    add(0, "m", "deepinfra/turbo", 1, 1, 1);
    use_provider("{\"only\":[\"B\",\"deepinfra\"],\"sort\":\"price\"}", NULL);
    expect_plan("b deepinfra/turbo");
    use_provider("{\"only\":[\"x\",\"y\"]}", NULL);
    expect_none("no provider of model m matches provider.only [x, y]");
    use_provider("{\"ignore\":[\"a\"],\"sort\":\"price\"}", NULL);
    expect_plan("b deepinfra/turbo");
    use_provider("{\"ignore\":[\"a\",\"b\",\"deepinfra\"]}", NULL);
    expect_none("every provider of model m is in provider.ignore [a, b, deepinfra]");
    /* only, then ignore removes the rest: ignore is named */
    use_provider("{\"only\":[\"a\"],\"ignore\":[\"a\"]}", NULL);
    expect_none("every provider of model m is in provider.ignore [a]");
}

static void test_filter_max_price(void **state)
{
    (void)state;
    add(0, "m", "cheap", 0.1, 0.2, 1);
    add(0, "m", "dear_prompt", 5, 0.2, 1);
    add(0, "m", "dear_completion", 0.1, 9, 1);
    use_provider("{\"max_price\":{\"prompt\":1,\"completion\":1},\"sort\":\"price\"}", NULL);
    expect_plan("cheap");
    use_provider("{\"max_price\":{\"prompt\":1},\"sort\":\"price\"}", NULL);
    expect_plan("cheap dear_completion");
    use_provider("{\"max_price\":{\"completion\":1},\"sort\":\"price\"}", NULL);
    expect_plan("cheap dear_prompt");
    use_provider("{\"max_price\":{\"prompt\":0.1,\"completion\":0.2},\"sort\":\"price\"}", NULL);
    expect_plan("cheap"); /* the limit itself is allowed */
    use_provider("{\"max_price\":{\"prompt\":0.05}}", NULL);
    expect_none("all providers of model m cost more than provider.max_price");
}

static void test_filter_policy(void **state)
{
    (void)state;
    add(0, "m", "a", 1, 1, 1);
    add(0, "m", "b", 1, 1, 1)->data_collection_deny = true;
    lx_router_cand_t *c = add(0, "m", "c", 1, 1, 1);
    c->data_collection_deny = true;
    c->zdr = true;
    use_provider("{\"data_collection\":\"deny\",\"sort\":\"price\"}", NULL);
    expect_plan("b c");
    use_provider("{\"zdr\":true,\"sort\":\"price\"}", NULL);
    expect_plan("c");
    use_provider("{\"only\":[\"a\"],\"data_collection\":\"deny\"}", NULL);
    expect_none("no provider of model m satisfies data_collection: deny");
    use_provider("{\"ignore\":[\"c\"],\"zdr\":true}", NULL);
    expect_none("no provider of model m satisfies zdr: true");
    use_provider("{\"data_collection\":\"allow\",\"zdr\":false,\"sort\":\"price\"}", NULL);
    expect_plan("a b c");
}

static void test_filter_params(void **state)
{
    (void)state;
    static const char *const basic[] = {"temperature", "top_p"};
    static const char *const tools[] = {"temperature", "tools", "tool_choice", "top_p"};
    lx_router_cand_t *c = add(0, "m", "a", 1, 1, 1);
    c->params = basic;
    c->n_params = 2;
    c = add(0, "m", "b", 1, 1, 1);
    c->params = tools;
    c->n_params = 4;
    add(0, "m", "c", 1, 1, 1); /* no list: supports everything */
    use_provider("{\"require_parameters\":true,\"sort\":\"price\"}",
                 ",\"tools\":[],\"temperature\":0.2,\"top_k\":null");
    assert_int_equal(prefs.n_params, 2);
    expect_plan("b c");
    use_provider("{\"require_parameters\":true,\"sort\":\"price\"}", ",\"temperature\":1");
    expect_plan("a b c");
    /* without require_parameters, parameters do not filter */
    use_provider("{\"sort\":\"price\"}", ",\"tools\":[],\"seed\":1");
    expect_plan("a b c");
    use_provider("{\"require_parameters\":true,\"ignore\":[\"c\"]}",
                 ",\"tools\":[],\"seed\":1,\"temperature\":1,\"logprobs\":true");
    expect_none("no provider of model m supports every requested parameter (tools, seed, "
                "logprobs)");
}

static void test_order(void **state)
{
    (void)state;
    add(0, "m", "a", 1, 1, 0.9);
    add(0, "m", "b", 1, 1, 1.0);
    add(0, "m", "c", 1, 1, 0.5);
    add(0, "m", "d", 2, 2, 1.0);
    /* listed first, in order; the rest by descending weight, no randomness */
    use_provider("{\"order\":[\"c\",\"a\",\"zzz\"]}", NULL);
    for (uint64_t seed = 0; seed < 50; seed++) {
        rng = seed;
        expect_plan("c a b d");
    }
    use_provider("{\"order\":[\"c\",\"a\"],\"allow_fallbacks\":false}", NULL);
    expect_plan("c a");
    /* with a sort, the rest follow the sort */
    use_provider("{\"order\":[\"d\"],\"sort\":\"price\"}", NULL);
    expect_plan("d b a c");
    use_provider("{\"order\":[\"x\",\"y\"],\"allow_fallbacks\":false}", NULL);
    expect_none("provider.order and allow_fallbacks: false leave no provider of model m");
    /* a listed provider that is unavailable still goes last */
    cands[2].available = false;
    use_provider("{\"order\":[\"c\",\"a\"]}", NULL);
    expect_plan("a b d c");
}

static void test_sorts(void **state)
{
    (void)state;
    lx_router_cand_t *c = add(0, "m", "a", 3, 3, 1);
    c->tps_p50 = 50;
    c->ttft_p50_ms = 300;
    c = add(0, "m", "b", 1, 1, 0.2);
    c->tps_p50 = 120;
    c->ttft_p50_ms = 900;
    c = add(0, "m", "c", 2, 2, 1);
    c->has_data = false; /* no figures */
    c->tps_p50 = 500;
    c->ttft_p50_ms = 1;
    c = add(0, "m", "d", 0.5, 0.5, 1);
    c->tps_p50 = 80;
    c->ttft_p50_ms = 0;
    c = add(0, "m", "e", 1, 1, 0.9); /* same price as b, better score */
    c->tps_p50 = 0;                  /* unknown */
    c->ttft_p50_ms = 100;

    use_provider("{\"sort\":\"price\"}", NULL);
    expect_plan("d e b c a");
    use_provider("{\"sort\":\"throughput\"}", NULL);
    expect_plan("b d a e c");
    use_provider("{\"sort\":\"latency\"}", NULL);
    expect_plan("d e a b c");
    /* suffixes set the sort */
    lx_prefs_init(&prefs);
    size_t len = 7;
    lx_prefs_model_suffix("m:nitro", &len, &prefs);
    expect_plan("b d a e c");
    lx_prefs_init(&prefs);
    len = 7;
    lx_prefs_model_suffix("m:floor", &len, &prefs);
    expect_plan("d e b c a");
}

static void test_partition(void **state)
{
    (void)state;
    /* given interleaved: the plan still follows model rank */
    add(1, "fb", "fb-slow", 0.1, 0.1, 1)->tps_p50 = 10;
    add(0, "m", "m-slow", 1, 1, 1)->tps_p50 = 20;
    add(2, "fb2", "fb2-fast", 1, 1, 1)->tps_p50 = 900;
    add(0, "m", "m-fast", 5, 5, 1)->tps_p50 = 100;
    add(1, "fb", "fb-fast", 0.2, 0.2, 1)->tps_p50 = 200;
    use_provider("{\"sort\":\"throughput\"}", NULL);
    expect_plan("m-fast m-slow fb-fast fb-slow fb2-fast");
    use_provider("{\"sort\":{\"by\":\"throughput\",\"partition\":\"none\"}}", NULL);
    expect_plan("fb2-fast fb-fast m-fast m-slow fb-slow");
    use_provider("{\"sort\":\"price\"}", ",\"route\":\"sort\"");
    expect_plan("fb-slow fb-fast m-slow fb2-fast m-fast");
    /* order under partition none: listed first across models, in model order on a tie */
    use_provider("{\"order\":[\"fb-slow\",\"m-slow\"],\"sort\":{\"by\":\"throughput\","
                 "\"partition\":\"none\"}}",
                 NULL);
    expect_plan("fb-slow m-slow fb2-fast fb-fast m-fast");
    /* partition none without a sort: groups by model (default rule) */
    use_provider("{}", ",\"route\":\"sort\"");
    int n = run();
    assert_int_equal(n, 5);
    assert_int_equal(cands[plan[0]].model_rank, 0);
    assert_int_equal(cands[plan[1]].model_rank, 0);
    assert_int_equal(cands[plan[2]].model_rank, 1);
    assert_int_equal(cands[plan[3]].model_rank, 1);
    assert_int_equal(cands[plan[4]].model_rank, 2);
}

static void test_unavailable_last(void **state)
{
    (void)state;
    add(0, "m", "a", 1, 1, 1)->available = false;
    add(0, "m", "b", 2, 2, 1);
    add(1, "f", "c", 1, 1, 1);
    add(1, "f", "d", 1, 1, 1)->available = false;
    use_provider("{\"sort\":\"price\"}", NULL);
    expect_plan("b c a d");
    /* the default rule never draws an unavailable one first */
    lx_prefs_init(&prefs);
    for (uint64_t seed = 0; seed < 200; seed++) {
        rng = seed;
        expect_plan("b c a d");
    }
    /* all unavailable: still a plan */
    for (size_t i = 0; i < n_cands; i++)
        cands[i].available = false;
    use_provider("{\"sort\":\"price\"}", NULL);
    expect_plan("a b c d");
}

static void test_no_fallbacks(void **state)
{
    (void)state;
    add(0, "m", "a", 1, 1, 1)->available = false;
    add(0, "m", "b", 2, 2, 1);
    add(0, "m", "c", 3, 3, 1);
    add(1, "f", "d", 1, 1, 1);
    add(1, "f", "e", 0.5, 0.5, 1);
    /* one primary per model; the models chain still applies */
    use_provider("{\"allow_fallbacks\":false,\"sort\":\"price\"}", NULL);
    expect_plan("b e");
    use_provider("{\"allow_fallbacks\":false}", NULL);
    for (uint64_t seed = 0; seed < 20; seed++) {
        rng = seed;
        int n = run();
        assert_int_equal(n, 2);
        assert_int_equal(cands[plan[0]].model_rank, 0);
        assert_true(cands[plan[0]].available);
        assert_int_equal(cands[plan[1]].model_rank, 1);
    }
    /* partition none: one group, so one primary across the models */
    use_provider("{\"allow_fallbacks\":false,\"sort\":{\"by\":\"price\",\"partition\":\"none\"}}",
                 NULL);
    expect_plan("e");
    /* a group with nothing available keeps its first */
    cands[1].available = false;
    cands[2].available = false;
    use_provider("{\"allow_fallbacks\":false,\"sort\":\"price\"}", NULL);
    expect_plan("e a");
}

static void test_round_robin(void **state)
{
    (void)state;
    add(0, "m", "a", 9, 9, 0.1)->available = false;
    add(0, "m", "b", 1, 1, 1);
    add(0, "m", "c", 1, 1, 1);
    add(1, "f", "d", 1, 1, 1);
    add(1, "f", "e", 1, 1, 1);
    opts.strategy = LX_ROUTER_ROUND_ROBIN;
    opts.rr = 0;
    expect_plan("a b c d e");
    opts.rr = 1;
    expect_plan("b c a e d");
    opts.rr = 2;
    expect_plan("c a b d e");
    opts.rr = 3;
    expect_plan("a b c e d");
    /* hard filters still apply; sort and order do not */
    use_provider("{\"ignore\":[\"b\"],\"sort\":\"price\",\"order\":[\"e\"]}", NULL);
    opts.rr = 1;
    expect_plan("c a e d");
    use_provider("{\"only\":[\"q\"]}", NULL);
    expect_none("no provider of models m, f matches provider.only [q]");
}

/* First picks over 10,000 draws, as shares per candidate. */
static void first_shares(double *share)
{
    size_t counts[MAXC] = {0};
    rng = 12345;
    for (int i = 0; i < 10000; i++) {
        int n = run();
        assert_int_equal(n, (int)n_cands);
        counts[plan[0]]++;
    }
    for (size_t i = 0; i < n_cands; i++)
        share[i] = (double)counts[i] / 10000.0;
}

static void assert_near(double got, double want, double tol)
{
    if (got < want - tol || got > want + tol)
        fail_msg("share %.4f, want %.4f +- %.3f", got, want, tol);
}

static void test_weights_price(void **state)
{
    (void)state;
    double s[MAXC];
    /* OpenRouter's example: prices 1, 2, 3 -> weights 1, 1/4, 1/9 */
    add(0, "m", "a", 0.5, 0.5, 1);
    add(0, "m", "b", 1, 1, 1);
    add(0, "m", "c", 1.5, 1.5, 1);
    first_shares(s);
    double total = 1 + 0.25 + 1.0 / 9;
    assert_near(s[0], 1 / total, 0.02);
    assert_near(s[1], 0.25 / total, 0.02);
    assert_near(s[2], (1.0 / 9) / total, 0.02);
    /* the rest follow in descending weight */
    rng = 7;
    for (int i = 0; i < 200; i++) {
        assert_int_equal(run(), 3);
        if (plan[0] == 0) {
            assert_int_equal(plan[1], 1);
            assert_int_equal(plan[2], 2);
        } else if (plan[0] == 1) {
            assert_int_equal(plan[1], 0);
            assert_int_equal(plan[2], 2);
        } else {
            assert_int_equal(plan[1], 0);
            assert_int_equal(plan[2], 1);
        }
    }
    /* deterministic given the seed */
    uint16_t first[50];
    rng = 99;
    for (int i = 0; i < 50; i++) {
        run();
        first[i] = plan[0];
    }
    rng = 99;
    for (int i = 0; i < 50; i++) {
        run();
        assert_int_equal(plan[0], first[i]);
    }
}

static void test_weights_health(void **state)
{
    (void)state;
    double s[MAXC];
    /* equal prices: health decides, weight score^2 */
    add(0, "m", "a", 1, 1, 1.0);
    add(0, "m", "b", 1, 1, 0.5);
    first_shares(s);
    assert_near(s[0], 0.8, 0.02);
    assert_near(s[1], 0.2, 0.02);
    /* an unavailable one is never first */
    add(0, "m", "c", 0.1, 0.1, 1)->available = false;
    first_shares(s);
    assert_near(s[0], 0.8, 0.02);
    assert_true(s[2] == 0);
}

static void test_weights_exploration(void **state)
{
    (void)state;
    double s[MAXC];
    add(0, "m", "a", 1, 1, 1);
    add(0, "m", "b", 1, 1, 1);
    lx_router_cand_t *c = add(0, "m", "c", 1, 1, 0); /* no data, zero prior */
    c->has_data = false;
    first_shares(s);
    assert_near(s[2], 0.05, 0.01);
    assert_near(s[0], 0.475, 0.02);
    /* a row without data whose own weight is larger keeps it */
    c->score = 1;
    first_shares(s);
    assert_near(s[2], 1.0 / 3, 0.02);
    /* exploration 0: no share for a zero-weight row */
    c->score = 0;
    opts.exploration = 0;
    first_shares(s);
    assert_true(s[2] == 0);
    /* two rows without data get the share each */
    opts.exploration = 0.1;
    add(0, "m", "d", 1, 1, 0)->has_data = false;
    first_shares(s);
    assert_near(s[2], 0.1, 0.015);
    assert_near(s[3], 0.1, 0.015);
    /* every row without data and zero weight: uniform */
    for (size_t i = 0; i < n_cands; i++) {
        cands[i].has_data = false;
        cands[i].score = 0;
    }
    first_shares(s);
    for (size_t i = 0; i < n_cands; i++)
        assert_near(s[i], 0.25, 0.02);
}

static void test_weights_demoted(void **state)
{
    (void)state;
    double s[MAXC];
    opts.exploration = 0.02;
    add(0, "m", "a", 1, 1, 0.9);
    add(0, "m", "b", 1, 1, 0.9);
    add(0, "m", "c", 1, 1, 0); /* demoted by the health table: data, score 0 */
    first_shares(s);
    assert_near(s[2], 0.02, 0.005);
    assert_near(s[0], 0.49, 0.02);
    /* the share is the exploration share, whatever the others' scores */
    cands[0].score = cands[1].score = 0.2;
    first_shares(s);
    assert_near(s[2], 0.02, 0.005);
    /* unavailable: never first */
    cands[2].available = false;
    first_shares(s);
    assert_true(s[2] == 0);
    /* a paid row beside free ones keeps weight 0: price is not health */
    reset();
    opts.exploration = 0.02;
    add(0, "m", "free1", 0, 0, 0.9);
    add(0, "m", "free2", 0, 0, 0.9);
    add(0, "m", "paid", 1, 1, 0.9);
    first_shares(s);
    assert_true(s[2] == 0);
}

static void test_weights_free(void **state)
{
    (void)state;
    double s[MAXC];
    add(0, "m", "paid", 1, 1, 1);
    add(0, "m", "free1", 0, 0, 1);
    add(0, "m", "free2", 0, 0, 0.5);
    first_shares(s);
    assert_true(s[0] == 0); /* a paid provider next to free ones is a fallback */
    assert_near(s[1], 0.8, 0.02);
    assert_near(s[2], 0.2, 0.02);
    rng = 1;
    assert_int_equal(run(), 3);
    assert_int_equal(plan[2], 0);
    /* a free one ejected: the paid one becomes the cheapest available and is drawn */
    cands[1].available = false;
    cands[2].available = false;
    first_shares(s);
    assert_true(s[0] == 1);
}

static void test_pick_endpoint(void **state)
{
    (void)state;
    uint64_t r = 5;
    uint32_t load[4] = {0, 0, 0, 0};
    bool avail[4] = {false, true, false, true};
    size_t counts[4] = {0};
    for (int i = 0; i < 2000; i++)
        counts[lx_router_pick_endpoint(load, avail, 4, &r)]++;
    assert_int_equal(counts[0] + counts[2], 0); /* never an unavailable one */
    assert_true(counts[1] > 800 && counts[3] > 800);

    /* the less loaded of the pair: with two available, always the lighter one */
    load[1] = 5;
    load[3] = 1;
    for (int i = 0; i < 200; i++)
        assert_int_equal(lx_router_pick_endpoint(load, avail, 4, &r), 3);

    /* three available, loads 0, 5, 10: the busiest never wins a pair; the idlest wins 2/3 */
    uint32_t l3[3] = {0, 5, 10};
    bool a3[3] = {true, true, true};
    size_t c3[3] = {0};
    for (int i = 0; i < 9000; i++)
        c3[lx_router_pick_endpoint(l3, a3, 3, &r)]++;
    assert_int_equal(c3[2], 0);
    assert_true(c3[0] > 5700 && c3[0] < 6300);

    /* one available: it, however loaded */
    bool a1[3] = {false, false, true};
    assert_int_equal(lx_router_pick_endpoint(l3, a1, 3, &r), 2);
    /* none available: the least loaded, as a last resort */
    bool a0[3] = {false, false, false};
    uint32_t l0[3] = {4, 2, 2};
    assert_int_equal(lx_router_pick_endpoint(l0, a0, 3, &r), 1);
    /* one endpoint, or none */
    assert_int_equal(lx_router_pick_endpoint(l0, a0, 1, &r), 0);
    assert_int_equal(lx_router_pick_endpoint(l0, a0, 0, &r), 0);
}

static void test_pick_replica(void **state)
{
    (void)state;
    uint64_t r = 7;
    uint32_t load[3] = {0, 0, 0};
    bool avail[3] = {true, true, true};
    bool dem[3] = {false, true, false};
    size_t c[3] = {0};
    for (int i = 0; i < 20000; i++)
        c[lx_router_pick_replica(load, avail, dem, 3, 0.02, &r)]++;
    /* the demoted one gets the exploration share, the others the rest */
    assert_true(c[1] > 300 && c[1] < 500);
    assert_true(c[0] > 9000 && c[2] > 9000);
    /* the two kept ones still by their load: the lighter always */
    load[0] = 3;
    memset(c, 0, sizeof(c));
    for (int i = 0; i < 20000; i++)
        c[lx_router_pick_replica(load, avail, dem, 3, 0.02, &r)]++;
    assert_true(c[2] > 19000 && c[0] == 0);
    /* exploration 0: never the demoted one while another is available */
    memset(c, 0, sizeof(c));
    for (int i = 0; i < 2000; i++)
        c[lx_router_pick_replica(load, avail, dem, 3, 0, &r)]++;
    assert_int_equal(c[1], 0);
    /* every replica demoted, or the others unavailable: the demoted ones by load */
    bool all[3] = {true, true, true};
    assert_int_equal(lx_router_pick_replica(load, avail, all, 3, 0.02, &r) != 0, 1);
    bool only1[3] = {false, true, false};
    assert_int_equal(lx_router_pick_replica(load, only1, dem, 3, 0.02, &r), 1);
    /* nothing demoted: the power of two choices */
    bool none[3] = {false, false, false};
    memset(c, 0, sizeof(c));
    load[0] = 0;
    for (int i = 0; i < 3000; i++)
        c[lx_router_pick_replica(load, avail, none, 3, 0.02, &r)]++;
    assert_true(c[0] > 800 && c[1] > 800 && c[2] > 800);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_basics, setup),
        cmocka_unit_test_setup(test_filter_only_ignore, setup),
        cmocka_unit_test_setup(test_filter_max_price, setup),
        cmocka_unit_test_setup(test_filter_policy, setup),
        cmocka_unit_test_setup(test_filter_params, setup),
        cmocka_unit_test_setup(test_order, setup),
        cmocka_unit_test_setup(test_sorts, setup),
        cmocka_unit_test_setup(test_partition, setup),
        cmocka_unit_test_setup(test_unavailable_last, setup),
        cmocka_unit_test_setup(test_no_fallbacks, setup),
        cmocka_unit_test_setup(test_round_robin, setup),
        cmocka_unit_test_setup(test_weights_price, setup),
        cmocka_unit_test_setup(test_weights_health, setup),
        cmocka_unit_test_setup(test_weights_exploration, setup),
        cmocka_unit_test_setup(test_weights_demoted, setup),
        cmocka_unit_test_setup(test_weights_free, setup),
        cmocka_unit_test_setup(test_pick_endpoint, setup),
        cmocka_unit_test_setup(test_pick_replica, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
