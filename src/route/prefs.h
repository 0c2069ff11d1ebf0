/*
 * prefs.h - a request's routing preferences: the `provider` object, `route`, the model suffixes
 * `:nitro` / `:floor`, and the request parameters `provider.require_parameters` checks.
 *
 * Pure functions over a body that lx_body_scan() accepted. lx_prefs_t is a fixed-size value
 * holding views into that body (no allocation, no copy of the body); it may be copied freely
 * but is valid only while the body is.
 */
#ifndef LX_PREFS_H
#define LX_PREFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llm/body.h"

/* Most entries kept in each of provider.order, provider.only and provider.ignore; more is an
 * error (400). */
#define LX_PREFS_MAX_NAMES 16
/* Longest provider name in those lists, in decoded bytes; longer is an error (400). */
#define LX_PREFS_NAME_MAX 128
/* Most request parameters recorded for provider.require_parameters; more is an error (400). */
#define LX_PREFS_MAX_PARAMS 32

/* A string in the body: <len> raw bytes at <ptr> (between the quotes). <escaped> says the raw
 * bytes hold a backslash escape, so they must be decoded (lx_json_unescape) before comparing. */
typedef struct lx_prefs_view {
    const char *ptr;
    uint32_t len;
    bool escaped;
} lx_prefs_view_t;

/* A list of provider names (order, only, ignore); n == 0 means the list was not given. */
typedef struct lx_prefs_list {
    uint32_t n;
    lx_prefs_view_t name[LX_PREFS_MAX_NAMES];
} lx_prefs_list_t;

enum lx_prefs_sort {
    LX_PREFS_SORT_NONE,       /* no sort: health- and price-weighted load balancing */
    LX_PREFS_SORT_PRICE,      /* cheapest prompt + completion price first */
    LX_PREFS_SORT_THROUGHPUT, /* highest tokens per second (p50) first */
    LX_PREFS_SORT_LATENCY,    /* lowest time to first token (p50) first */
};

/* Where the sort came from: an explicit provider.sort always wins over a model suffix. */
enum lx_prefs_sort_source {
    LX_PREFS_SORT_DEFAULT,  /* not set */
    LX_PREFS_SORT_SUFFIX,   /* set by a `:nitro` / `:floor` model suffix */
    LX_PREFS_SORT_EXPLICIT, /* set by provider.sort */
};

enum lx_prefs_partition {
    LX_PREFS_PARTITION_MODEL, /* sort within each model of the `models` chain (the default) */
    LX_PREFS_PARTITION_NONE,  /* sort across every candidate of every model */
};

/* Members of a `provider` object, as bits of lx_prefs_t.set. */
enum {
    LX_PREFS_SET_ORDER = 1u << 0,
    LX_PREFS_SET_ONLY = 1u << 1,
    LX_PREFS_SET_IGNORE = 1u << 2,
    LX_PREFS_SET_ALLOW_FALLBACKS = 1u << 3,
    LX_PREFS_SET_SORT = 1u << 4,
    LX_PREFS_SET_MAX_PRICE = 1u << 5,
    LX_PREFS_SET_DATA_COLLECTION = 1u << 6,
    LX_PREFS_SET_ZDR = 1u << 7,
    LX_PREFS_SET_REQUIRE_PARAMETERS = 1u << 8,
};

typedef struct lx_prefs {
    unsigned set;           /* LX_PREFS_SET_* of the members the object gave a non-null value */
    lx_prefs_list_t order;  /* try these first, in this order */
    lx_prefs_list_t only;   /* allowlist (n == 0: everything allowed) */
    lx_prefs_list_t ignore; /* denylist */
    bool allow_fallbacks;   /* default true */
    enum lx_prefs_sort sort;
    enum lx_prefs_sort_source sort_source;
    enum lx_prefs_partition partition; /* default MODEL; only meaningful with a sort */
    /* provider.max_price, USD per million tokens; a hard filter on each separately. */
    bool has_max_prompt;
    double max_prompt; /* >= 0 when has_max_prompt */
    bool has_max_completion;
    double max_completion;     /* >= 0 when has_max_completion */
    bool data_collection_deny; /* data_collection: "deny" */
    bool zdr;
    bool require_parameters;
    /* The request's parameters (lx_prefs_request_params), raw top-level keys of the body. */
    uint32_t n_params;
    lx_prefs_view_t params[LX_PREFS_MAX_PARAMS];
} lx_prefs_t;

/* Sets <p> to the defaults: no lists, allow_fallbacks true, no sort, partition "model", no
 * price limit, data collection allowed, no zdr, no require_parameters, no params. */
void lx_prefs_init(lx_prefs_t *p);

/*
 * Reads the routing preferences of <body> (<body_len> bytes that lx_body_scan() accepted into
 * <scan>) into <out>, which it first resets with lx_prefs_init():
 *   - `provider` (absent or null: defaults) - members order, only, ignore (arrays of strings,
 *     at most LX_PREFS_MAX_NAMES entries of at most LX_PREFS_NAME_MAX decoded bytes; an empty
 *     array is the same as absent), allow_fallbacks, sort ("price" | "throughput" | "latency",
 *     or {by, partition} with partition "model" | "none"), max_price ({prompt, completion}:
 *     numbers >= 0, or strings holding one, as OpenRouter's schema types them; other members
 *     such as request or image are accepted and ignored), data_collection ("allow" | "deny"),
 *     zdr, require_parameters (booleans). A null member is its default. Unknown members are
 *     ignored (OpenRouter keeps adding some, e.g. quantizations); keys are compared raw, as in
 *     the body scan. A member given twice is an error.
 *   - `route` (deprecated, OpenRouter's alias for provider.sort.partition): "fallback" means
 *     partition "model" with fallbacks allowed (the defaults), "sort" means partition "none";
 *     members of `provider` win over it. null is ignored; any other string is an error.
 * Returns 0, or LX_EJSON with a precise message in <err> (NUL-terminated, truncated to
 * <err_cap>), e.g. `provider.sort must be "price", "throughput" or "latency"`: the gateway
 * answers 400. <out> holds views into <body>.
 */
int lx_prefs_parse(const char *body, size_t body_len, const lx_body_scan_t *scan, lx_prefs_t *out,
                   char *err, size_t err_cap);

/*
 * Fills in <p> (a request's preferences) from <defaults> (a key's): each member the request's
 * `provider` object did not set takes the key's value. The views of <defaults> must outlive
 * <p>'s use.
 */
void lx_prefs_merge_under(lx_prefs_t *p, const lx_prefs_t *defaults);

/*
 * Applies the dynamic model suffix of the (decoded) model id <id> of *<len> bytes: ":nitro"
 * means sort by throughput, ":floor" sort by price. The suffix is removed by shortening *<len>.
 * The sort is set only when <p> has none yet: an explicit provider.sort wins over any suffix,
 * and the first suffix seen wins over later ones (the gateway calls this for `model` first,
 * then for each `models` entry in order). <p> may be NULL to strip only.
 */
void lx_prefs_model_suffix(const char *id, size_t *len, lx_prefs_t *p);

/*
 * Records in p->params the request parameters of <body> (<len> bytes, one JSON object that
 * lx_body_scan() accepted) for provider.require_parameters: the raw top-level keys whose value
 * is not null, each once, except the ones every provider takes or that llmux consumes:
 *   model, messages, prompt, input, stream, stream_options  (the request itself)
 *   models, provider, route, session_id                      (llmux's own, never forwarded)
 *   user, usage, transforms, plugins, preset, trace, debug   (OpenRouter-level, not a model
 *                                                             capability)
 * A single top-level pass, values skipped without recursion. Call it only when
 * p->require_parameters is set. Returns 0, or LX_EJSON with a message in <err> when the body
 * has more than LX_PREFS_MAX_PARAMS such keys (400), or is not an object.
 */
int lx_prefs_request_params(const char *body, size_t len, lx_prefs_t *p, char *err, size_t err_cap);

/*
 * Position of the provider <name> (<len> bytes) in <list>, or -1 when it is not listed. A
 * listed name matches a provider whose name equals it ignoring ASCII case, or that starts with
 * it followed by '/' (a base slug "deepinfra" matches "deepinfra/turbo", as OpenRouter's).
 */
int lx_prefs_list_find(const lx_prefs_list_t *list, const char *name, size_t len);

#endif
