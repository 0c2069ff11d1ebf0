/*
 * log.h - the error log (levels, to stderr), the per-worker access log buffer, and the set of
 * secrets that never leave llmux.
 *
 * The error log is for operators: one line per event, with a timestamp and level. Whatever a
 * line carries (a provider's error message, a client's model name), it stays one line of
 * printable text: control characters, line separators and invalid UTF-8 are escaped, and every
 * registered secret is replaced by "[redacted]". The access log is one JSON object per
 * request, appended to a per-worker buffer and written with one write(2) every 100 ms or when
 * half full, so logging costs no syscall per request and lines never interleave (O_APPEND,
 * whole lines).
 *
 * One escaping rule for bytes at and above 0x80 in both logs: valid UTF-8 passes as it is, each
 * byte of an invalid sequence is written as the four characters \xNN (in the access log's
 * JSON, as the string "\\xNN", which reads back as the same four characters).
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

/*
 * Writes "<time> [<level>] <message>\n" to stderr when <level> is enabled, in one write(2).
 * The formatted message is cut at about 2 KiB, then every registered secret in it is replaced
 * by "[redacted]" (lx_log_secrets_match()) and it is escaped with lx_log_text_escape(), so a
 * line is always exactly one line and never moves a terminal's cursor.
 */
void lx_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Escapes <len> bytes of <s> into <out> (at most <cap> bytes) for the error log: valid UTF-8
 * and printable ASCII pass, '\\' is doubled, LF, CR and TAB become \n \r \t, the other
 * control characters (C0, DEL and the C1 range U+0080..U+009F) and the characters that move
 * or reorder text (U+2028, U+2029, U+202A..U+202E, U+2066..U+2069) become \uXXXX, and each
 * byte of invalid UTF-8 becomes \xNN. Writes whole escapes only; returns the bytes written.
 */
size_t lx_log_text_escape(char *out, size_t cap, const char *s, size_t len);

/* ---- secrets ---------------------------------------------------------------------------- */

/* The shortest value lx_log_secret_add() registers: a shorter one would match ordinary words. */
#define LX_LOG_SECRET_MIN 8
/* What a secret is replaced with. */
#define LX_LOG_REDACTED     "[redacted]"
#define LX_LOG_REDACTED_LEN 10

/*
 * Registers <len> bytes of <s> as a secret (a provider's API key, a provider header value):
 * from then on no log line and no error answer formatted by the gateway carries it. The set is
 * process-wide and append-only (a value stays a secret after a reload drops it: requests of
 * the old configuration may still be answering); a value already in it is not added twice.
 * Values shorter than LX_LOG_SECRET_MIN bytes are ignored. Thread-safe: adds take a lock,
 * readers none. Returns 0, or LX_ENOMEM (the value is then not registered).
 */
int lx_log_secret_add(const char *s, size_t len);

/* A snapshot of the secrets registered so far (immutable; valid until exit). Never NULL. */
typedef struct lx_log_secrets lx_log_secrets_t;
const lx_log_secrets_t *lx_log_secrets(void);

/*
 * The number of bytes to redact at <s> (<len> bytes available), or 0: the longest run that
 * begins like a secret of <set> -- its first LX_LOG_SECRET_MIN bytes, continued for as long as
 * it matches. A whole occurrence is such a run, and so is one cut short by a truncation,
 * wherever the cut left it; a cut that keeps fewer than LX_LOG_SECRET_MIN bytes of a secret is
 * not found.
 */
size_t lx_log_secrets_match(const lx_log_secrets_t *set, const char *s, size_t len);

/* Whether <set> holds no secret (then lx_log_secrets_match() never finds anything). */
bool lx_log_secrets_empty(const lx_log_secrets_t *set);

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
 * more than cap (cut at a character boundary when it does not fit). '"' and '\\' are escaped,
 * LF, CR and TAB as \n \r \t, the other control characters and the line and direction
 * characters lx_log_text_escape() names as \u00XX / \uXXXX, valid UTF-8 passes, and each
 * byte of invalid UTF-8 is written as "\\xNN" (valid JSON, reading back as \xNN). */
size_t lx_log_json_escape(char *out, size_t cap, const char *s, size_t len);

/* Formats the current UTC time as RFC 3339 with milliseconds into out (>= 25 bytes). */
void lx_log_time(char *out, size_t cap);

#endif
