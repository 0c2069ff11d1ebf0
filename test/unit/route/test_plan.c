/*
 * test_plan.c - the plan of a request over a real configuration and health table: models
 * chain and model resolution (refusals, suffixes), filters, session stickiness, the endpoint
 * of each attempt (pin, tried replicas, session placement, power of two choices, round
 * robin), and dropping a model after a context-length error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/config.h"
#include "llm/body.h"
#include "route/health.h"
#include "route/load_slot.h"
#include "route/plan.h"
#include "route/ring.h"
#include "route/session.h"

/* m1: a (1 endpoint, pricey), b (3 endpoints, cheap); m2: b. Rows: m1/a 0, m1/b 1-3, m2/b 4-6. */
static const char yaml[] = "listen: 127.0.0.1:0\n"
                           "auth: none\n"
                           "providers:\n"
                           "  - name: a\n"
                           "    base_url: http://127.0.0.1:9001/v1\n"
                           "  - name: b\n"
                           "    base_url: http://127.0.0.1:9002/v1\n"
                           "    endpoints:\n"
                           "      - http://127.0.0.1:9002\n"
                           "      - http://127.0.0.1:9003\n"
                           "      - http://127.0.0.1:9004\n"
                           "models:\n"
                           "  - id: m1\n"
                           "    context_length: 100\n"
                           "    providers:\n"
                           "      - {provider: a, price: {prompt: 10, completion: 10}}\n"
                           "      - {provider: b, price: {prompt: 1, completion: 1}}\n"
                           "  - id: m2\n"
                           "    context_length: 100\n"
                           "    providers:\n"
                           "      - {provider: b}\n"
                           "%s";

static const size_t model_base[] = {0, 2, 3};
static const size_t route_row[] = {0, 1, 4, 7};
#define N_ROWS 7

typedef struct fixture {
    lx_config_t *cfg;
    lx_health_t *table;
    uint32_t in_flight[N_ROWS];
    uint32_t rr[2];
    uint64_t rr_plan, rng;
    lx_route_ctx_t x;
    lx_body_scan_t scan;
    lx_plan_entry_t plan[LX_PLAN_MAX];
    uint16_t n;
    lx_plan_reject_t rej;
    char msg[600];
} fixture_t;

static fixture_t *fixture(const char *extra)
{
    fixture_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    char text[2048];
    snprintf(text, sizeof(text), yaml, extra);
    assert_int_equal(lx_config_parse("t.yaml", text, strlen(text), stderr, &f->cfg), 0);
    lx_health_row_key_t keys[N_ROWS];
    for (size_t m = 0; m < f->cfg->n_models; m++)
        for (size_t r = 0; r < f->cfg->models[m].n_routes; r++) {
            const lx_config_provider_t *pv =
                &f->cfg->providers[f->cfg->models[m].routes[r].provider];
            for (size_t j = 0; j < pv->n_endpoints; j++)
                keys[route_row[model_base[m] + r] + j] =
                    (lx_health_row_key_t){pv->name, pv->endpoints[j].url, f->cfg->models[m].id};
        }
    lx_health_opts_t o;
    lx_health_opts_init(&o);
    f->table = lx_health_new(&o, keys, N_ROWS, 1, NULL);
    assert_non_null(f->table);
    f->rng = 42;
    f->x = (lx_route_ctx_t){.cfg = f->cfg,
                            .table = f->table,
                            .model_base = model_base,
                            .route_row = route_row,
                            .in_flight = f->in_flight,
                            .rr = f->rr,
                            .rr_plan = &f->rr_plan,
                            .rng = &f->rng};
    return f;
}

static void fixture_free(fixture_t *f)
{
    lx_health_free(f->table);
    lx_config_unref(f->cfg);
    free(f);
}

/* Plans <body> (a C string) for session <session> at time 1000. */
static int make(fixture_t *f, const char *body, uint64_t session)
{
    assert_int_equal(lx_body_scan(body, strlen(body), &f->scan), 0);
    lx_plan_req_t q = {.body = body,
                       .body_len = strlen(body),
                       .scan = &f->scan,
                       .session = session,
                       .now_ms = 1000};
    f->n = 0;
    return lx_plan_make(&f->x, &q, f->plan, &f->n, &f->rej, f->msg, sizeof(f->msg));
}

static void assert_entry(const lx_plan_entry_t *e, uint16_t model, uint16_t route)
{
    assert_int_equal(e->model, model);
    assert_int_equal(e->route, route);
}

/* A retry-after block: the row is unavailable for a minute from <now>. */
static void block(fixture_t *f, size_t row, uint64_t now)
{
    lx_health_sample_t s = {
        .outcome = LX_HEALTH_RATE_LIMIT, .output_tokens = -1, .retry_after_ms = 60000};
    lx_health_record(f->table, 0, row, &s, now);
}

static void test_refusals(void **state)
{
    (void)state;
    fixture_t *f = fixture("");
    assert_int_equal(make(f, "{\"messages\":[]}", 0), 400);
    assert_string_equal(f->msg, "missing required field 'model'");
    assert_null(f->rej.code);

    assert_int_equal(make(f, "{\"model\":\"zz\"}", 0), 404);
    assert_string_equal(f->msg, "model 'zz' is not available on this gateway");
    assert_string_equal(f->rej.code, "model_not_found");
    assert_string_equal(f->rej.param, "model");
    assert_int_equal(f->rej.len, strlen(f->msg));

    /* a NUL in the name: the message keeps it, its length says where it ends */
    assert_int_equal(make(f, "{\"model\":\"m1\\u0000x\"}", 0), 404);
    assert_int_equal(f->rej.len,
                     strlen("model 'm1") + 2 + strlen("' is not available on this gateway"));
    assert_memory_equal(f->msg, "model 'm1\0x'", 12);

    assert_int_equal(make(f, "{\"model\":\"m1\",\"models\":[\"m2\",\"nope\"]}", 0), 404);
    assert_string_equal(f->msg, "model 'nope' is not available on this gateway");

    assert_int_equal(make(f, "{\"model\":\"m1\",\"provider\":{\"only\":[\"c\"]}}", 0), 404);
    assert_null(f->rej.code); /* a filter's refusal names the filter */
    assert_non_null(strstr(f->msg, "provider.only"));
    assert_int_equal(make(f, "{\"model\":\"m1\",\"provider\":{\"sort\":1}}", 0), 400);
    fixture_free(f);
}

static void test_chain(void **state)
{
    (void)state;
    fixture_t *f = fixture("");
    /* `model` first, then each `models` entry once */
    assert_int_equal(make(f, "{\"model\":\"m1\",\"models\":[\"m2\",\"m1\"]}", 0), 0);
    assert_int_equal(f->n, 3);
    assert_int_equal(f->plan[0].model, 0);
    assert_int_equal(f->plan[1].model, 0);
    assert_entry(&f->plan[2], 1, 0);
    /* without `model`, the first of `models` */
    assert_int_equal(make(f, "{\"models\":[\"m2\"]}", 0), 0);
    assert_int_equal(f->n, 1);
    assert_entry(&f->plan[0], 1, 0);
    /* :floor sorts by price: b first, a after */
    assert_int_equal(make(f, "{\"model\":\"m1:floor\"}", 0), 0);
    assert_int_equal(f->n, 2);
    assert_entry(&f->plan[0], 0, 1);
    assert_entry(&f->plan[1], 0, 0);
    /* provider.order puts a first */
    assert_int_equal(make(f, "{\"model\":\"m1\",\"provider\":{\"order\":[\"a\"]}}", 0), 0);
    assert_entry(&f->plan[0], 0, 0);
    /* a provider whose every endpoint is blocked goes last */
    block(f, 0, 1000);
    assert_int_equal(make(f, "{\"model\":\"m1\",\"provider\":{\"order\":[\"a\"]}}", 0), 0);
    assert_entry(&f->plan[0], 0, 1);
    assert_entry(&f->plan[1], 0, 0);
    fixture_free(f);
}

/* Equal candidates: a session's draw is seeded by the session (the same plan on every worker,
 * whatever the worker's random state), a request without one moves the worker's state. */
static void test_draw(void **state)
{
    (void)state;
    fixture_t *f = fixture("");
    const char *body = "{\"model\":\"m1\",\"models\":[\"m2\"]}";
    uint64_t s = lx_session_hash("s", 1);
    assert_int_equal(make(f, body, s), 0);
    lx_plan_entry_t first = f->plan[0];
    assert_true(f->rng == 42);
    for (int i = 0; i < 20; i++) {
        f->rng = (uint64_t)i * 7919;
        assert_int_equal(make(f, body, s), 0);
        assert_entry(&f->plan[0], first.model, first.route);
        assert_true(f->rng == (uint64_t)i * 7919);
    }
    assert_int_equal(make(f, body, 0), 0);
    assert_true(f->rng != 20 * 7919 - 7919);
    fixture_free(f);
}

static void test_session(void **state)
{
    (void)state;
    fixture_t *f = fixture("");
    lx_sessions_t t = {0};
    uint64_t h = lx_session_hash("user", 4);
    assert_int_equal(make(f, "{\"model\":\"m1\",\"provider\":{\"order\":[\"a\"]}}", h), 0);
    assert_entry(&f->plan[0], 0, 0);
    /* no history */
    assert_int_equal(lx_plan_apply_session(&f->x, &t, h, 7, 1000, f->plan, f->n), -1);
    lx_session_t last = {.serial = 7, .model = 0, .route = 1, .ep = 2};
    assert_true(lx_session_remember(&t, h, 900, f->cfg->routing_session_ttl_ms, &last));
    /* another generation's indexes are not used */
    assert_int_equal(lx_plan_apply_session(&f->x, &t, h, 8, 1000, f->plan, f->n), -1);
    assert_entry(&f->plan[0], 0, 0);
    /* nor without a session */
    assert_int_equal(lx_plan_apply_session(&f->x, &t, 0, 7, 1000, f->plan, f->n), -1);
    /* m1/b moves to the front, endpoint 2 pinned */
    assert_int_equal(lx_plan_apply_session(&f->x, &t, h, 7, 1000, f->plan, f->n), 2);
    assert_entry(&f->plan[0], 0, 1);
    assert_entry(&f->plan[1], 0, 0);
    /* expired */
    assert_int_equal(lx_plan_apply_session(&f->x, &t, h, 7,
                                           900 + f->cfg->routing_session_ttl_ms + 1, f->plan, f->n),
                     -1);
    /* not in this request's plan */
    assert_int_equal(make(f, "{\"model\":\"m2\"}", h), 0);
    assert_int_equal(lx_plan_apply_session(&f->x, &t, h, 7, 1000, f->plan, f->n), -1);
    /* its endpoint is unavailable: the session moves */
    assert_int_equal(make(f, "{\"model\":\"m1\",\"provider\":{\"order\":[\"a\"]}}", h), 0);
    block(f, 3, 1000);
    assert_int_equal(lx_plan_apply_session(&f->x, &t, h, 7, 1000, f->plan, f->n), -1);
    assert_entry(&f->plan[0], 0, 0);
    lx_sessions_free(&t);
    fixture_free(f);
}

static void test_pick(void **state)
{
    (void)state;
    fixture_t *f = fixture("");
    lx_plan_entry_t b = {0, 1}, a = {0, 0};
    /* one endpoint */
    assert_int_equal(lx_plan_pick_endpoint(&f->x, a, 0, -1, 0, 1000), 0);
    assert_int_equal(lx_plan_pick_endpoint(&f->x, a, 1, -1, 0, 1000), -1); /* tried */
    /* the pin, while available and untried */
    assert_int_equal(lx_plan_pick_endpoint(&f->x, b, 0, 2, 0, 1000), 2);
    assert_int_equal(lx_plan_pick_endpoint(&f->x, b, 0, 5, 0, 1000) >= 0, 1); /* out of range */
    int p = lx_plan_pick_endpoint(&f->x, b, 1u << 2, 2, 0, 1000);
    assert_true(p == 0 || p == 1);
    assert_int_equal(lx_plan_pick_endpoint(&f->x, b, 7, 2, 0, 1000), -1);
    /* power of two choices: of the two untried, the one with fewer in flight */
    f->in_flight[2] = 3;
    f->in_flight[3] = 0;
    for (int i = 0; i < 10; i++)
        assert_int_equal(lx_plan_pick_endpoint(&f->x, b, 1, -1, 0, 1000), 2);
    /* a session is placed as lx_session_place says, whatever the load */
    uint64_t h = lx_session_hash("user", 4);
    bool avail[3] = {true, true, true};
    int placed = lx_session_place(h, avail, 3);
    for (int i = 0; i < 10; i++)
        assert_int_equal(lx_plan_pick_endpoint(&f->x, b, 0, -1, h, 1000), placed);
    /* ... among available replicas only */
    block(f, 1 + (size_t)placed, 1000);
    avail[placed] = false;
    int moved = lx_plan_pick_endpoint(&f->x, b, 0, -1, h, 1000);
    assert_int_equal(moved, lx_session_place(h, avail, 3));
    /* and the pin of an unavailable endpoint is not taken */
    assert_true(lx_plan_pick_endpoint(&f->x, b, 0, placed, 0, 1000) != placed);
    fixture_free(f);
}

static void test_round_robin(void **state)
{
    (void)state;
    fixture_t *f = fixture("routing: {strategy: round_robin}\n");
    lx_plan_entry_t b = {0, 1};
    block(f, 1, 1000); /* round robin ignores health */
    for (int i = 0; i < 6; i++)
        assert_int_equal(lx_plan_pick_endpoint(&f->x, b, 0, -1, 0, 1000), i % 3);
    assert_int_equal(lx_plan_pick_endpoint(&f->x, b, 1, -1, 0, 1000), 1); /* rr 6: 0 tried */
    /* plans rotate per model group */
    assert_int_equal(make(f, "{\"model\":\"m1\"}", 0), 0);
    lx_plan_entry_t first = f->plan[0];
    assert_int_equal(make(f, "{\"model\":\"m1\"}", 0), 0);
    assert_true(f->plan[0].route != first.route);
    assert_int_equal(f->rr_plan, 2);
    fixture_free(f);
}

/* balance least_request: the fewest in flight on all workers (the table's shards). */
static void test_least_request(void **state)
{
    (void)state;
    fixture_t *f = fixture("routing: {balance: least_request}\n");
    lx_plan_entry_t b = {0, 1};
    lx_health_inflight_add(f->table, 0, 1, 5);
    lx_health_inflight_add(f->table, 0, 2, 1);
    lx_health_inflight_add(f->table, 0, 3, 3);
    f->in_flight[2] = 9; /* this worker's own counts do not decide */
    for (int i = 0; i < 10; i++)
        assert_int_equal(lx_plan_pick_endpoint(&f->x, b, 0, -1, 0, 1000), 1);
    assert_int_equal(lx_plan_pick_endpoint(&f->x, b, 1u << 1, -1, 0, 1000), 2); /* 1 tried */
    block(f, 3, 1000);
    assert_int_equal(lx_plan_pick_endpoint(&f->x, b, 1u << 1, -1, 0, 1000), 0); /* 2 blocked */
    /* ties: both replicas are chosen */
    lx_health_inflight_add(f->table, 0, 1, -4);
    int seen[3] = {0};
    for (int i = 0; i < 64; i++)
        seen[lx_plan_pick_endpoint(&f->x, b, 0, -1, 0, 1000)]++;
    assert_true(seen[0] > 0 && seen[1] > 0);
    assert_int_equal(seen[2], 0);
    fixture_free(f);
}

/* The fleet's view for route m1/b (rows 1..3): a ring, load slots, provider b's metrics. */
typedef struct fleet_fix {
    fixture_t *f;
    lx_load_slot_t load[N_ROWS];
    lx_ring_t rings[4];
    uint64_t points[3 * LX_RING_VNODES];
} fleet_fix_t;

static fleet_fix_t *fleet_fixture(const char *extra, uint32_t max_in_flight)
{
    fleet_fix_t *ff = calloc(1, sizeof(*ff));
    assert_non_null(ff);
    ff->f = fixture(extra);
    lx_config_provider_t *pv = &ff->f->cfg->providers[1];
    pv->metrics_path = (char *)"/metrics";
    pv->max_in_flight = max_in_flight;
    uint64_t ids[3];
    for (size_t j = 0; j < 3; j++)
        ids[j] = lx_ring_id(pv->endpoints[j].url, strlen(pv->endpoints[j].url));
    assert_int_equal(lx_ring_build(&ff->rings[1], ids, 3, LX_RING_VNODES, ff->points,
                                   sizeof(ff->points) / sizeof(ff->points[0])),
                     0);
    ff->f->x.load = ff->load;
    ff->f->x.rings = ff->rings;
    return ff;
}

/* Row <row>'s server says <waiting> waiting, read at <at>. */
static void scraped(fleet_fix_t *ff, size_t row, uint32_t waiting, uint64_t at)
{
    lx_load_sample_t s = {.waiting = waiting,
                          .flags = LX_LOAD_HAS_WAITING | LX_LOAD_HAS_RUNNING | LX_LOAD_HAS_KV};
    lx_load_slot_publish(&ff->load[row], &s, at);
}

static void test_fleet(void **state)
{
    (void)state;
    fleet_fix_t *ff = fleet_fixture("routing: {balance: fleet}\n", 0);
    lx_route_ctx_t *x = &ff->f->x;
    lx_plan_entry_t b = {0, 1};
    for (size_t j = 0; j < 3; j++)
        scraped(ff, 1 + j, 0, 1000);
    /* affinity: one key, one replica, while idle; keys spread over the replicas */
    int seen[3] = {0};
    for (uint64_t key = 1; key <= 60; key++) {
        x->prefix_key = key * 0x9e3779b97f4a7c15ull;
        int home = lx_plan_pick_endpoint(x, b, 0, -1, 0, 1010);
        assert_true(home >= 0 && home < 3);
        for (int i = 0; i < 5; i++)
            assert_int_equal(lx_plan_pick_endpoint(x, b, 0, -1, 0, 1010), home);
        seen[home]++;
    }
    assert_true(seen[0] > 5 && seen[1] > 5 && seen[2] > 5);
    /* an overloaded replica (its server queues 50) is passed over */
    x->prefix_key = 0x1234567;
    int home = lx_plan_pick_endpoint(x, b, 0, -1, 0, 1010);
    scraped(ff, 1 + (size_t)home, 50, 1000);
    for (int i = 0; i < 10; i++)
        assert_true(lx_plan_pick_endpoint(x, b, 0, -1, 0, 1010) != home);
    /* a stale scrape (older than 3 x 50 ms) counts as saturated */
    scraped(ff, 1 + (size_t)home, 0, 1000);
    assert_int_equal(lx_plan_pick_endpoint(x, b, 0, -1, 0, 1150), home);
    for (size_t j = 0; j < 3; j++)
        if ((int)j != home)
            scraped(ff, 1 + j, 0, 1200);
    for (int i = 0; i < 10; i++)
        assert_true(lx_plan_pick_endpoint(x, b, 0, -1, 0, 1200) != home);
    /* ... but when every scrape is stale the fleet is still served */
    assert_true(lx_plan_pick_endpoint(x, b, 0, -1, 0, 9000) >= 0);
    /* an unavailable replica is never chosen for its cache */
    scraped(ff, 1 + (size_t)home, 0, 1200);
    block(ff->f, 1 + (size_t)home, 1200);
    for (int i = 0; i < 10; i++)
        assert_true(lx_plan_pick_endpoint(x, b, 0, -1, 0, 1200) != home);
    fixture_free(ff->f);
    free(ff);
}

/* routing.affinity_slack: a larger slack keeps a busier replica for its cache (a server queue
 * of 50 costs 10 saturation units: passed over at the default 0.5, kept at 20). */
static void test_fleet_affinity_slack(void **state)
{
    (void)state;
    fleet_fix_t *ff = fleet_fixture("routing: {balance: fleet, affinity_slack: 20}\n", 0);
    lx_route_ctx_t *x = &ff->f->x;
    lx_plan_entry_t b = {0, 1};
    for (size_t j = 0; j < 3; j++)
        scraped(ff, 1 + j, 0, 1000);
    x->prefix_key = 0x1234567;
    int home = lx_plan_pick_endpoint(x, b, 0, -1, 0, 1010);
    assert_true(home >= 0);
    scraped(ff, 1 + (size_t)home, 50, 1000);
    for (int i = 0; i < 10; i++)
        assert_int_equal(lx_plan_pick_endpoint(x, b, 0, -1, 0, 1010), home);
    scraped(ff, 1 + (size_t)home, 150, 1000); /* 30 units: over the slack */
    for (int i = 0; i < 10; i++)
        assert_true(lx_plan_pick_endpoint(x, b, 0, -1, 0, 1010) != home);
    fixture_free(ff->f);
    free(ff);
}

/* max_in_flight: a full fleet is LX_PLAN_FULL with a queue (for a request that may wait), the
 * least loaded without one. */
static void test_fleet_full(void **state)
{
    (void)state;
    fleet_fix_t *ff = fleet_fixture("routing: {balance: fleet, queue_size: 4}\n", 2);
    lx_plan_entry_t b = {0, 1};
    lx_health_inflight_add(ff->f->table, 0, 1, 2);
    lx_health_inflight_add(ff->f->table, 0, 2, 2);
    assert_int_equal(lx_plan_pick_endpoint(&ff->f->x, b, 0, -1, 0, 1000), 2); /* not full */
    lx_health_inflight_add(ff->f->table, 0, 3, 2);
    ff->f->x.may_queue = true;
    assert_int_equal(lx_plan_pick_endpoint(&ff->f->x, b, 0, -1, 0, 1000), LX_PLAN_FULL);
    ff->f->x.may_queue = false; /* (a failover attempt, or a request that waited already) */
    int j = lx_plan_pick_endpoint(&ff->f->x, b, 0, -1, 0, 1000);
    assert_true(j >= 0 && j < 3);
    fixture_free(ff->f);
    free(ff);
    ff = fleet_fixture("routing: {balance: fleet}\n", 2);
    lx_health_inflight_add(ff->f->table, 0, 1, 3);
    lx_health_inflight_add(ff->f->table, 0, 2, 2);
    lx_health_inflight_add(ff->f->table, 0, 3, 4);
    assert_int_equal(lx_plan_pick_endpoint(&ff->f->x, b, 0, -1, 0, 1000), 1);
    fixture_free(ff->f);
    free(ff);
}

/* A key's rules: an allowlist (here: ids starting with "m2") and default preferences. */
static bool allow_m2(const void *arg, const char *id, size_t len)
{
    (void)arg;
    return len >= 2 && memcmp(id, "m2", 2) == 0;
}

static int make_keyed(fixture_t *f, const char *body, const char *defaults)
{
    assert_int_equal(lx_body_scan(body, strlen(body), &f->scan), 0);
    lx_plan_req_t q = {.body = body, .body_len = strlen(body), .scan = &f->scan, .now_ms = 1000};
    q.allow = allow_m2;
    q.default_provider = defaults;
    q.default_provider_len = defaults != NULL ? strlen(defaults) : 0;
    f->n = 0;
    return lx_plan_make(&f->x, &q, f->plan, &f->n, &f->rej, f->msg, sizeof(f->msg));
}

static void test_key_rules(void **state)
{
    (void)state;
    fixture_t *f = fixture("");
    /* `model` outside the allowlist: 403 naming the rule */
    assert_int_equal(make_keyed(f, "{\"model\":\"m1\"}", NULL), 403);
    assert_non_null(strstr(f->msg, "'m1'"));
    assert_non_null(strstr(f->msg, "allowlist"));
    /* `models` entries outside it are left out, not used */
    assert_int_equal(make_keyed(f, "{\"models\":[\"m1\",\"m2\"]}", NULL), 0);
    assert_int_equal(f->n, 1);
    assert_entry(&f->plan[0], 1, 0);
    assert_int_equal(make_keyed(f, "{\"model\":\"m2\",\"models\":[\"m1\"]}", NULL), 0);
    assert_int_equal(f->n, 1);
    assert_int_equal(make_keyed(f, "{\"models\":[\"m1\"]}", NULL), 403);
    assert_non_null(strstr(f->msg, "none of the 1 models"));
    fixture_free(f);

    /* the key's preferences apply under the request's own */
    f = fixture("");
    const char *body = "{\"model\":\"m1\"}";
    assert_int_equal(lx_body_scan(body, strlen(body), &f->scan), 0);
    lx_plan_req_t q = {.body = body, .body_len = strlen(body), .scan = &f->scan, .now_ms = 1000};
    q.default_provider = "{\"order\":[\"a\"],\"only\":[\"a\"]}";
    q.default_provider_len = strlen(q.default_provider);
    assert_int_equal(lx_plan_make(&f->x, &q, f->plan, &f->n, &f->rej, f->msg, sizeof(f->msg)), 0);
    assert_int_equal(f->n, 1);
    assert_entry(&f->plan[0], 0, 0);
    /* the request's own `only` wins over the key's */
    body = "{\"model\":\"m1\",\"provider\":{\"only\":[\"b\"]}}";
    assert_int_equal(lx_body_scan(body, strlen(body), &f->scan), 0);
    q.body = body;
    q.body_len = strlen(body);
    assert_int_equal(lx_plan_make(&f->x, &q, f->plan, &f->n, &f->rej, f->msg, sizeof(f->msg)), 0);
    assert_int_equal(f->n, 1);
    assert_entry(&f->plan[0], 0, 1);
    fixture_free(f);
}

static void test_drop_model(void **state)
{
    (void)state;
    lx_plan_entry_t plan[] = {{0, 0}, {1, 0}, {0, 1}, {2, 0}, {0, 2}};
    uint16_t n = 5;
    lx_plan_drop_model(plan, &n, 0);
    assert_int_equal(n, 2);
    assert_entry(&plan[0], 1, 0);
    assert_entry(&plan[1], 2, 0);
    lx_plan_entry_t p2[] = {{3, 0}, {0, 0}, {1, 0}, {0, 1}};
    n = 4;
    lx_plan_drop_model(p2, &n, 1); /* entries before pos stay */
    assert_int_equal(n, 2);
    assert_entry(&p2[0], 3, 0);
    assert_entry(&p2[1], 1, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refusals),      cmocka_unit_test(test_chain),
        cmocka_unit_test(test_draw),          cmocka_unit_test(test_session),
        cmocka_unit_test(test_pick),          cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_drop_model),    cmocka_unit_test(test_key_rules),
        cmocka_unit_test(test_least_request), cmocka_unit_test(test_fleet),
        cmocka_unit_test(test_fleet_full),    cmocka_unit_test(test_fleet_affinity_slack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
