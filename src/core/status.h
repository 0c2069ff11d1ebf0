/*
 * status.h - the project's error codes.
 *
 * Fallible functions return 0 or a negative code. libuv codes (down to -4095) pass through
 * unchanged; the project's own codes live below them, so lx_strerror() covers both.
 */
#ifndef LX_STATUS_H
#define LX_STATUS_H

#define LX_STATUS_MAP(XX)                                                                          \
    XX(ENOMEM, -5000, "out of memory")                                                             \
    XX(EPARSE, -5001, "malformed HTTP message")                                                    \
    XX(EAUTH, -5002, "missing or invalid API key")                                                 \
    XX(ENOROUTE, -5003, "no route for request")                                                    \
    XX(ENOUPSTREAM, -5004, "no provider available")                                                \
    XX(ETLS, -5005, "TLS failure")                                                                 \
    XX(ETOOBIG, -5006, "message too large")                                                        \
    XX(ETIMEDOUT, -5007, "timed out")                                                              \
    XX(EUPSTREAM, -5008, "upstream sent an invalid response")                                      \
    XX(ECONFIG, -5009, "invalid configuration")                                                    \
    XX(EJSON, -5010, "invalid JSON")                                                               \
    XX(ECLOSED, -5011, "peer closed the connection")                                               \
    XX(ECANCELED, -5012, "request canceled")                                                       \
    XX(ESHUTDOWN, -5013, "llmux is shutting down")                                                 \
    XX(ETLSCA, -5014, "TLS: certificate signed by an unknown authority")                           \
    XX(ETLSEXPIRED, -5015, "TLS: certificate expired or not yet valid")                            \
    XX(ETLSHOST, -5016, "TLS: certificate does not match the host name")                           \
    XX(ETLSCERT, -5017, "TLS: certificate verification failed")                                    \
    XX(ETLSHANDSHAKE, -5018, "TLS: handshake timed out")                                           \
    XX(ETLSPROTO, -5019,                                                                           \
       "TLS: handshake failed (no common protocol version or cipher, or not TLS)")                 \
    XX(ESTORE, -5020, "the store (database) failed")                                               \
    XX(ENOTFOUND, -5021, "not found")                                                              \
    XX(ESCHEMA, -5022, "the store's schema is newer than this llmux")                              \
    XX(EINVAL, -5023, "invalid argument")

enum {
#define XX(name, code, text) LX_##name = code,
    LX_STATUS_MAP(XX)
#undef XX
};

/* Text for a project or libuv code; never NULL. */
const char *lx_strerror(int code);

#endif
