/*
 * fuzz_prefs.c - libFuzzer target for the routing preferences and the plan built from them.
 *
 * The input is the value of `provider`: it is wrapped into a request body
 * {"model":"m:nitro","temperature":1,"tools":[],"provider":<input>}, scanned, and when the scan
 * accepts it, parsed by lx_prefs_parse(). A refusal must carry a message; an acceptance must
 * give sane preferences (lists within bounds, views inside the body, prices >= 0). Then the
 * request parameters are listed and a plan is built over fixed candidates with both
 * strategies: every entry must be a distinct candidate index, or the refusal must say why.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llm/body.h"
#include "route/prefs.h"
#include "route/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char head[] = "{\"model\":\"m:nitro\",\"temperature\":1,\"tools\":[],\"provider\":";

static void check_list(const lx_prefs_list_t *l, const char *body, size_t len)
{
    if (l->n > LX_PREFS_MAX_NAMES)
        abort();
    for (uint32_t k = 0; k < l->n; k++)
        if (l->name[k].ptr < body || l->name[k].ptr + l->name[k].len > body + len)
            abort();
}

static void plan(const lx_prefs_t *p, enum lx_router_strategy strategy)
{
    static const char *const params[] = {"temperature", "tools"};
    lx_router_cand_t c[6];
    memset(c, 0, sizeof(c));
    const char *names[6] = {"a", "b", "deepinfra/turbo", "c", "a", "free"};
    for (int i = 0; i < 6; i++) {
        c[i].model_rank = (uint16_t)(i / 3);
        c[i].model = i < 3 ? "m" : "f";
        c[i].model_len = 1;
        c[i].provider = names[i];
        c[i].provider_len = strlen(names[i]);
        c[i].price_prompt = i == 5 ? 0 : 0.5 * i;
        c[i].price_completion = i == 5 ? 0 : 1.0 * i;
        c[i].score = 0.2 * i;
        c[i].has_data = i != 1;
        c[i].tps_p50 = 10.0 * i;
        c[i].ttft_p50_ms = 100.0 * (6 - i);
        c[i].available = i != 2;
        c[i].data_collection_deny = i % 2 == 0;
        c[i].zdr = i == 4;
        c[i].params = i == 3 ? params : NULL;
        c[i].n_params = i == 3 ? 2 : 0;
    }
    lx_router_opts_t opts = {strategy, 0.05, 7};
    uint64_t rng = 1;
    uint16_t out[6];
    char why[128];
    int n = lx_router_plan(&opts, p, c, 6, &rng, out, 6, why, sizeof(why));
    if (n < 0) {
        if (why[0] == '\0')
            abort();
        return;
    }
    if (n == 0 || n > 6)
        abort();
    bool seen[6] = {false};
    for (int i = 0; i < n; i++) {
        if (out[i] >= 6 || seen[out[i]])
            abort();
        seen[out[i]] = true;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16)
        return 0;
    size_t len = sizeof(head) - 1 + size + 1;
    char *body = malloc(len);
    if (body == NULL)
        return 0;
    memcpy(body, head, sizeof(head) - 1);
    memcpy(body + sizeof(head) - 1, data, size);
    body[len - 1] = '}';

    lx_body_scan_t scan;
    if (lx_body_scan(body, len, &scan) != 0) {
        free(body);
        return 0;
    }
    lx_prefs_t p;
    char err[96];
    int rc = lx_prefs_parse(body, len, &scan, &p, err, sizeof(err));
    if (rc != 0) {
        if (err[0] == '\0')
            abort();
        free(body);
        return 0;
    }
    check_list(&p.order, body, len);
    check_list(&p.only, body, len);
    check_list(&p.ignore, body, len);
    if ((p.has_max_prompt && !(p.max_prompt >= 0)) ||
        (p.has_max_completion && !(p.max_completion >= 0)))
        abort();
    size_t mlen = scan.model.len;
    lx_prefs_model_suffix(body + scan.model.off, &mlen, &p);
    if (mlen != 1 || p.sort == LX_PREFS_SORT_NONE)
        abort();
    /* the input may close `provider` and add top-level members: temperature and tools come
     * first, more may follow, or too many is refused with a message */
    err[0] = '\0';
    rc = lx_prefs_request_params(body, len, &p, err, sizeof(err));
    if (rc != 0 ? err[0] == '\0'
                : (p.n_params < 2 || p.params[0].len != 11 || p.params[1].len != 5))
        abort();
    plan(&p, LX_ROUTER_HEALTH);
    plan(&p, LX_ROUTER_ROUND_ROBIN);
    free(body);
    return 0;
}
