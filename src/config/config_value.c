/*
 * config_value.c - the syntaxes of configuration values: durations ("1m30s"), sizes ("32MiB"),
 * listen addresses ("[::1]:8080"), provider URLs, hex digests, prices (as doubles, and exactly as
 * whole micro-dollars).
 *
 * Pure functions from a NUL-terminated string to a value, used by config_parse.c while it walks
 * the YAML tree, and by config.c to print values back the way they are written. They own
 * nothing; failures come back as LX_ECONFIG with a static explanation that never quotes the
 * input (a value may be a secret).
 */
#include "config/config_value.h"

#include <arpa/inet.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/core.h"
#include "core/status.h"
#include "core/str.h"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int fail(const char **why, const char *text)
{
    *why = text;
    return LX_ECONFIG;
}

/* Reads a run of digits at *p into *out; false on overflow. *p moves past the digits. */
static bool read_digits(const char **p, uint64_t *out)
{
    uint64_t n = 0;
    const char *s = *p;
    while (is_digit(*s)) {
        unsigned d = (unsigned)(*s - '0');
        if (n > (UINT64_MAX - d) / 10)
            return false;
        n = n * 10 + d;
        s++;
    }
    *p = s;
    *out = n;
    return true;
}

/* A duration of at most <max> ms; <too_large> names the bound. */
static int parse_duration(const char *s, uint64_t max, const char *too_large, uint64_t *ms,
                          const char **why)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};
    const char *p = s;
    uint64_t total = 0;

    if (*p == '\0')
        return fail(why, "empty duration (write e.g. 30s)");
    if (*p == '-')
        return fail(why, "a duration cannot be negative");
    while (*p != '\0') {
        if (!is_digit(*p))
            return fail(why, "expected a number followed by a unit (ms, s, m, h or d), e.g. 30s "
                             "or 1m30s");
        uint64_t n;
        if (!read_digits(&p, &n))
            return fail(why, "duration is too large");
        const char *u = p;
        while (is_alpha(*p))
            p++;
        size_t ulen = (size_t)(p - u);
        if (ulen == 0)
            return fail(why, "a duration needs a unit: ms, s, m, h or d (e.g. 30s)");
        uint64_t mult = 0;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            if (strlen(units[i].unit) == ulen && memcmp(units[i].unit, u, ulen) == 0)
                mult = units[i].ms;
        }
        if (mult == 0)
            return fail(why, "unknown duration unit (use ms, s, m, h or d)");
        if (n > UINT64_MAX / mult)
            return fail(why, "duration is too large");
        n *= mult;
        if (total > UINT64_MAX - n)
            return fail(why, "duration is too large");
        total += n;
    }
    if (total > max)
        return fail(why, too_large);
    *ms = total;
    return 0;
}

int lx_config_value_duration(const char *s, uint64_t *ms, const char **why)
{
    return parse_duration(s, LX_CONFIG_VALUE_MAX_DURATION_MS,
                          "duration is too large (at most 720h)", ms, why);
}

int lx_config_value_long_duration(const char *s, uint64_t *ms, const char **why)
{
    return parse_duration(s, LX_CONFIG_VALUE_MAX_LONG_DURATION_MS,
                          "duration is too large (at most 3650d)", ms, why);
}

int lx_config_value_size(const char *s, uint64_t *bytes, const char **why)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        {"B", 1},     {"KiB", 1024},       {"MiB", 1024 * 1024},      {"GiB", 1024 * 1024 * 1024},
        {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}};
    const char *p = s;
    uint64_t n;

    if (*p == '-')
        return fail(why, "a size cannot be negative");
    if (!is_digit(*p))
        return fail(why, "expected a number followed by a unit (B, KiB, MiB, GiB, KB, MB or "
                         "GB), e.g. 32MiB");
    if (!read_digits(&p, &n))
        return fail(why, "size is too large");
    while (*p == ' ')
        p++;
    if (*p == '\0')
        return fail(why, "a size needs a unit: B, KiB, MiB, GiB, KB, MB or GB (e.g. 32MiB)");
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(units[i].unit, p) != 0)
            continue;
        if (n > UINT64_MAX / units[i].mult)
            return fail(why, "size is too large");
        *bytes = n * units[i].mult;
        return 0;
    }
    return fail(why, "unknown size unit (use B, KiB, MiB, GiB, KB, MB or GB)");
}

int lx_config_value_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out, const char **why)
{
    const char *p = s;
    uint64_t n;

    if (*p == '-')
        return fail(why, "cannot be negative");
    if (!is_digit(*p))
        return fail(why, "expected a whole number");
    if (!read_digits(&p, &n) || n > max)
        return fail(why, "number is too large");
    if (*p != '\0')
        return fail(why, "expected a whole number");
    if (n < min)
        return fail(why, "number is too small");
    *out = n;
    return 0;
}

static int parse_port(const char *p, uint64_t min, uint16_t *port, const char **why)
{
    uint64_t n;
    if (lx_config_value_uint(p, min, 65535, &n, why) != 0)
        return fail(why, min == 0 ? "port must be a number from 0 to 65535"
                                  : "port must be a number from 1 to 65535");
    *port = (uint16_t)n;
    return 0;
}

int lx_config_value_listen(const char *s, lx_config_value_listen_t *out, const char **why)
{
    char buf[INET6_ADDRSTRLEN];
    const char *host, *colon;
    size_t host_len;
    int family;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL)
            return fail(why, "missing ']' after the IPv6 address");
        host = s + 1;
        host_len = (size_t)(close - host);
        colon = close + 1;
        if (*colon != ':')
            return fail(why, "expected [address]:port");
        family = AF_INET6;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return fail(why, "expected address:port (e.g. 127.0.0.1:8080 or :8080)");
        host = s;
        host_len = (size_t)(colon - s);
        if (memchr(host, ':', host_len) != NULL)
            return fail(why, "an IPv6 address needs brackets (e.g. [::1]:8080)");
        family = AF_INET;
        if (host_len == 0) {
            host = "0.0.0.0";
            host_len = 7;
        }
    }
    if (host_len == 0 || host_len >= sizeof(buf))
        return fail(why, "not a numeric IP address (host names are not accepted here)");
    memcpy(buf, host, host_len);
    buf[host_len] = '\0';

    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(family, buf, addr) != 1)
        return fail(why, "not a numeric IP address (host names are not accepted here)");
    /* port 0 listens on a free port chosen by the kernel (tests) */
    if (parse_port(colon + 1, 0, &out->port, why) != 0)
        return LX_ECONFIG;
    if (inet_ntop(family, addr, out->host, sizeof(out->host)) == NULL)
        return fail(why, "not a numeric IP address");
    if (family == AF_INET) {
        out->is_loopback = addr[0] == 127;
    } else {
        static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        struct in6_addr a6;
        memcpy(&a6, addr, sizeof(a6));
        out->is_loopback = IN6_IS_ADDR_LOOPBACK(&a6) ||
                           (memcmp(addr, v4mapped, sizeof(v4mapped)) == 0 && addr[12] == 127);
    }
    return 0;
}

/* A DNS name (letters, digits, '-', '_', dot-separated labels) or a dotted IPv4 address. */
static int check_host_name(const char *h, size_t len, const char **why)
{
    bool numeric = true;
    size_t label = 0;

    if (len > 253)
        return fail(why, "host name is too long");
    for (size_t i = 0; i < len; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0 || h[i - 1] == '-')
                return fail(why, "malformed host name");
            label = 0;
            continue;
        }
        if (!is_digit(c)) {
            numeric = false;
            if (!is_alpha(c) && c != '-' && c != '_')
                return fail(why, "host name has a character that is not allowed");
            if (c == '-' && label == 0)
                return fail(why, "malformed host name");
        }
        if (++label > 63)
            return fail(why, "host name label is too long");
    }
    if (label == 0 || h[len - 1] == '-')
        return fail(why, "malformed host name");
    if (numeric) {
        char buf[16];
        unsigned char addr[4];
        if (len >= sizeof(buf))
            return fail(why, "malformed IPv4 address");
        memcpy(buf, h, len);
        buf[len] = '\0';
        if (inet_pton(AF_INET, buf, addr) != 1)
            return fail(why, "malformed IPv4 address");
    }
    return 0;
}

/* A URL with any path: lx_config_value_base_url() is this, endpoint URLs add their check. */
static int parse_url(const char *s, lx_config_value_url_t *out, const char **why)
{
    const char *p;

    memset(out, 0, sizeof(*out));
    if (strncasecmp(s, "http://", 7) == 0) {
        p = s + 7;
    } else if (strncasecmp(s, "https://", 8) == 0) {
        out->tls = true;
        p = s + 8;
    } else {
        return fail(why, "only http:// and https:// URLs are supported");
    }
    out->port = out->tls ? 443 : 80;

    const char *auth_end = p + strcspn(p, "/?#");
    if (memchr(p, '@', (size_t)(auth_end - p)) != NULL)
        return fail(why, "user info in URLs is not supported (use api_key or headers)");
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(auth_end - p));
        char buf[INET6_ADDRSTRLEN];
        unsigned char addr[sizeof(struct in6_addr)];
        if (close == NULL)
            return fail(why, "missing ']' after the IPv6 address");
        out->host = p + 1;
        out->host_len = (size_t)(close - out->host);
        if (out->host_len == 0 || out->host_len >= sizeof(buf))
            return fail(why, "malformed IPv6 address");
        memcpy(buf, out->host, out->host_len);
        buf[out->host_len] = '\0';
        if (inet_pton(AF_INET6, buf, addr) != 1)
            return fail(why, "malformed IPv6 address");
        p = close + 1;
    } else {
        out->host = p;
        out->host_len = strcspn(p, ":/?#");
        if (out->host_len == 0)
            return fail(why, "URL has no host");
        if (check_host_name(out->host, out->host_len, why) != 0)
            return LX_ECONFIG;
        p += out->host_len;
    }
    if (*p == ':') {
        char port[8];
        size_t n = (size_t)(auth_end - (p + 1));
        if (n == 0 || n >= sizeof(port))
            return fail(why, "port must be a number from 1 to 65535");
        memcpy(port, p + 1, n);
        port[n] = '\0';
        if (parse_port(port, 1, &out->port, why) != 0)
            return LX_ECONFIG;
        p = auth_end;
    }
    if (p != auth_end)
        return fail(why, "unexpected character after the host");
    out->origin_len = (size_t)(p - s);

    if (*p == '?' || *p == '#')
        return fail(why, "query strings and fragments are not supported in URLs");
    out->path = p;
    for (const char *c = p; *c != '\0'; c++) {
        if (*c == '?' || *c == '#')
            return fail(why, "query strings and fragments are not supported in URLs");
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c == 0x7f)
            return fail(why, "URL has a space or control character");
    }
    out->path_len = strlen(p);
    while (out->path_len > 0 && p[out->path_len - 1] == '/')
        out->path_len--;
    return 0;
}

int lx_config_value_base_url(const char *s, lx_config_value_url_t *out, const char **why)
{
    return parse_url(s, out, why);
}

int lx_config_value_endpoint_url(const char *s, lx_config_value_url_t *out, const char **why)
{
    int rc = parse_url(s, out, why);
    if (rc != 0)
        return rc;
    if (out->path_len > 0)
        return fail(why, "an endpoint URL has no path (the provider's base_url supplies it)");
    return 0;
}

int lx_config_value_hex(const char *s, uint8_t *out, size_t n, const char **why)
{
    if (strlen(s) != 2 * n)
        return fail(why, "wrong length of hex digits");
    for (size_t i = 0; i < n; i++) {
        int hi = lx_hex_value(s[2 * i]), lo = lx_hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return fail(why, "not a hex digit");
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int lx_config_value_price(const char *s, double *out, const char **why)
{
    char *end;

    if (s[0] == '-')
        return fail(why, "a price cannot be negative");
    /* strtod alone would also take leading spaces, hex floats, "inf" and "nan". */
    if (!is_digit(s[0]) && !(s[0] == '.' && is_digit(s[1])))
        return fail(why, "expected a number (USD per million tokens)");
    if (strpbrk(s, "xX") != NULL)
        return fail(why, "expected a decimal number (USD per million tokens)");
    double v = strtod(s, &end);
    if (end == s || *end != '\0')
        return fail(why, "expected a number (USD per million tokens)");
    if (!isfinite(v) || v > 1e9)
        return fail(why, "price is too large");
    *out = v;
    return 0;
}

/*
 * The exact reading of lx_config_value_micros(): the mantissa's significant digits (leading
 * zeros skipped, trailing zeros counted apart in <zeros>) and the power of ten that turns them
 * into micro-units. <m> holds the digits while there are at most 18 of them.
 */
struct decimal {
    uint64_t m;
    size_t digits; /* significant digits seen (the zeros between them included) */
    size_t zeros;  /* zeros after the last non-zero digit, not in m yet */
    int64_t scale; /* 6 minus the digits after the point */
};

static void decimal_digit(struct decimal *d, unsigned digit)
{
    if (digit == 0) {
        if (d->digits > 0)
            d->zeros++;
        return;
    }
    if (d->digits + d->zeros + 1 <= 18) {
        for (size_t k = 0; k < d->zeros; k++)
            d->m *= 10;
        d->m = d->m * 10 + digit;
    }
    d->digits += d->zeros + 1;
    d->zeros = 0;
}

/* The mantissa's digits at *p ("12", "12.5", ".5", "12."): false when there is none. */
static bool decimal_mantissa(const char **p, struct decimal *d)
{
    const char *s = *p;
    bool any = false;
    for (; is_digit(*s); s++, any = true)
        decimal_digit(d, (unsigned)(*s - '0'));
    if (*s == '.') {
        for (s++; is_digit(*s); s++, any = true) {
            decimal_digit(d, (unsigned)(*s - '0'));
            d->scale--;
        }
    }
    *p = s;
    return any;
}

int lx_config_value_micros(const char *s, int64_t *out, const char **why)
{
    struct decimal d = {.scale = 6};
    const char *p = s;

    if (*p == '-')
        return fail(why, "cannot be negative");
    if (!is_digit(*p) && !(*p == '.' && is_digit(p[1])))
        return fail(why, "expected a decimal number (USD)");
    if (!decimal_mantissa(&p, &d))
        return fail(why, "expected a decimal number (USD)");
    int64_t exp = 0;
    if (*p == 'e' || *p == 'E') {
        bool neg = p[1] == '-';
        p += p[1] == '-' || p[1] == '+' ? 2 : 1;
        if (!is_digit(*p))
            return fail(why, "expected a decimal number (USD)");
        for (; is_digit(*p); p++)
            exp = exp >= 100000 ? exp : exp * 10 + (*p - '0'); /* saturates: 1e100000 is large */
        exp = neg ? -exp : exp;
    }
    if (*p != '\0')
        return fail(why, "expected a decimal number (USD)");
    if (d.digits == 0) {
        *out = 0;
        return 0;
    }
    int64_t e = d.scale + (int64_t)LX_MIN(d.zeros, (size_t)100000) + exp;
    if (e < 0)
        return fail(why, "at most 6 decimals (amounts are whole micro-dollars)");
    if ((int64_t)LX_MIN(d.digits, (size_t)100) + e > 16)
        return fail(why, "amount is too large (at most 1000000000)");
    uint64_t v = d.m;
    for (int64_t k = 0; k < e; k++)
        v *= 10;
    if (v > LX_CONFIG_VALUE_MAX_MICROS)
        return fail(why, "amount is too large (at most 1000000000)");
    *out = (int64_t)v;
    return 0;
}

void lx_config_value_format_duration(uint64_t ms, char *buf, size_t size)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
    size_t used = 0;

    if (size == 0)
        return;
    buf[0] = '\0';
    if (ms == 0) {
        snprintf(buf, size, "0s");
        return;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]) && used < size; i++) {
        uint64_t n = ms / units[i].ms;
        if (n == 0)
            continue;
        ms -= n * units[i].ms;
        int w = snprintf(buf + used, size - used, "%llu%s", (unsigned long long)n, units[i].unit);
        if (w < 0)
            return;
        used += (size_t)w;
    }
}

void lx_config_value_format_size(uint64_t bytes, char *buf, size_t size)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {{"GiB", 1024 * 1024 * 1024}, {"MiB", 1024 * 1024}, {"KiB", 1024}};

    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (bytes != 0 && bytes % units[i].mult == 0) {
            snprintf(buf, size, "%llu%s", (unsigned long long)(bytes / units[i].mult),
                     units[i].unit);
            return;
        }
    }
    snprintf(buf, size, "%lluB", (unsigned long long)bytes);
}
