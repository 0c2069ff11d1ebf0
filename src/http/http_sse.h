/*
 * http_sse.h - Server-Sent Events framing (the text/event-stream format of the WHATWG HTML
 * standard, section 9.2): what goes around an event's data and what a comment looks like.
 *
 * An event is one or more "data: <line>\n" lines and an empty line; a comment is a line
 * starting with ":", which a client ignores (a proxy sends one to keep an idle stream alive).
 * The payload itself (an API's JSON) is the caller's. Writers that build the payload in place
 * put LX_SSE_DATA before it and LX_SSE_END after it; the others call lx_sse_event.
 */
#ifndef LX_HTTP_SSE_H
#define LX_HTTP_SSE_H

#include <stddef.h>

/* Before an event's data line, and the end of the event (the line's LF and the empty line). */
#define LX_SSE_DATA     "data: "
#define LX_SSE_DATA_LEN 6
#define LX_SSE_END      "\n\n"
#define LX_SSE_END_LEN  2

/* The heartbeat comment a stream gets while it waits for its first event. */
#define LX_SSE_KEEPALIVE     ": keep-alive\n\n"
#define LX_SSE_KEEPALIVE_LEN 14

/* Frames <payload> as one event into <buf> of <cap> bytes: each of its LF-separated lines
 * after "data: ", then the empty line (a payload without LF, such as JSON, is
 * "data: <payload>\n\n"). Returns the bytes written, or LX_ETOOBIG (nothing usable in <buf>),
 * or LX_EPARSE when the payload holds a CR (a reader would take it for a line end). */
int lx_sse_event(char *buf, size_t cap, const char *payload, size_t len);

/* A comment ": <text>\n\n" into <buf> of <cap> bytes: the bytes written, LX_ETOOBIG, or
 * LX_EPARSE when <text> holds a CR or LF. */
int lx_sse_comment(char *buf, size_t cap, const char *text, size_t len);

#endif
