/*
 * router.c - the ordered attempt plan of one request (which (model, provider) to try first,
 * second, ...) and the replica endpoint inside a provider.
 *
 * Sits after the body scan and lx_prefs_parse() in the gateway: api.c describes each candidate
 * (one per provider route of the requested model, then of each `models` entry) with prices from
 * the config and health from the health table's snapshot, calls lx_router_plan(), and walks the
 * plan one attempt at a time, calling lx_router_pick_endpoint() for each provider tried. Pure:
 * no I/O, no allocation (fixed arrays of LX_ROUTER_MAX_CANDS), deterministic for a given random
 * state (splitmix64), so tests can check distributions.
 *
 * The rules, in the order they apply:
 *
 * 1. Hard filters, in this order; the first that leaves nothing names the error (404):
 *    provider.only, provider.ignore (names match ignoring case; a base slug "deepinfra" also
 *    matches "deepinfra/turbo"), max_price (prompt and completion each against its own limit),
 *    data_collection: deny (only providers the config marks data_collection_deny), zdr (only
 *    providers marked zdr), require_parameters (only routes whose parameter list covers every
 *    request parameter; a route without a list supports everything), and provider.order with
 *    allow_fallbacks: false (only the listed providers). Availability is not a filter.
 *
 * 2. Groups. Candidates are grouped by model (model_rank): the requested model's providers
 *    first, then each `models` entry's, in the request's order - the `models` chain always
 *    applies, whatever allow_fallbacks says, because the client asked for it by name
 *    (OpenRouter's model fallback is separate from provider fallback too). With a sort and
 *    partition "none", all candidates form one group, so the best endpoint of any listed model
 *    comes first (and allow_fallbacks: false then keeps a single primary across all models).
 *
 * 3. Inside a group:
 *    - provider.order: the listed providers first, in the listed order (ties, under partition
 *      "none": model order), then the others by the rule below.
 *    - sort (explicit, or from a :nitro / :floor suffix): strict order, no randomness. price:
 *      cheapest prompt + completion first (ties: better score); throughput: highest tps_p50
 *      first; latency: lowest ttft_p50 first; candidates without the figure go after those with
 *      it (ties: cheaper first). Ties after that keep config order.
 *    - default (no sort): weights. weight = score^2 x (cheapest / price)^2, where price is
 *      prompt + completion and cheapest the group's lowest among available candidates - the
 *      inverse-square price rule OpenRouter documents, made relative so that a free (price 0)
 *      endpoint has factor 1 and no division by zero happens: among free internal endpoints
 *      health alone decides, and a paid provider next to a free one gets weight 0 (it is a
 *      fallback, tried after the free ones). Each available candidate without health data
 *      (has_data false), or demoted by the health table (score 0: its success rate or its time
 *      to first byte clearly worse than its model's best, route/health.h), is raised to
 *      opts->exploration of the group's total weight (its weight is 0 or tiny), so a recovered
 *      or new endpoint gets some traffic and its recovery is seen, and a bad one no more. Without
 *      provider.order, the first candidate is drawn at random by weight among the available
 *      ones (uniformly when every weight is 0); the others follow by descending weight (ties:
 *      cheaper, then config order). With provider.order there is no draw (OpenRouter: order
 *      disables load balancing): the non-listed ones follow by descending weight.
 *    - allow_fallbacks: false without provider.order keeps only the group's primary: its
 *      first available candidate (or its first, when none is available). With provider.order
 *      the filter in 1 already kept only the listed providers.
 *
 * 4. Unavailable candidates (every endpoint ejected by the breaker or under Retry-After) are
 *    not dropped: they move after every available candidate of every group, in the order they
 *    had, as a last resort - so a stale breaker can never turn into a 503 while something could
 *    still answer.
 *
 * 5. opts->strategy LX_ROUTER_ROUND_ROBIN (the baseline of the fleet comparison): the hard
 *    filters of 1 except the provider.order one, then per model group the candidates in config
 *    order rotated by opts->rr; no health, no weights, no sort or order, availability ignored.
 */
#include "route/router.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/status.h"

/* Hard filters, in the order they apply. */
enum stage { S_ONLY, S_IGNORE, S_MAX_PRICE, S_DATA, S_ZDR, S_PARAMS, S_ORDER, S_COUNT };

/* One candidate being ordered. */
struct ent {
    uint16_t idx; /* into cands */
    int ordpos;   /* position in provider.order, -1 when not listed */
    double w;     /* default-rule weight */
};

struct ctx {
    const lx_router_opts_t *opts;
    const lx_prefs_t *prefs;
    const lx_router_cand_t *c;
    size_t n;
};

/* A bounded text being written (the why message). */
struct out {
    char *p;
    size_t cap;
    size_t len;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    if (o->cap == 0 || o->len >= o->cap - 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (k > 0)
        o->len += (size_t)k < o->cap - o->len ? (size_t)k : o->cap - o->len - 1;
}

static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double uniform(uint64_t *state)
{
    return (double)(next_random(state) >> 11) * (1.0 / 9007199254740992.0);
}

static double price(const lx_router_cand_t *c)
{
    double p = c->price_prompt + c->price_completion;
    return p > 0 ? p : 0; /* negative or NaN: treated as free */
}

static double clamp01(double v)
{
    return v > 0 ? (v < 1 ? v : 1) : 0; /* NaN -> 0 */
}

static bool tps_known(const lx_router_cand_t *c)
{
    return c->has_data && c->tps_p50 > 0;
}

static bool ttft_known(const lx_router_cand_t *c)
{
    return c->has_data && c->ttft_p50_ms >= 0;
}

/* Bit j set: request parameter j is not in the candidate's list. */
static uint32_t missing_params(const lx_prefs_t *p, const lx_router_cand_t *c)
{
    uint32_t mask = 0;
    if (c->params == NULL)
        return 0;
    for (uint32_t j = 0; j < p->n_params; j++) {
        bool found = false;
        for (size_t k = 0; k < c->n_params && !found; k++) {
            const char *name = c->params[k];
            found = name != NULL && strlen(name) == p->params[j].len &&
                    memcmp(name, p->params[j].ptr, p->params[j].len) == 0;
        }
        if (!found)
            mask |= 1u << j;
    }
    return mask;
}

static bool stage_active(const lx_prefs_t *p, enum stage s, bool round_robin)
{
    switch (s) {
    case S_ONLY:
        return p->only.n > 0;
    case S_IGNORE:
        return p->ignore.n > 0;
    case S_MAX_PRICE:
        return p->has_max_prompt || p->has_max_completion;
    case S_DATA:
        return p->data_collection_deny;
    case S_ZDR:
        return p->zdr;
    case S_PARAMS:
        return p->require_parameters && p->n_params > 0;
    case S_ORDER:
        return !round_robin && p->order.n > 0 && !p->allow_fallbacks;
    case S_COUNT:
        break;
    }
    return false;
}

/* Whether candidate <c> passes filter <s>; *<missing> collects the parameters it lacks. */
static bool stage_passes(const lx_prefs_t *p, enum stage s, const lx_router_cand_t *c,
                         uint32_t *missing)
{
    switch (s) {
    case S_ONLY:
        return lx_prefs_list_find(&p->only, c->provider, c->provider_len) >= 0;
    case S_IGNORE:
        return lx_prefs_list_find(&p->ignore, c->provider, c->provider_len) < 0;
    case S_MAX_PRICE:
        return !(p->has_max_prompt && c->price_prompt > p->max_prompt) &&
               !(p->has_max_completion && c->price_completion > p->max_completion);
    case S_DATA:
        return c->data_collection_deny;
    case S_ZDR:
        return c->zdr;
    case S_PARAMS: {
        uint32_t m = missing_params(p, c);
        *missing |= m;
        return m == 0;
    }
    case S_ORDER:
        return lx_prefs_list_find(&p->order, c->provider, c->provider_len) >= 0;
    case S_COUNT:
        break;
    }
    return true;
}

/* "model m" or "models a, b" - the distinct models of the candidates, in rank order. */
static void put_models(struct out *o, const struct ctx *x)
{
    size_t distinct = 0;
    for (size_t i = 0; i < x->n; i++) {
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = x->c[k].model_rank == x->c[i].model_rank;
        distinct += !seen;
    }
    put(o, distinct > 1 ? "models " : "model ");
    size_t shown = 0;
    for (size_t i = 0; i < x->n; i++) {
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = x->c[k].model_rank == x->c[i].model_rank;
        if (seen)
            continue;
        put(o, "%s%.*s", shown++ ? ", " : "", (int)x->c[i].model_len,
            x->c[i].model ? x->c[i].model : "");
    }
}

static void put_list(struct out *o, const lx_prefs_list_t *l)
{
    put(o, "[");
    for (uint32_t k = 0; k < l->n; k++)
        put(o, "%s%.*s", k ? ", " : "", (int)l->name[k].len, l->name[k].ptr);
    put(o, "]");
}

static void explain(const struct ctx *x, enum stage s, uint32_t missing, char *why, size_t cap)
{
    struct out o = {why, cap, 0};
    const lx_prefs_t *p = x->prefs;
    if (cap > 0)
        why[0] = '\0';
    switch (s) {
    case S_ONLY:
        put(&o, "no provider of ");
        put_models(&o, x);
        put(&o, " matches provider.only ");
        put_list(&o, &p->only);
        break;
    case S_IGNORE:
        put(&o, "every provider of ");
        put_models(&o, x);
        put(&o, " is in provider.ignore ");
        put_list(&o, &p->ignore);
        break;
    case S_MAX_PRICE:
        put(&o, "all providers of ");
        put_models(&o, x);
        put(&o, " cost more than provider.max_price");
        break;
    case S_DATA:
        put(&o, "no provider of ");
        put_models(&o, x);
        put(&o, " satisfies data_collection: deny");
        break;
    case S_ZDR:
        put(&o, "no provider of ");
        put_models(&o, x);
        put(&o, " satisfies zdr: true");
        break;
    case S_PARAMS: {
        put(&o, "no provider of ");
        put_models(&o, x);
        put(&o, " supports every requested parameter (");
        bool first = true;
        for (uint32_t j = 0; j < p->n_params; j++) {
            if (missing & (1u << j)) {
                put(&o, "%s%.*s", first ? "" : ", ", (int)p->params[j].len, p->params[j].ptr);
                first = false;
            }
        }
        put(&o, ")");
        break;
    }
    case S_ORDER:
        put(&o, "provider.order and allow_fallbacks: false leave no provider of ");
        put_models(&o, x);
        break;
    case S_COUNT:
        put(&o, "no provider serves the requested model");
        break;
    }
}

/* Stable insertion sort (n <= LX_ROUTER_MAX_CANDS, and groups are small). */
static void isort(struct ent *e, size_t k, const struct ctx *x,
                  int (*cmp)(const struct ent *, const struct ent *, const struct ctx *))
{
    for (size_t i = 1; i < k; i++) {
        struct ent v = e[i];
        size_t j = i;
        while (j > 0 && cmp(&v, &e[j - 1], x) < 0) {
            e[j] = e[j - 1];
            j--;
        }
        e[j] = v;
    }
}

static int cmp_double(double a, double b)
{
    return a < b ? -1 : a > b ? 1 : 0;
}

static int by_rank(const struct ent *a, const struct ent *b, const struct ctx *x)
{
    return (int)x->c[a->idx].model_rank - (int)x->c[b->idx].model_rank;
}

static int by_order(const struct ent *a, const struct ent *b, const struct ctx *x)
{
    if (a->ordpos != b->ordpos)
        return a->ordpos - b->ordpos;
    return by_rank(a, b, x);
}

static int by_price(const struct ent *a, const struct ent *b, const struct ctx *x)
{
    const lx_router_cand_t *ca = &x->c[a->idx], *cb = &x->c[b->idx];
    int r = cmp_double(price(ca), price(cb));
    return r ? r : cmp_double(clamp01(cb->score), clamp01(ca->score));
}

static int by_throughput(const struct ent *a, const struct ent *b, const struct ctx *x)
{
    const lx_router_cand_t *ca = &x->c[a->idx], *cb = &x->c[b->idx];
    bool ka = tps_known(ca), kb = tps_known(cb);
    if (ka != kb)
        return ka ? -1 : 1;
    int r = ka ? cmp_double(cb->tps_p50, ca->tps_p50) : 0;
    return r ? r : cmp_double(price(ca), price(cb));
}

static int by_latency(const struct ent *a, const struct ent *b, const struct ctx *x)
{
    const lx_router_cand_t *ca = &x->c[a->idx], *cb = &x->c[b->idx];
    bool ka = ttft_known(ca), kb = ttft_known(cb);
    if (ka != kb)
        return ka ? -1 : 1;
    int r = ka ? cmp_double(ca->ttft_p50_ms, cb->ttft_p50_ms) : 0;
    return r ? r : cmp_double(price(ca), price(cb));
}

static int by_weight(const struct ent *a, const struct ent *b, const struct ctx *x)
{
    int r = cmp_double(b->w, a->w);
    return r ? r : cmp_double(price(&x->c[a->idx]), price(&x->c[b->idx]));
}

/* Whether a candidate gets the exploration share: available, and without health data or
 * demoted by the health table (published with score 0). */
static bool explores(const lx_router_cand_t *c)
{
    return c->available && (!c->has_data || !(c->score > 0));
}

/* The default-rule weights of the <k> entries (see rule 3). */
static void weigh(struct ent *e, size_t k, const struct ctx *x)
{
    bool any_available = false;
    for (size_t i = 0; i < k; i++)
        any_available |= x->c[e[i].idx].available;
    double cheapest = INFINITY;
    for (size_t i = 0; i < k; i++) {
        const lx_router_cand_t *c = &x->c[e[i].idx];
        if ((c->available || !any_available) && price(c) < cheapest)
            cheapest = price(c);
    }
    for (size_t i = 0; i < k; i++) {
        const lx_router_cand_t *c = &x->c[e[i].idx];
        double p = price(c), f;
        if (p <= 0)
            f = 1;
        else if (p <= cheapest)
            f = 1;
        else
            f = (cheapest / p) * (cheapest / p);
        double s = clamp01(c->score);
        e[i].w = s * s * f;
    }

    /* Exploration: raise the available rows without data, and the demoted ones (score 0), to a
     * share of at least x each. The level t solves t = x * (fixed + m t) for the m rows
     * raised; raising a row only raises t, so the loop ends after at most one pass per row. */
    double share = x->opts->exploration;
    size_t m_total = 0;
    for (size_t i = 0; i < k; i++)
        m_total += explores(&x->c[e[i].idx]);
    if (!(share > 0) || m_total == 0)
        return;
    if (share * (double)m_total > 0.5)
        share = 0.5 / (double)m_total;
    bool raised[LX_ROUTER_MAX_CANDS] = {false};
    double t = 0;
    for (;;) {
        double fixed = 0;
        size_t m = 0;
        for (size_t i = 0; i < k; i++) {
            if (!x->c[e[i].idx].available)
                continue;
            if (raised[i])
                m++;
            else
                fixed += e[i].w;
        }
        t = share * fixed / (1 - (double)m * share);
        bool changed = false;
        for (size_t i = 0; i < k; i++) {
            const lx_router_cand_t *c = &x->c[e[i].idx];
            if (explores(c) && !raised[i] && e[i].w < t) {
                raised[i] = true;
                changed = true;
            }
        }
        if (!changed)
            break;
    }
    for (size_t i = 0; i < k; i++)
        if (raised[i])
            e[i].w = t;
}

/* Draws the first candidate by weight among the available ones and moves it to the front. */
static void draw_first(struct ent *e, size_t k, const struct ctx *x, uint64_t *rng)
{
    double total = 0;
    size_t n_avail = 0;
    for (size_t i = 0; i < k; i++) {
        if (x->c[e[i].idx].available) {
            total += e[i].w;
            n_avail++;
        }
    }
    if (n_avail == 0)
        return;
    size_t pick = k;
    if (total > 0) {
        double r = uniform(rng) * total;
        for (size_t i = 0; i < k; i++) {
            if (!x->c[e[i].idx].available || !(e[i].w > 0))
                continue;
            pick = i; /* the last positive one absorbs rounding */
            if (r < e[i].w)
                break;
            r -= e[i].w;
        }
    } else {
        size_t nth = (size_t)(next_random(rng) % n_avail);
        for (size_t i = 0; i < k && pick == k; i++)
            if (x->c[e[i].idx].available && nth-- == 0)
                pick = i;
    }
    struct ent chosen = e[pick];
    memmove(e + 1, e, pick * sizeof(*e));
    e[0] = chosen;
}

/* Orders one group of <k> entries in place (rule 3); returns how many to keep. */
static size_t order_group(struct ent *e, size_t k, const struct ctx *x, uint64_t *rng)
{
    const lx_prefs_t *p = x->prefs;
    size_t listed = 0;
    if (p->order.n > 0) {
        /* listed ones to the front (stable), sorted by their position in the list */
        struct ent tmp[LX_ROUTER_MAX_CANDS];
        size_t nt = 0;
        for (size_t i = 0; i < k; i++)
            if (e[i].ordpos >= 0)
                e[listed++] = e[i];
            else
                tmp[nt++] = e[i];
        memcpy(e + listed, tmp, nt * sizeof(*e));
        isort(e, listed, x, by_order);
    }
    struct ent *rest = e + listed;
    size_t nr = k - listed;
    switch (p->sort) {
    case LX_PREFS_SORT_PRICE:
        isort(rest, nr, x, by_price);
        break;
    case LX_PREFS_SORT_THROUGHPUT:
        isort(rest, nr, x, by_throughput);
        break;
    case LX_PREFS_SORT_LATENCY:
        isort(rest, nr, x, by_latency);
        break;
    case LX_PREFS_SORT_NONE:
        weigh(rest, nr, x);
        if (p->order.n == 0 && nr > 0) {
            draw_first(rest, nr, x, rng);
            if (x->c[rest[0].idx].available)
                isort(rest + 1, nr - 1, x, by_weight);
            else
                isort(rest, nr, x, by_weight);
        } else {
            isort(rest, nr, x, by_weight);
        }
        break;
    }
    if (!p->allow_fallbacks && p->order.n == 0 && k > 0) {
        /* only the primary: the first available one, else the first */
        for (size_t i = 0; i < k; i++) {
            if (x->c[e[i].idx].available) {
                e[0] = e[i];
                break;
            }
        }
        return 1;
    }
    return k;
}

/* 1. The hard filters: alive[i] tells whether candidate i passed them all. The number left,
 * or LX_ENOROUTE with <why> naming the filter that removed the last ones. */
static int filter(const struct ctx *x, bool *alive, char *why, size_t why_cap)
{
    bool rr = x->opts->strategy == LX_ROUTER_ROUND_ROBIN;
    size_t n = x->n, count = n;
    for (size_t i = 0; i < n; i++)
        alive[i] = true;
    for (int s = 0; s < S_COUNT; s++) {
        if (!stage_active(x->prefs, (enum stage)s, rr))
            continue;
        uint32_t missing = 0;
        for (size_t i = 0; i < n; i++) {
            if (alive[i] && !stage_passes(x->prefs, (enum stage)s, &x->c[i], &missing)) {
                alive[i] = false;
                count--;
            }
        }
        if (count == 0) {
            explain(x, (enum stage)s, missing, why, why_cap);
            return LX_ENOROUTE;
        }
    }
    return (int)count;
}

/* 2. groups, 3. order inside each, over the <k> entries of <e>; kept entries are compacted to
 * the front of e. Their number. */
static size_t order_groups(struct ent *e, size_t k, const struct ctx *x, uint64_t *rng_state)
{
    const lx_router_opts_t *opts = x->opts;
    const lx_prefs_t *prefs = x->prefs;
    const lx_router_cand_t *cands = x->c;
    bool rr = opts->strategy == LX_ROUTER_ROUND_ROBIN;
    bool one_group =
        !rr && prefs->sort != LX_PREFS_SORT_NONE && prefs->partition == LX_PREFS_PARTITION_NONE;
    if (!one_group)
        isort(e, k, x, by_rank);
    size_t kept = 0;
    for (size_t gs = 0; gs < k;) {
        size_t ge = gs + 1;
        while (ge < k && (one_group || cands[e[ge].idx].model_rank == cands[e[gs].idx].model_rank))
            ge++;
        size_t gk = ge - gs;
        size_t keep;
        if (rr) {
            struct ent tmp[LX_ROUTER_MAX_CANDS];
            size_t shift = (size_t)(opts->rr % gk);
            for (size_t i = 0; i < gk; i++)
                tmp[i] = e[gs + (i + shift) % gk];
            memcpy(e + gs, tmp, gk * sizeof(*e));
            keep = gk;
        } else {
            keep = order_group(e + gs, gk, x, rng_state);
        }
        memmove(e + kept, e + gs, keep * sizeof(*e));
        kept += keep;
        gs = ge;
    }
    return kept;
}

int lx_router_plan(const lx_router_opts_t *opts, const lx_prefs_t *prefs,
                   const lx_router_cand_t *cands, size_t n, uint64_t *rng_state, uint16_t *plan,
                   size_t plan_cap, char *why, size_t why_cap)
{
    struct ctx x = {opts, prefs, cands, n};
    bool rr = opts->strategy == LX_ROUTER_ROUND_ROBIN;
    if (why_cap > 0)
        why[0] = '\0';
    if (n > LX_ROUTER_MAX_CANDS) {
        struct out o = {why, why_cap, 0};
        put(&o, "%zu candidates, more than the router's %d", n, LX_ROUTER_MAX_CANDS);
        return LX_ETOOBIG;
    }
    if (n == 0) {
        explain(&x, S_COUNT, 0, why, why_cap);
        return LX_ENOROUTE;
    }

    bool alive[LX_ROUTER_MAX_CANDS];
    int left = filter(&x, alive, why, why_cap);
    if (left < 0)
        return left;

    struct ent e[LX_ROUTER_MAX_CANDS];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!alive[i])
            continue;
        e[k].idx = (uint16_t)i;
        e[k].ordpos =
            (!rr && prefs->order.n > 0)
                ? lx_prefs_list_find(&prefs->order, cands[i].provider, cands[i].provider_len)
                : -1;
        e[k].w = 0;
        k++;
    }
    size_t kept = order_groups(e, k, &x, rng_state);

    /* 4. available first, unavailable after as a last resort, each in the order they had */
    size_t out = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < kept && out < plan_cap; i++) {
            bool avail = rr || cands[e[i].idx].available;
            if (avail == (pass == 0))
                plan[out++] = e[i].idx;
        }
    }
    return (int)out;
}

size_t lx_router_pick_endpoint(const uint32_t *in_flight, const bool *available, size_t n,
                               uint64_t *rng)
{
    if (n <= 1)
        return 0;
    size_t n_avail = 0, only = 0, least = 0;
    for (size_t i = 0; i < n; i++) {
        if (available[i]) {
            n_avail++;
            only = i;
        }
        if (in_flight[i] < in_flight[least])
            least = i;
    }
    if (n_avail == 0)
        return least;
    if (n_avail == 1)
        return only;
    size_t a = (size_t)(next_random(rng) % n_avail);
    size_t b = (size_t)(next_random(rng) % (n_avail - 1));
    if (b >= a)
        b++;
    size_t ia = n, ib = n;
    for (size_t i = 0, nth = 0; i < n; i++) {
        if (!available[i])
            continue;
        if (nth == a)
            ia = i;
        if (nth == b)
            ib = i;
        nth++;
    }
    return in_flight[ib] < in_flight[ia] ? ib : ia;
}

size_t lx_router_pick_replica(const uint32_t *in_flight, const bool *available, const bool *demoted,
                              size_t n, double exploration, uint64_t *rng)
{
    bool kept[LX_ROUTER_MAX_REPLICAS];
    size_t n_kept = 0, n_demoted = 0;
    if (n > LX_ROUTER_MAX_REPLICAS)
        n = LX_ROUTER_MAX_REPLICAS;
    for (size_t i = 0; i < n; i++) {
        kept[i] = available[i] && !demoted[i];
        n_kept += kept[i];
        n_demoted += available[i] && demoted[i];
    }
    if (n_kept == 0 || n_demoted == 0)
        return lx_router_pick_endpoint(in_flight, available, n, rng);
    /* each demoted replica: the exploration share, the demoted together at most half */
    double share = exploration > 0 ? exploration : 0;
    if (share * (double)n_demoted > 0.5)
        share = 0.5 / (double)n_demoted;
    double u = uniform(rng);
    if (u < share * (double)n_demoted) {
        size_t nth = (size_t)(u / share);
        for (size_t i = 0; i < n; i++)
            if (available[i] && demoted[i] && nth-- == 0)
                return i;
    }
    return lx_router_pick_endpoint(in_flight, kept, n, rng);
}
