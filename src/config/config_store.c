/*
 * config_store.c - the `store` section: where the embedded store of keys, budgets and usage
 * records lives (`path`, made absolute here), how long a finished request's record may wait
 * for its commit (`commit_interval`) and how long records are kept (`retention`).
 *
 * The path is resolved against the working directory once, at load: the snapshot holds an
 * absolute path, so neither a later chdir nor a reload started from elsewhere moves the
 * database. The file itself is not opened here (the store layer does that, naming the file in
 * its errors); a path that is a directory already is refused.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config_parse_int.h"
#include "config/config_value.h"
#include "core/core.h"

#define DEFAULT_PATH      "llmux.db"
#define MAX_COMMIT_MS     (10u * 1000)
#define MIN_RETENTION_MS  (24ull * 3600 * 1000)
#define NO_DIRECTORY_HINT "name a file, e.g. /var/lib/llmux/llmux.db"

/* <path> made absolute (copied into the arena), or NULL after an error at <n> (NULL: at the
 * top of the file, for the default). */
static char *absolute(parser_t *p, const char *path, yaml_node_t *n, const char *what)
{
    static const yaml_mark_t top = {0, 0, 0};
    const yaml_mark_t *at = n != NULL ? &n->start_mark : &top;
    char cwd[PATH_MAX], buf[PATH_MAX], shown[96];
    int w;

    while (path[0] == '.' && path[1] == '/')
        path += 2;
    if (path[0] == '/') {
        w = snprintf(buf, sizeof(buf), "%s", path);
    } else if (getcwd(cwd, sizeof(cwd)) == NULL) {
        lx_cfg_error_at(p, at,
                        "%s: the working directory cannot be read to resolve the relative path "
                        "'%s': give an absolute path",
                        what, lx_cfg_show(path, shown, sizeof(shown)));
        return NULL;
    } else {
        w = snprintf(buf, sizeof(buf), "%s%s%s", cwd, strcmp(cwd, "/") == 0 ? "" : "/", path);
    }
    /* room left for SQLite's "-wal" and "-shm" files beside it */
    if (w < 0 || (size_t)w >= sizeof(buf) - 16) {
        lx_cfg_error_at(p, at, "%s: the path is too long", what);
        return NULL;
    }
    struct stat st;
    if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode)) {
        lx_cfg_error_at(p, at, "%s: '%s' is a directory: %s", what,
                        lx_cfg_show(buf, shown, sizeof(shown)), NO_DIRECTORY_HINT);
        return NULL;
    }
    return lx_cfg_copy(p, buf);
}

static void parse_path(parser_t *p, yaml_node_t *n)
{
    const char *s = lx_cfg_scalar(p, n, "store.path");
    if (s == NULL)
        return;
    if (strcmp(s, ":memory:") == 0) {
        REPORT(p, n,
               "store.path: ':memory:' is an in-memory database, which would lose every key, "
               "budget and usage record at exit: %s",
               NO_DIRECTORY_HINT);
        return;
    }
    if (strncmp(s, "file:", 5) == 0) {
        REPORT(p, n, "store.path: SQLite URIs (file:...) are not accepted: give a path");
        return;
    }
    size_t len = strlen(s);
    if (len == 0) {
        REPORT(p, n, "store.path: empty: %s", NO_DIRECTORY_HINT);
        return;
    }
    if (s[len - 1] == '/') {
        REPORT(p, n, "store.path: ends with '/', a directory: %s", NO_DIRECTORY_HINT);
        return;
    }
    char *abs = absolute(p, s, n, "store.path");
    if (abs != NULL)
        p->cfg->store_path = abs;
}

static void parse_retention(parser_t *p, yaml_node_t *n)
{
    const char *why, *s = lx_cfg_scalar(p, n, "store.retention");
    uint64_t ms;
    if (s == NULL)
        return;
    if (lx_config_value_long_duration(s, &ms, &why) != 0) {
        REPORT(p, n, "store.retention: %s", why);
        return;
    }
    if (ms < MIN_RETENTION_MS) {
        REPORT(p, n, "store.retention: must be at least 1d");
        return;
    }
    if (ms % 1000 != 0) {
        REPORT(p, n, "store.retention: must be whole seconds");
        return;
    }
    p->cfg->store_retention_s = ms / 1000;
}

void lx_cfg_parse_store(parser_t *p, yaml_node_t *n)
{
    lx_config_t *cfg = p->cfg;
    field_t f[] = {{"path", false, NULL, NULL},
                   {"commit_interval", false, NULL, NULL},
                   {"retention", false, NULL, NULL}};

    if (!lx_cfg_read_map(p, n, "store", f, LX_ARRAY_SIZE(f)))
        return;
    if (f[0].value != NULL)
        parse_path(p, f[0].value);
    if (f[1].value != NULL) {
        uint64_t ms = 0;
        lx_cfg_get_duration(p, f[1].value, "store.commit_interval", &ms);
        if (ms > MAX_COMMIT_MS)
            REPORT(p, f[1].value, "store.commit_interval: must be from 1ms to 10s");
        else if (ms > 0)
            cfg->store_commit_interval_ms = ms;
    }
    if (f[2].value != NULL)
        parse_retention(p, f[2].value);
}

void lx_cfg_store_path(parser_t *p)
{
    if (p->cfg->store_path == NULL)
        p->cfg->store_path = absolute(p, DEFAULT_PATH, NULL, "store.path (default llmux.db)");
}
