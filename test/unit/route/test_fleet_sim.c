/*
 * test_fleet_sim.c - the prefix key, the ring and the fleet choice together, on a small
 * simulated workload: multi-turn conversations over a few dozen shared system prompts, sent as
 * chat bodies through the body scan and the prefix hash, routed to 4 replicas; each replica's
 * prefix table (fleet.h's estimate) plays its KV cache. Compares the estimated prefix-hit rate
 * and the load spread of: the fleet choice on the ring key (the default), the fleet choice on
 * the stable key, least cost without a key, round robin, and everything on one replica (the
 * hits no spreading loses, short of table collisions). Figures are printed; the test asserts
 * that the ring key wins back most of what the others lose, within a bounded spread. The
 * servers are not modelled (no queue, no KV use): only llmux's in-flight counts and the ring's
 * bound spread the load here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "llm/body.h"
#include "llm/prefix.h"
#include "route/fleet.h"

#define REPS     4
#define PROMPTS  24
#define CONVS    240
#define TURNS    6
#define REQUESTS 1200
#define SLOTS    (1 << 18)
#define LIFE     12 /* a request stays in flight for the next LIFE requests */
#define BODY_MAX (96 * 1024)

enum policy { FLEET_KEY, FLEET_STABLE, LEAST_COST, ROUND_ROBIN, ONE_REPLICA, POLICIES };
static const char *const names[] = {"fleet, ring key", "fleet, stable key", "least cost",
                                    "round robin", "all on one replica"};

static uint64_t rnd64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* <n> bytes of words drawn from <seed> at <out>. */
static size_t text(char *out, size_t n, uint64_t seed)
{
    static const char *const words[] = {"model", "cache", "the",    "replica", "of",
                                        "token", "a",     "prefix", "and",     "request"};
    size_t o = 0;
    while (o + 9 < n) {
        const char *w = words[rnd64(&seed) % 10];
        size_t l = strlen(w);
        memcpy(out + o, w, l);
        o += l;
        out[o++] = ' ';
    }
    return o;
}

/* The body of turn <t> (0-based) of conversation <c>: its system prompt, the earlier turns and
 * their answers, the new user message. */
static size_t conversation_body(char *b, int c, int gen, int t)
{
    int sys = c % PROMPTS;
    size_t o =
        (size_t)sprintf(b, "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"");
    o += text(b + o, 1500 + (size_t)sys * 200, 1000 + (uint64_t)sys);
    o += (size_t)sprintf(b + o, "\"}");
    for (int k = 0; k <= t; k++) {
        o += (size_t)sprintf(b + o, ",{\"role\":\"user\",\"content\":\"");
        o += text(b + o, 200 + (size_t)(c * 37 + k * 91) % 600,
                  (uint64_t)(c * 64 + gen) * 100 + (uint64_t)k);
        o += (size_t)sprintf(b + o, "\"}");
        if (k == t)
            break;
        o += (size_t)sprintf(b + o, ",{\"role\":\"assistant\",\"content\":\"");
        o += text(b + o, 300 + (size_t)(c * 53 + k * 17) % 600,
                  (uint64_t)(c * 64 + gen) * 100 + 50 + (uint64_t)k);
        o += (size_t)sprintf(b + o, "\"}");
    }
    o += (size_t)sprintf(b + o, "],\"stream\":true}");
    return o;
}

struct sim {
    lx_fleet_rep_t reps[REPS];
    uint64_t table[REPS][SLOTS];
    int live[LIFE];
    uint64_t hits, blocks, rr, off_home;
    unsigned per_rep[REPS];
};

static int route(struct sim *s, enum policy pol, const lx_prefix_t *p, const lx_fleet_params_t *fp,
                 uint64_t *rnd)
{
    if (pol == ROUND_ROBIN)
        return (int)(s->rr++ % REPS);
    if (pol == ONE_REPLICA)
        return 0;
    uint64_t key = pol == FLEET_KEY      ? p->key
                   : pol == FLEET_STABLE ? (p->stable != 0 ? p->stable : p->key)
                                         : 0;
    return lx_fleet_pick(s->reps, REPS, key, fp, rnd);
}

static void run(enum policy pol, const lx_ring_t *ring, char *body, double *hit, double *spread)
{
    static struct sim s;
    memset(&s, 0, sizeof(s));
    for (int k = 0; k < REPS; k++) {
        s.reps[k].available = true;
        s.reps[k].health = 1.0;
    }
    for (int k = 0; k < LIFE; k++)
        s.live[k] = -1;
    lx_fleet_params_t fp;
    lx_fleet_params_default(&fp);
    fp.ring = ring;
    uint64_t seed = 17, rnd = 5;
    int turn[CONVS] = {0}, gen[CONVS] = {0};
    for (int r = 0; r < REQUESTS; r++) {
        int c = (int)(rnd64(&seed) % CONVS);
        if (turn[c] == TURNS) { /* a new conversation in its place */
            turn[c] = 0;
            gen[c]++;
        }
        size_t len = conversation_body(body, c, gen[c], turn[c]++);
        lx_body_scan_t scan;
        lx_prefix_t p;
        assert_int_equal(lx_body_scan(body, len, &scan), 0);
        assert_true(lx_prefix_of_body(body, &scan, lx_prefix_seed("m", 1), 64, &p));
        int slot = r % LIFE;
        if (s.live[slot] >= 0)
            s.reps[s.live[slot]].in_flight--;
        int to = route(&s, pol, &p, &fp, &rnd);
        if (pol == FLEET_KEY && to != lx_ring_home(ring, p.key, ~(uint64_t)0))
            s.off_home++;
        assert_true(to >= 0 && to < REPS);
        s.live[slot] = to;
        s.reps[to].in_flight++;
        s.per_rep[to]++;
        s.hits += lx_fleet_prefix_hit_estimate(s.table[to], SLOTS, p.chain, p.n_blocks);
        s.blocks += p.n_blocks;
        lx_fleet_prefix_note(s.table[to], SLOTS, p.chain, p.n_blocks);
    }
    unsigned max = 0;
    for (int k = 0; k < REPS; k++)
        max = s.per_rep[k] > max ? s.per_rep[k] : max;
    *hit = (double)s.hits / (double)s.blocks;
    if (pol == FLEET_KEY)
        printf(
            "fleet sim: ring key: %.1f%% of requests off their key's home (spilled or too busy)\n",
            100.0 * (double)s.off_home / REQUESTS);
    *spread = (double)max / ((double)REQUESTS / REPS);
}

static void test_workload(void **state)
{
    (void)state;
    static uint64_t points[REPS * LX_RING_VNODES];
    uint64_t ids[REPS];
    for (int k = 0; k < REPS; k++) {
        char url[32];
        int n = snprintf(url, sizeof(url), "http://gpu%d:8000", k);
        ids[k] = lx_ring_id(url, (size_t)n);
    }
    lx_ring_t ring;
    assert_int_equal(lx_ring_build(&ring, ids, REPS, LX_RING_VNODES, points, REPS * LX_RING_VNODES),
                     0);
    char *body = malloc(BODY_MAX);
    assert_non_null(body);
    double hit[POLICIES], spread[POLICIES];
    for (int pol = 0; pol < POLICIES; pol++) {
        run((enum policy)pol, &ring, body, &hit[pol], &spread[pol]);
        printf("fleet sim: %-22s estimated prefix-hit %6.2f%%, busiest replica %.2f x the mean\n",
               names[pol], 100 * hit[pol], spread[pol]);
    }
    free(body);
    assert_true(hit[FLEET_KEY] > hit[ROUND_ROBIN] + 0.1);
    assert_true(hit[FLEET_KEY] > hit[LEAST_COST] + 0.1);
    assert_true(hit[FLEET_KEY] > hit[FLEET_STABLE] + 0.1);
    assert_true(spread[FLEET_KEY] < 1.5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_workload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
