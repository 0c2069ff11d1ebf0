/*
 * mock.h - the mock LLM server: an OpenAI-shaped HTTP/1.1 server on its own thread and libuv
 * loop, with faults injected per request (status, delays, chunk pacing, resets, hangs).
 *
 * Used in-process by the integration tests, and as the standalone `llmux-mock` executable by
 * the demo config and the benchmarks. Behaviour and controls: test/mock/README.md.
 */
#ifndef LX_MOCK_H
#define LX_MOCK_H

#include <stddef.h>
#include <stdint.h>

typedef struct lx_mock lx_mock_t;

/* Starts a mock server on its own thread and loop, listening on host:port (an IPv4 or IPv6
 * literal, or a name resolved once; NULL = 127.0.0.1; port 0 = ephemeral). The thread blocks
 * SIGPIPE and the usual process signals (INT, TERM, HUP, USR1, USR2, CHLD) so they reach other
 * threads. NULL on failure (address unusable, out of memory). */
lx_mock_t *lx_mock_start(const char *host, uint16_t port);

/* The port the mock listens on (the real one when started with port 0). */
uint16_t lx_mock_port(const lx_mock_t *m);

/* Stops the loop, joins the thread, closes every connection, frees everything. NULL is a
 * no-op. Must not be called from the mock's own thread. */
void lx_mock_stop(lx_mock_t *m);

/* Counters (thread-safe). */
/* Requests fully received (head and body parsed to the end). */
uint64_t lx_mock_requests(lx_mock_t *m);
/* Connections accepted. */
uint64_t lx_mock_connections(lx_mock_t *m);
/* Connections the peer closed or reset while the mock was still producing a response
 * (waiting in a delay, streaming, hanging, or with response bytes not yet written): a
 * cancelled generation. Counted once per connection. */
uint64_t lx_mock_closes_by_peer(lx_mock_t *m);

/* A malloc'd copy of the raw bytes (head + body as received, chunked framing included) of the
 * n-th most recent request (0 = last), NUL-terminated for convenience (the terminator is not
 * counted in *len); NULL when there is no such request or out of memory. Caller frees. The last
 * LX_MOCK_RECORDS requests are kept, each truncated to its first LX_MOCK_RECORD_MAX bytes. */
char *lx_mock_request_raw(lx_mock_t *m, size_t n, size_t *len);
#define LX_MOCK_RECORDS    32
#define LX_MOCK_RECORD_MAX (1024u * 1024u)

/* Monotonic time (CLOCK_MONOTONIC, ns) at which the mock last saw a peer close or reset a
 * connection mid-response (see lx_mock_closes_by_peer); 0 when never. */
uint64_t lx_mock_last_peer_close_ns(lx_mock_t *m);

/* Waits (polling every millisecond, bounded by timeout_ms) until lx_mock_requests(m) >= n;
 * returns 0, or -1 on timeout. */
int lx_mock_wait_requests(lx_mock_t *m, uint64_t n, uint64_t timeout_ms);

/* Clears the request records and zeroes every counter and the last peer-close time. Safe while
 * the mock runs; a connection still open keeps working. */
void lx_mock_reset(lx_mock_t *m);

#endif
