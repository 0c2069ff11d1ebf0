/*
 * config_value.h - the configuration's value syntaxes: human durations and sizes, listen
 * addresses, provider URLs, hex digests. Pure string -> value functions: no allocation, no
 * YAML, no I/O, so each is tested (and fuzzed through the parser) on its own.
 */
#ifndef LX_CONFIG_VALUE_H
#define LX_CONFIG_VALUE_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest duration accepted: 30 days, far below any overflow of a libuv timer deadline. */
#define LX_CONFIG_VALUE_MAX_DURATION_MS (30ull * 24 * 3600 * 1000)
/* The longest one lx_config_value_long_duration() accepts (store.retention): 3650 days. */
#define LX_CONFIG_VALUE_MAX_LONG_DURATION_MS (3650ull * 24 * 3600 * 1000)
/* The largest amount lx_config_value_micros() accepts: $1e9 in micro-dollars (the store's
 * LX_MONEY_MAX). */
#define LX_CONFIG_VALUE_MAX_MICROS 1000000000000000ull

/*
 * Parses a duration: one or more <digits><unit> groups, unit ms|s|m|h|d ("250ms", "30s", "5m",
 * "1h", "1m30s", "1d"; a day is 24h). Returns 0 and the milliseconds in *ms, or LX_ECONFIG with
 * *why pointing at a static explanation (a bare number, a sign, an unknown unit, overflow,
 * above LX_CONFIG_VALUE_MAX_DURATION_MS).
 */
int lx_config_value_duration(const char *s, uint64_t *ms, const char **why);

/* The same up to LX_CONFIG_VALUE_MAX_LONG_DURATION_MS: a time to keep data, not a timer. */
int lx_config_value_long_duration(const char *s, uint64_t *ms, const char **why);

/*
 * Parses a size: <digits><unit>, unit B|KiB|MiB|GiB (powers of 1024) or KB|MB|GB (powers of
 * 1000), optionally with spaces between number and unit ("32MiB", "1 GB"). Returns 0 and the
 * bytes in *bytes, or LX_ECONFIG with a static *why.
 */
int lx_config_value_size(const char *s, uint64_t *bytes, const char **why);

/* Parses an unsigned decimal integer in [min, max] (no sign, no spaces). 0 or LX_ECONFIG. */
int lx_config_value_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out,
                         const char **why);

/* A parsed listen address. */
typedef struct lx_config_value_listen {
    char host[INET6_ADDRSTRLEN]; /* canonical numeric form (inet_ntop), unbracketed */
    uint16_t port;               /* 1..65535 */
    bool is_loopback;            /* 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104 */
} lx_config_value_listen_t;

/*
 * Parses "IPv4:port", "[IPv6]:port" or ":port" (all IPv4 addresses, host "0.0.0.0"). Only
 * numeric addresses. Returns 0 or LX_ECONFIG with a static *why.
 */
int lx_config_value_listen(const char *s, lx_config_value_listen_t *out, const char **why);

/* A parsed http(s) URL; the slices point into the parsed string. */
typedef struct lx_config_value_url {
    bool tls;          /* https */
    const char *host;  /* host name, IPv4, or IPv6 without its brackets */
    size_t host_len;   /* > 0 */
    uint16_t port;     /* as written, else 80 / 443 */
    size_t origin_len; /* length of "scheme://host[:port]" at the start of the string */
    const char *path;  /* "" or "/..." without trailing '/' */
    size_t path_len;
} lx_config_value_url_t;

/*
 * Parses "http[s]://host[:port][/path]" (a provider's base_url): host is a DNS name, dotted
 * IPv4 or [IPv6]; no user info, query or fragment. Returns 0 or LX_ECONFIG with a static *why.
 */
int lx_config_value_base_url(const char *s, lx_config_value_url_t *out, const char **why);

/* The same for an entry of `endpoints`: only an empty path or "/" is accepted. */
int lx_config_value_endpoint_url(const char *s, lx_config_value_url_t *out, const char **why);

/* Decodes exactly 2*n hex digits (either case) into out[n]. 0 or LX_ECONFIG. */
int lx_config_value_hex(const char *s, uint8_t *out, size_t n, const char **why);

/* Parses a non-negative, finite decimal number ("0.15", "2", "1e-3"). 0 or LX_ECONFIG. */
int lx_config_value_price(const char *s, double *out, const char **why);

/*
 * Parses a non-negative decimal amount of USD exactly into micro-dollars, without floating
 * point: "0.15" is 150000, "0.000001" is 1, "1e-3" is 1000, "123456.789" is 123456789000. The
 * syntax is lx_config_value_price()'s (digits with an optional fraction and exponent; ".5" and
 * "5." too; no sign, no spaces, no hex, inf or nan). A non-zero digit past the sixth decimal
 * (once the exponent is applied) is refused, as is an amount above LX_CONFIG_VALUE_MAX_MICROS.
 * Linear in the length of <s>. Returns 0 or LX_ECONFIG with a static *why.
 */
int lx_config_value_micros(const char *s, int64_t *out, const char **why);

/* Formats milliseconds the way the parser reads them ("1m30s", "250ms", "0s", "90d"). */
void lx_config_value_format_duration(uint64_t ms, char *buf, size_t size);

/* Formats bytes with the largest binary unit that divides them ("16KiB", "1000B"). */
void lx_config_value_format_size(uint64_t bytes, char *buf, size_t size);

#endif
