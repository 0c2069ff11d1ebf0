/*
 * log.c - error log, access-log buffering, escaping, and the secrets set (see log.h).
 *
 * The secrets set is read on every error answer and log line by any thread, and written
 * rarely (a configuration's secrets, once per generation): it is an immutable snapshot behind
 * an atomic pointer, replaced whole under a lock by each add. Replaced snapshots stay
 * allocated (chained behind the current one), since a reader may still be walking one; a
 * configuration holds a handful of secrets, so this is a few hundred bytes per reload that
 * brings new ones.
 */
#include "obs/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"
#include "core/status.h"
#include "core/str.h"

#define MIN_SZ(a, b) ((a) < (b) ? (a) : (b))

static atomic_int log_level = LX_LOG_INFO;

void lx_log_set_level(int level)
{
    atomic_store_explicit(&log_level, level, memory_order_relaxed);
}

bool lx_log_enabled(int level)
{
    return level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

void lx_log_time(char *out, size_t cap)
{
    /* the date and time to the second change once a second: formatted then, per thread */
    static __thread time_t cached_sec = -1;
    static __thread char cached[64];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        snprintf(cached, sizeof(cached), "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_sec = tv.tv_sec;
    }
    if (cap < 25) {
        if (cap > 0)
            out[0] = '\0';
        return;
    }
    memcpy(out, cached, 19);
    int ms = (int)(tv.tv_usec / 1000);
    out[19] = '.';
    out[20] = (char)('0' + ms / 100);
    out[21] = (char)('0' + ms / 10 % 10);
    out[22] = (char)('0' + ms % 10);
    out[23] = 'Z';
    out[24] = '\0';
}

/* ---- escaping --------------------------------------------------------------------------- */

/* The code point of a valid sequence of <n> (2 or 3) bytes that a log must not carry as it is:
 * a C1 control, a line or paragraph separator, a bidirectional embedding, override or isolate.
 * 0 for any other. */
static unsigned hidden_char(const unsigned char *s, size_t n)
{
    if (n == 2 && s[0] == 0xc2 && s[1] < 0xa0)
        return s[1]; /* U+0080..U+009F */
    if (n == 3 && s[0] == 0xe2) {
        unsigned cp = 0x2000u | (unsigned)(s[1] & 0x3f) << 6 | (unsigned)(s[2] & 0x3f);
        if ((cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
            return cp;
    }
    return 0;
}

/*
 * The escaped form of the character at s (<avail> bytes) into tmp (at least 8 bytes): its
 * length, and in *<in> the input bytes it stands for. A character that passes as it is sets
 * *<direct> (the caller copies the input). Printable ASCII is decided here (the common case);
 * so are BS and FF, which the logs have always written \u0008 and \u000c. The rest is
 * core/json's one rule (lx_json_escape_char(): '"', '\\', \n \r \t, other C0 controls and
 * DEL as \u00XX), with the log's own classes on top: an invalid UTF-8 byte keeps its value as the
 * text \xNN
 * (<json>, the access log's rule: "\\xNN", so the line stays valid JSON) instead of becoming
 * U+FFFD, and the hidden characters (C1 controls, line and paragraph separators, bidirectional
 * controls) are escaped as \uXXXX. The error log (<json> false) leaves '"' as it is.
 */
static size_t escape_one(const unsigned char *s, size_t avail, bool json, char *tmp, size_t *in,
                         bool *direct)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = s[0];
    *in = 1;
    *direct = false;
    if (c >= 0x20 && c < 0x7f) {
        if (c == '\\' || (json && c == '"')) {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            return 2;
        }
        *direct = true;
        return 1;
    }
    if (c == '\b' || c == '\f') {
        memcpy(tmp, "\\u00", 4);
        tmp[4] = hex[c >> 4];
        tmp[5] = hex[c & 15];
        return 6;
    }
    if (c >= 0x80) {
        size_t n = lx_str_utf8_len(s, avail);
        if (n == 0) {
            /* a byte of invalid UTF-8: its value, as text */
            size_t k = 0;
            tmp[k++] = '\\';
            if (json)
                tmp[k++] = '\\';
            tmp[k++] = 'x';
            tmp[k++] = hex[c >> 4];
            tmp[k++] = hex[c & 15];
            return k;
        }
        unsigned cp = hidden_char(s, n);
        if (cp != 0) {
            *in = n;
            memcpy(tmp, "\\u", 2);
            tmp[2] = hex[cp >> 12 & 15];
            tmp[3] = hex[cp >> 8 & 15];
            tmp[4] = hex[cp >> 4 & 15];
            tmp[5] = hex[cp & 15];
            return 6;
        }
    }
    size_t n = lx_json_escape_char((const char *)s, avail, tmp, in);
    if (n == 0) {
        *direct = true;
        return *in;
    }
    return n;
}

/* Escapes s[0, len) into out[0, cap) by one of the two rules, each secret of <set> (may be
 * NULL) replaced by LX_LOG_REDACTED; whole escapes only. Returns the bytes written. */
static size_t escape(char *out, size_t cap, const char *s, size_t len, bool json,
                     const lx_log_secrets_t *set)
{
    const unsigned char *u = (const unsigned char *)s;
    bool redact = set != NULL && !lx_log_secrets_empty(set);
    size_t o = 0, i = 0;
    while (i < len) {
        size_t k = redact ? lx_log_secrets_match(set, s + i, len - i) : 0;
        if (k > 0) {
            if (LX_LOG_REDACTED_LEN > cap - o)
                break;
            memcpy(out + o, LX_LOG_REDACTED, LX_LOG_REDACTED_LEN);
            o += LX_LOG_REDACTED_LEN;
            i += k;
            continue;
        }
        char tmp[8];
        size_t in;
        bool direct;
        size_t n = escape_one(u + i, len - i, json, tmp, &in, &direct);
        if (n > cap - o)
            break;
        memcpy(out + o, direct ? s + i : tmp, n);
        o += n;
        i += in;
    }
    return o;
}

size_t lx_log_text_escape(char *out, size_t cap, const char *s, size_t len)
{
    return escape(out, cap, s, len, false, NULL);
}

size_t lx_log_json_escape(char *out, size_t cap, const char *s, size_t len)
{
    return escape(out, cap, s, len, true, lx_log_secrets());
}

/* ---- the error log ---------------------------------------------------------------------- */

void lx_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (!lx_log_enabled(level))
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t mlen = m < 0 ? 0 : MIN_SZ((size_t)m, sizeof(msg) - 1);
    /* the escaped message may grow (up to six bytes for one): room for a whole line of it */
    char line[4096];
    char ts[32];
    lx_log_time(ts, sizeof(ts));
    int n = snprintf(line, sizeof(line), "%s [%s] ", ts,
                     names[level < 0   ? 0
                           : level > 3 ? 3
                                       : level]);
    size_t len = (size_t)n;
    len += escape(line + len, sizeof(line) - len - 1, msg, mlen, false, lx_log_secrets());
    line[len++] = '\n';
    /* one write per line: lines from several threads never interleave */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

/* ---- secrets ---------------------------------------------------------------------------- */

typedef struct secret {
    const char *s; /* owned by the set that added it, shared by the later ones */
    size_t len;
} secret_t;

struct lx_log_secrets {
    const struct lx_log_secrets *prev; /* the snapshot this one replaced */
    uint8_t first[32];                 /* bit per byte value: some secret starts with it */
    size_t n;
    secret_t v[];
};

static const lx_log_secrets_t no_secrets = {NULL, {0}, 0};
static _Atomic(const lx_log_secrets_t *) secrets = &no_secrets;
static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;

const lx_log_secrets_t *lx_log_secrets(void)
{
    return atomic_load_explicit(&secrets, memory_order_acquire);
}

bool lx_log_secrets_empty(const lx_log_secrets_t *set)
{
    return set->n == 0;
}

size_t lx_log_secrets_match(const lx_log_secrets_t *set, const char *s, size_t len)
{
    if (len < LX_LOG_SECRET_MIN)
        return 0;
    unsigned char c = (unsigned char)s[0];
    if (!(set->first[c >> 3] >> (c & 7) & 1))
        return 0;
    size_t best = 0;
    for (size_t k = 0; k < set->n; k++) {
        const secret_t *v = &set->v[k];
        if (memcmp(s, v->s, LX_LOG_SECRET_MIN) != 0)
            continue;
        size_t m = LX_LOG_SECRET_MIN;
        while (m < v->len && m < len && s[m] == v->s[m])
            m++;
        if (m > best)
            best = m;
    }
    return best;
}

int lx_log_secret_add(const char *s, size_t len)
{
    if (len < LX_LOG_SECRET_MIN)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&secrets_lock);
    const lx_log_secrets_t *cur = atomic_load_explicit(&secrets, memory_order_relaxed);
    for (size_t k = 0; k < cur->n; k++)
        if (cur->v[k].len == len && memcmp(cur->v[k].s, s, len) == 0)
            goto out; /* already a secret */
    lx_log_secrets_t *next = malloc(sizeof(*next) + (cur->n + 1) * sizeof(secret_t));
    char *copy = malloc(len);
    if (next == NULL || copy == NULL) {
        free(next);
        free(copy);
        rc = LX_ENOMEM;
        goto out;
    }
    memcpy(copy, s, len);
    next->prev = cur;
    memcpy(next->first, cur->first, sizeof(next->first));
    next->first[(unsigned char)s[0] >> 3] |= (uint8_t)(1u << ((unsigned char)s[0] & 7));
    memcpy(next->v, cur->v, cur->n * sizeof(secret_t));
    next->v[cur->n] = (secret_t){copy, len};
    next->n = cur->n + 1;
    atomic_store_explicit(&secrets, next, memory_order_release);
out:
    pthread_mutex_unlock(&secrets_lock);
    return rc;
}

int lx_access_log_open(lx_access_log_t *al, const char *path)
{
    al->len = 0;
    al->dropped = 0;
    al->own_fd = false;
    if (path == NULL) {
        al->fd = -1;
        return 0;
    }
    if (strcmp(path, "-") == 0) {
        al->fd = STDOUT_FILENO;
        return 0;
    }
    al->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (al->fd < 0)
        return -errno;
    al->own_fd = true;
    return 0;
}

void lx_access_log_close(lx_access_log_t *al)
{
    lx_access_log_flush(al);
    if (al->own_fd && al->fd >= 0)
        close(al->fd);
    al->fd = -1;
}

char *lx_access_log_reserve(lx_access_log_t *al, size_t *cap)
{
    if (al->fd < 0)
        return NULL;
    if (al->len > LX_ACCESS_LOG_BUF / 2)
        lx_access_log_flush(al);
    *cap = LX_ACCESS_LOG_BUF - al->len;
    return al->buf + al->len;
}

void lx_access_log_commit(lx_access_log_t *al, size_t len)
{
    al->len += len;
}

void lx_access_log_flush(lx_access_log_t *al)
{
    size_t off = 0;
    while (off < al->len) {
        ssize_t w = write(al->fd, al->buf + off, al->len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            al->dropped++;
            break;
        }
        off += (size_t)w;
    }
    al->len = 0;
}
