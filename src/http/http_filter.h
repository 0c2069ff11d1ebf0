/*
 * http_filter.h - which of a client's request headers may go on to an upstream.
 *
 * A proxy builds the upstream's head itself and copies the client's other headers after it.
 * Those it must not copy: hop-by-hop ones (RFC 9110 7.6.1: Connection, Keep-Alive, TE,
 * Trailer, Transfer-Encoding, Upgrade, Proxy-Connection, Proxy-Authorization), the framing and
 * routing ones it sets itself (Host, Content-Length, Content-Type, Expect, X-Request-Id), the
 * client's credentials and cookies (Authorization, Cookie), compression (Accept-Encoding,
 * Content-Encoding: llmux reads the response) and llmux's own (X-Session-Id, X-Llmux-*).
 */
#ifndef LX_HTTP_FILTER_H
#define LX_HTTP_FILTER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/str.h"

/* Whether the <len> bytes of <s> equal <lower> (a lower-case name of <len> bytes) ignoring
 * ASCII case: the other bytes compare exactly. */
bool lx_http_name_is(const char *s, const char *lower, size_t len);

/* Whether a client's request header named <name> may be copied upstream (see above). */
bool lx_http_forwardable(lx_str_t name);

#endif
