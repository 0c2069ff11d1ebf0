/*
 * log.h - the error log (levels, to stderr) and the per-worker access log buffer.
 *
 * The error log is for operators: one line per event, with a timestamp and level; secrets
 * never reach it. The access log is one JSON object per request, appended to a per-worker
 * buffer and written with one write(2) every 100 ms or when half full, so logging
 * costs no syscall per request and lines never interleave (O_APPEND, whole lines).
 */
#ifndef LX_LOG_H
#define LX_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum lx_log_level { LX_LOG_ERROR = 0, LX_LOG_WARN = 1, LX_LOG_INFO = 2, LX_LOG_DEBUG = 3 };

void lx_log_set_level(int level);
bool lx_log_enabled(int level);

/* Writes "<time> [<level>] <message>\n" to stderr when <level> is enabled. */
void lx_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LX_ACCESS_LOG_BUF (64 * 1024)

typedef struct lx_access_log {
    int fd; /* -1: disabled */
    bool own_fd;
    size_t len;
    uint64_t dropped; /* lines lost to a full buffer or a failed write */
    char buf[LX_ACCESS_LOG_BUF];
} lx_access_log_t;

/* Opens <path> for appending ("-" = stdout, NULL = disabled). 0 or a negative errno. */
int lx_access_log_open(lx_access_log_t *al, const char *path);
void lx_access_log_close(lx_access_log_t *al);

/* Room for one line: returns a pointer to write up to *cap bytes at, or NULL when disabled. */
char *lx_access_log_reserve(lx_access_log_t *al, size_t *cap);
/* Commits <len> bytes written at the reserved pointer (the line must end with '\n'). */
void lx_access_log_commit(lx_access_log_t *al, size_t len);
/* Writes the buffered lines. */
void lx_access_log_flush(lx_access_log_t *al);

/* Appends <s> JSON-escaped (without quotes) into out[0..cap); returns bytes written, never
 * more than cap (cut at a character boundary when it does not fit). */
size_t lx_log_json_escape(char *out, size_t cap, const char *s, size_t len);

/* Formats the current UTC time as RFC 3339 with milliseconds into out (>= 25 bytes). */
void lx_log_time(char *out, size_t cap);

#endif
