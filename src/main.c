/*
 * main.c - the llmux command: parse arguments, load the configuration, run the gateway on
 * worker threads and wait for signals on the control loop (this thread).
 *
 *   llmux -c FILE        run
 *   llmux -t -c FILE     check FILE, print a summary or every error as file:line:column
 *   llmux hash-key       read a key on stdin, print its SHA-256 digest for the config
 *   llmux [-c FILE] keys create|list|show|update|disable|delete ...   the store's keys
 *   llmux -h | -V
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "account/keys_cli.h"
#include "config/config.h"
#include "core/status.h"
#include "gateway/auth.h"
#include "gateway/gateway.h"
#include "net/listener.h"
#include "obs/log.h"
#include "store/store.h"

#define DEFAULT_CONFIG "/etc/llmux/llmux.yaml"

static void usage(FILE *out)
{
    fprintf(out, "usage: llmux [-c FILE] [-t] [-h] [-V]\n"
                 "       llmux hash-key < key\n"
                 "       llmux [-c FILE] keys create|list|show|update|disable|delete ...\n"
                 "\n"
                 "  -c FILE   configuration file (default " DEFAULT_CONFIG ")\n"
                 "  -t        check the configuration and exit (0 when valid)\n"
                 "  -h        this help\n"
                 "  -V        print the version\n"
                 "  hash-key  read an API key on stdin, print the sha256 to put in `auth.keys`\n"
                 "  keys      manage the stored API keys (`llmux keys help`), on the store file\n"
                 "            of the configuration, also while llmux runs\n"
                 "\n"
                 "Signals: SIGTERM/SIGINT stop accepting, finish in-flight requests (up to\n"
                 "timeouts.shutdown) and exit 0. SIGHUP reloads the configuration file.\n");
}

typedef struct control {
    uv_loop_t *loop;
    uv_signal_t sigterm, sigint, sighup;
    uv_async_t stopped;
    lx_gateway_t *gw;
    const char *path;
    bool draining;
} control_t;

/* SIGHUP: a new snapshot is built here, on the control loop, and published to the workers;
 * an invalid file is refused with its errors and the running configuration stays. */
static void reload(control_t *ctl)
{
    lx_config_t *cfg = NULL;
    int rc = lx_config_load(ctl->path, stderr, &cfg);
    if (rc != 0) {
        lx_log(LX_LOG_ERROR, "reload: %s is invalid (%s); keeping the running configuration",
               ctl->path, lx_strerror(rc));
        return;
    }
    lx_gateway_reload(ctl->gw, cfg);
    lx_config_unref(cfg);
    lx_log(LX_LOG_INFO, "reload: configuration %s published to the workers", ctl->path);
}

static void on_signal(uv_signal_t *h, int signum)
{
    control_t *ctl = h->data;
    if (signum == SIGHUP) {
        if (!ctl->draining)
            reload(ctl);
        return;
    }
    if (ctl->draining) {
        lx_log(LX_LOG_WARN, "second stop signal: still draining");
        return;
    }
    ctl->draining = true;
    lx_log(LX_LOG_INFO, "%s: draining", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    lx_gateway_drain(ctl->gw);
}

static void on_stopped_async(uv_async_t *a)
{
    control_t *ctl = a->data;
    uv_close((uv_handle_t *)&ctl->sigterm, NULL);
    uv_close((uv_handle_t *)&ctl->sigint, NULL);
    uv_close((uv_handle_t *)&ctl->sighup, NULL);
    uv_close((uv_handle_t *)&ctl->stopped, NULL);
}

/* Runs on the last worker thread to stop: wake the control loop. */
static void on_stopped(void *arg)
{
    control_t *ctl = arg;
    uv_async_send(&ctl->stopped);
}

/* Runs the gateway until it has stopped; 0, or 1 when it could not start. */
static int serve(lx_config_t *cfg, const char *path)
{
    signal(SIGPIPE, SIG_IGN);
    control_t ctl;
    memset(&ctl, 0, sizeof(ctl));
    ctl.loop = uv_default_loop();
    ctl.path = path;
    uv_signal_init(ctl.loop, &ctl.sigterm);
    uv_signal_init(ctl.loop, &ctl.sigint);
    uv_signal_init(ctl.loop, &ctl.sighup);
    ctl.sigterm.data = ctl.sigint.data = ctl.sighup.data = &ctl;
    uv_async_init(ctl.loop, &ctl.stopped, on_stopped_async);
    ctl.stopped.data = &ctl;
    uv_signal_start(&ctl.sigterm, on_signal, SIGTERM);
    uv_signal_start(&ctl.sigint, on_signal, SIGINT);
    uv_signal_start(&ctl.sighup, on_signal, SIGHUP);

    int rc = lx_gateway_start(cfg, &ctl.gw);
    if (rc != 0) {
        uv_close((uv_handle_t *)&ctl.sigterm, NULL);
        uv_close((uv_handle_t *)&ctl.sigint, NULL);
        uv_close((uv_handle_t *)&ctl.sighup, NULL);
        uv_close((uv_handle_t *)&ctl.stopped, NULL);
        uv_run(ctl.loop, UV_RUN_DEFAULT);
        uv_loop_close(ctl.loop);
        return 1;
    }
    lx_gateway_on_stopped(ctl.gw, on_stopped, &ctl);
    for (size_t i = 0; i < cfg->n_listen; i++)
        lx_log(LX_LOG_INFO, "llmux %s listening on %s:%u (%u workers)", LLMUX_VERSION,
               cfg->listen[i].host, lx_gateway_port(ctl.gw, i), cfg->workers);
    uv_run(ctl.loop, UV_RUN_DEFAULT);
    lx_gateway_wait(ctl.gw);
    uv_loop_close(ctl.loop);
    lx_log(LX_LOG_INFO, "stopped");
    return 0;
}

/* Claims every listen address for this process (lx_listener_claim), so a second llmux on the
 * same address stops here instead of sharing the port with the first through SO_REUSEPORT.
 * A reload is in-process (SIGHUP), and there is no handover between two processes, so no
 * second process ever has a reason to share. A pid file that cannot be made (a read-only
 * /tmp, say) costs the check, not the start. Returns false on a conflict, logged. */
static bool claim_all(const lx_config_t *cfg, lx_listener_claim_t *claims)
{
    for (size_t i = 0; i < cfg->n_listen; i++) {
        const lx_config_listen_t *l = &cfg->listen[i];
        lx_listener_claim_t *c = &claims[i];
        if (l->port == 0)
            continue; /* a fresh port each time: nobody to share it with */
        int rc = lx_listener_claim(l->host, l->port, c);
        if (rc == UV_EADDRINUSE) {
            if (c->holder > 0)
                lx_log(LX_LOG_ERROR,
                       "%s:%u is served by another llmux, pid %ld (lock %s): stop it first, "
                       "or send it SIGHUP to reload its configuration",
                       l->host, l->port, c->holder, c->path);
            else
                lx_log(LX_LOG_ERROR, "%s:%u is served by another llmux (lock %s)", l->host, l->port,
                       c->path);
            return false;
        }
        if (rc != 0)
            lx_log(LX_LOG_WARN,
                   "cannot lock %s: %s; starting without the check that no other llmux "
                   "serves %s:%u",
                   c->path, lx_strerror(rc), l->host, l->port);
    }
    return true;
}

static int run(lx_config_t *cfg, const char *path)
{
    lx_log_set_level(cfg->log_level);
    if (cfg->auth_none) {
        for (size_t i = 0; i < cfg->n_listen; i++)
            if (!cfg->listen[i].is_loopback)
                lx_log(LX_LOG_WARN,
                       "auth: none while listening on %s:%u (not loopback): anyone who can "
                       "reach it can use every provider",
                       cfg->listen[i].host, cfg->listen[i].port);
    }
    lx_listener_claim_t *claims = calloc(cfg->n_listen, sizeof(*claims));
    if (claims == NULL) {
        lx_log(LX_LOG_ERROR, "out of memory");
        return 1;
    }
    for (size_t i = 0; i < cfg->n_listen; i++)
        claims[i].fd = -1;
    int rc = claim_all(cfg, claims) ? serve(cfg, path) : 1;
    for (size_t i = 0; i < cfg->n_listen; i++)
        lx_listener_release(&claims[i]);
    free(claims);
    return rc;
}

/* `llmux -t`: the store file's schema; 0, or 1 when this binary cannot use it. */
static int check_store(const lx_config_t *cfg)
{
    int version = 0;
    char err[512];
    if (lx_store_schema_version(cfg->store_path, &version, err, sizeof(err)) != 0) {
        fprintf(stderr, "llmux: store: %s\n", err);
        return 1;
    }
    if (version == 0)
        printf("store: %s does not exist yet (created at start, schema version %d)\n",
               cfg->store_path, LX_STORE_SCHEMA_VERSION);
    else
        printf("store: %s schema version %d (this llmux: %d)\n", cfg->store_path, version,
               LX_STORE_SCHEMA_VERSION);
    if (version > LX_STORE_SCHEMA_VERSION) {
        fprintf(stderr, "llmux: store %s has schema version %d, newer than this llmux (%d)\n",
                cfg->store_path, version, LX_STORE_SCHEMA_VERSION);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = DEFAULT_CONFIG;
    bool test = false;
    int keys_at = 0; /* argv index of `keys`, 0 when not asked */
    if (argc >= 2 && strcmp(argv[1], "hash-key") == 0)
        return lx_auth_hash_key_main(stdin, stdout) == 0 ? 0 : 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(a, "-t") == 0) {
            test = true;
        } else if (strcmp(a, "keys") == 0) {
            keys_at = i;
            break;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("llmux %s\n", LLMUX_VERSION);
            return 0;
        } else {
            fprintf(stderr, "llmux: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    lx_config_t *cfg = NULL;
    int rc = lx_config_load(path, stderr, &cfg);
    if (rc != 0) {
        /* the loader has said why, once: a file it could not read needs no second line */
        if (rc == LX_ECONFIG)
            fprintf(stderr, "llmux: configuration %s is invalid\n", path);
        return 1;
    }
    if (keys_at > 0) {
        lx_log_set_level(cfg->log_level);
        rc = lx_keys_cli_main(cfg->store_path, argc - keys_at - 1, argv + keys_at + 1, stdout,
                              stderr);
        lx_config_unref(cfg);
        return rc;
    }
    if (test) {
        lx_config_dump(cfg, stdout);
        rc = check_store(cfg);
        if (rc == 0)
            printf("llmux: configuration %s is valid\n", path);
        lx_config_unref(cfg);
        return rc;
    }
    rc = run(cfg, path);
    lx_config_unref(cfg);
    return rc;
}
