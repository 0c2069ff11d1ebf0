/*
 * gpu_est.c - llmux's own prefix-hit estimate (src/route/prefix_est.h), read from the target's
 * /metrics (public by default: admin.metrics_public): the counters
 * llmux_fleet_prefix_requests_total and llmux_fleet_prefix_hits_estimated_total summed over
 * the endpoints. Read at the measured window's two edges, they give the estimate over the same
 * window as the replicas' measured hit rate, for the report to set side by side.
 */
#include "gpu.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define METRICS_MAX (1 << 20)

/* GET /metrics on 127.0.0.1:<port> into a malloc'd NUL-terminated buffer (head and body), or
 * NULL. Connection: close, so the answer ends at EOF; one second per read at most. */
static char *get_metrics(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return NULL;
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static const char req[] =
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    char *buf = malloc(METRICS_MAX + 1);
    size_t len = 0;
    if (buf != NULL && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(req) - 1)) {
        ssize_t k;
        while (len < METRICS_MAX && (k = recv(fd, buf + len, METRICS_MAX - len, 0)) > 0)
            len += (size_t)k;
    }
    close(fd);
    if (buf == NULL || len < 12 || strncmp(buf, "HTTP/1.1 200", 12) != 0) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

/* The sum of the samples of metric <name> (lines "<name>{...} <value>"). */
static uint64_t sum_of(const char *text, const char *name, bool *found)
{
    uint64_t sum = 0;
    size_t n = strlen(name);
    for (const char *p = text; (p = strstr(p, name)) != NULL; p += n) {
        if ((p != text && p[-1] != '\n') || p[n] != '{')
            continue;
        const char *sp = strstr(p, "} ");
        const char *nl = strchr(p, '\n');
        if (sp == NULL || (nl != NULL && sp > nl))
            continue;
        sum += strtoull(sp + 2, NULL, 10);
        *found = true;
    }
    return sum;
}

int gb_llmux_prefix_est(uint16_t port, uint64_t *requests, uint64_t *hits)
{
    char *text = get_metrics(port);
    if (text == NULL)
        return -1;
    bool found = false;
    *requests = sum_of(text, "llmux_fleet_prefix_requests_total", &found);
    *hits = sum_of(text, "llmux_fleet_prefix_hits_estimated_total", &found);
    free(text);
    return found ? 0 : -1;
}
