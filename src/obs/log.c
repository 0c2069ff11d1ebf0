/*
 * log.c - error log and access-log buffering (see log.h).
 */
#include "obs/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

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

void lx_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (!lx_log_enabled(level))
        return;
    char line[2048];
    char ts[32];
    lx_log_time(ts, sizeof(ts));
    int n = snprintf(line, sizeof(line), "%s [%s] ", ts,
                     names[level < 0   ? 0
                           : level > 3 ? 3
                                       : level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : MIN_SZ((size_t)m, sizeof(line) - (size_t)n - 2));
    line[len++] = '\n';
    /* one write per line: lines from several threads never interleave */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
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

size_t lx_log_json_escape(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        char esc[6];
        size_t k;
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            k = 2;
        } else if (ch == '\n') {
            memcpy(esc, "\\n", 2);
            k = 2;
        } else if (ch == '\r') {
            memcpy(esc, "\\r", 2);
            k = 2;
        } else if (ch == '\t') {
            memcpy(esc, "\\t", 2);
            k = 2;
        } else if (ch < 0x20 || ch == 0x7f || ch >= 0x80) {
            /* bytes outside printable ASCII are escaped, so a log line is valid JSON even for
             * invalid UTF-8 input */
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            k = 6;
        } else {
            esc[0] = (char)ch;
            k = 1;
        }
        if (o + k > cap)
            break;
        memcpy(out + o, esc, k);
        o += k;
    }
    return o;
}
