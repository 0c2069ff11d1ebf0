/*
 * keys_cli.c - `llmux keys ...` (keys_cli.h): key management on the store file, without the
 * gateway running (or while it runs: the store is SQLite in WAL mode, and the gateway's store
 * thread polls for changes other processes commit).
 *
 * Flow: the flags become a management API body (JSON, every value escaped or checked to be
 * one JSON value), which lx_key_json_parse() reads with the API's rules, so the command line
 * and the API accept exactly the same keys. Then the store is opened (no thread), one job runs
 * on this thread (lx_store_run, actor "cli"), and its result is printed with the API's writers.
 * The plaintext key of a create is printed once, alone on the first line; it is never written
 * anywhere else.
 */
#include "account/keys_cli.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "account/key_json.h"
#include "core/json.h"
#include "core/status.h"
#include "store/store.h"

#define EXIT_USAGE 2
#define LIST_PAGE  100  /* keys per LX_JOB_KEY_LIST page */
#define LIST_PAGES 1000 /* pages read at most (100,000 keys) */

typedef struct cli {
    const char *path;
    FILE *out, *err;
    lx_store_t *store;
} cli_t;

enum flag_kind {
    F_STRING,  /* "member":"<escaped value>" */
    F_NUMBER,  /* "member":<a JSON number> */
    F_RESET,   /* limit_reset: a string, or null for "none" / "null" */
    F_MODELS,  /* models: the comma-separated list as an array of strings */
    F_RAW,     /* provider: one JSON value as it is */
    F_RATE,    /* rate_limit.<member>: a JSON number */
    F_TRUE,    /* no value: "member":true */
    F_FALSE,   /* no value: "member":false */
    F_NULL,    /* no value: "member":null */
    F_LIST_ALL /* list --all */
};

enum { ON_CREATE = 1, ON_UPDATE = 2, ON_LIST = 4 };

static const struct flag {
    const char *name;
    const char *member;
    enum flag_kind kind;
    unsigned on;
} flags[] = {
    {"--name", "name", F_STRING, ON_CREATE | ON_UPDATE},
    {"--limit", "limit", F_NUMBER, ON_CREATE | ON_UPDATE},
    {"--limit-reset", "limit_reset", F_RESET, ON_CREATE | ON_UPDATE},
    {"--expires-at", "expires_at", F_STRING, ON_CREATE},
    {"--models", "models", F_MODELS, ON_CREATE | ON_UPDATE},
    {"--provider", "provider", F_RAW, ON_CREATE | ON_UPDATE},
    {"--rpm", "rpm", F_RATE, ON_CREATE | ON_UPDATE},
    {"--tpm", "tpm", F_RATE, ON_CREATE | ON_UPDATE},
    {"--concurrency", "concurrency", F_RATE, ON_CREATE | ON_UPDATE},
    {"--priority", "priority", F_STRING, ON_CREATE | ON_UPDATE},
    {"--disabled", "disabled", F_TRUE, ON_CREATE},
    {"--enable", "disabled", F_FALSE, ON_UPDATE},
    {"--no-limit", "limit", F_NULL, ON_UPDATE},
    {"--all", NULL, F_LIST_ALL, ON_LIST},
};

#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))

static void usage(FILE *f)
{
    fputs("usage: llmux [-c FILE] keys COMMAND\n"
          "  create --name N [--limit USD] [--limit-reset daily|weekly|monthly|none]\n"
          "         [--expires-at 2027-12-31T23:59:59Z] [--models 'a/*,b'] [--rpm N] [--tpm N]\n"
          "         [--concurrency N] [--provider JSON] [--priority interactive|batch]\n"
          "         [--disabled]\n"
          "  list [--all]                  the keys (--all: disabled ones too)\n"
          "  show HASH\n"
          "  update HASH [the flags of create but --expires-at] [--no-limit] [--enable]\n"
          "  disable HASH\n"
          "  delete HASH\n",
          f);
}

/* ---- the body the flags make ------------------------------------------------------------ */

/* A body being written: its capacity is computed from the arguments first, so it never
 * grows. */
typedef struct body {
    char *p;
    size_t len, cap;
} body_t;

static void put(body_t *b, const char *s, size_t n)
{
    if (n <= b->cap - b->len) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

static void put_str(body_t *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_escaped(body_t *b, const char *s, size_t n)
{
    put(b, "\"", 1);
    b->len += lx_json_escape(b->p + b->len, b->cap - b->len, s, n, NULL);
    put(b, "\"", 1);
}

/* Whether <s> is exactly one JSON value (a number when <number>). */
static bool one_value(const char *s, bool number)
{
    size_t n = strlen(s);
    if (number)
        return n > 0 && lx_json_primitive_valid(s, n) &&
               (s[0] == '-' || (s[0] >= '0' && s[0] <= '9'));
    lx_json_t j;
    lx_json_token_t t, close;
    lx_json_init(&j, s, n, 64);
    lx_json_type_t type = lx_json_next(&j, &t);
    if (type == LX_JSON_NONE)
        return false;
    if ((type == LX_JSON_OBJECT || type == LX_JSON_ARRAY) && !lx_json_skip(&j, &t, &close))
        return false;
    return lx_json_next(&j, &t) == LX_JSON_NONE && j.error == LX_JSON_OK;
}

static void put_models(body_t *b, const char *list)
{
    put(b, "[", 1);
    for (const char *s = list; *list != '\0';) {
        const char *comma = strchr(s, ',');
        size_t n = comma != NULL ? (size_t)(comma - s) : strlen(s);
        put_escaped(b, s, n);
        if (comma == NULL)
            break;
        put(b, ",", 1);
        s = comma + 1;
    }
    put(b, "]", 1);
}

/* Writes member <f> with <value> (NULL for flags without one); false when the value is not
 * of the flag's form. */
static bool put_member(body_t *b, const struct flag *f, const char *value)
{
    put(b, b->len > 1 ? ",\"" : "\"", b->len > 1 ? 2 : 1);
    put_str(b, f->member);
    put(b, "\":", 2);
    switch (f->kind) {
    case F_STRING:
        put_escaped(b, value, strlen(value));
        return true;
    case F_NUMBER:
    case F_RATE:
        put_str(b, value);
        return one_value(value, true);
    case F_RESET:
        if (strcmp(value, "none") == 0 || strcmp(value, "null") == 0)
            put_str(b, "null");
        else
            put_escaped(b, value, strlen(value));
        return true;
    case F_MODELS:
        put_models(b, value);
        return true;
    case F_RAW:
        put_str(b, value);
        return one_value(value, false);
    case F_TRUE:
        put_str(b, "true");
        return true;
    case F_FALSE:
        put_str(b, "false");
        return true;
    default:
        put_str(b, "null");
        return true;
    }
}

/* ---- arguments -------------------------------------------------------------------------- */

typedef struct args {
    const char *hash; /* the HASH argument (checked), NULL when none */
    char hash_buf[65];
    bool all;
    bool has_rate;
    const char *rate[3]; /* --rpm, --tpm, --concurrency; NULL: not given */
    body_t body;
} args_t;

static const char *const rate_members[3] = {"rpm", "tpm", "concurrency"};

/* The flag <arg> names ("--limit" or "--limit=5": *value then points after '='). */
static const struct flag *find_flag(const char *arg, const char **value)
{
    const char *eq = strchr(arg, '=');
    size_t n = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
    *value = eq != NULL ? eq + 1 : NULL;
    for (size_t i = 0; i < N_FLAGS; i++)
        if (strlen(flags[i].name) == n && memcmp(flags[i].name, arg, n) == 0)
            return &flags[i];
    return NULL;
}

static bool takes_value(enum flag_kind k)
{
    return k != F_TRUE && k != F_FALSE && k != F_NULL && k != F_LIST_ALL;
}

/* A key's public id: 64 hex digits, kept in lower case. */
static bool read_hash(args_t *a, const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (size_t i = 0; i < 64; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        a->hash_buf[i] = c;
    }
    a->hash_buf[64] = '\0';
    a->hash = a->hash_buf;
    return true;
}

/* One flag (and its value) at argv[*i]. Returns 0 or EXIT_USAGE with a message. */
static int read_flag(cli_t *c, args_t *a, unsigned on, int argc, char **argv, int *i)
{
    const char *value;
    const struct flag *f = find_flag(argv[*i], &value);
    if (f == NULL || !(f->on & on)) {
        fprintf(c->err, "llmux keys %s: unknown option %s\n", argv[0], argv[*i]);
        return EXIT_USAGE;
    }
    if (!takes_value(f->kind) && value != NULL) {
        fprintf(c->err, "llmux keys %s: %s takes no value\n", argv[0], f->name);
        return EXIT_USAGE;
    }
    if (takes_value(f->kind) && value == NULL) {
        if (*i + 1 >= argc) {
            fprintf(c->err, "llmux keys %s: %s needs a value\n", argv[0], f->name);
            return EXIT_USAGE;
        }
        value = argv[++*i];
    }
    bool ok = true;
    if (f->kind == F_LIST_ALL) {
        a->all = true;
    } else if (f->kind == F_RATE) {
        size_t k = 0;
        while (strcmp(rate_members[k], f->member) != 0)
            k++;
        a->rate[k] = value;
        a->has_rate = true;
        ok = one_value(value, true);
    } else {
        ok = put_member(&a->body, f, value);
    }
    if (!ok) {
        fprintf(c->err, "llmux keys %s: %s: not a %s: %s\n", argv[0], f->name,
                f->kind == F_RAW ? "JSON value" : "number", value);
        return EXIT_USAGE;
    }
    return 0;
}

/* Reads argv[1..] for a command that runs <on> and takes a HASH when <want_hash>. */
static int read_args(cli_t *c, args_t *a, unsigned on, bool want_hash, int argc, char **argv)
{
    memset(a, 0, sizeof(*a));
    size_t cap = 128;
    for (int i = 1; i < argc; i++)
        cap += lx_json_escaped_len(argv[i], strlen(argv[i])) + 2 * strlen(argv[i]) + 48;
    if ((a->body.p = malloc(cap)) == NULL) {
        fprintf(c->err, "llmux keys: out of memory\n");
        return 1;
    }
    a->body.cap = cap;
    put(&a->body, "{", 1);
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') {
            int rc = read_flag(c, a, on, argc, argv, &i);
            if (rc != 0)
                return rc;
        } else if (want_hash && a->hash == NULL) {
            if (!read_hash(a, argv[i])) {
                fprintf(c->err, "llmux keys %s: not a key hash (64 hex digits): %s\n", argv[0],
                        argv[i]);
                return EXIT_USAGE;
            }
        } else {
            fprintf(c->err, "llmux keys %s: unexpected argument %s\n", argv[0], argv[i]);
            return EXIT_USAGE;
        }
    }
    if (want_hash && a->hash == NULL) {
        fprintf(c->err, "llmux keys %s: which key? (its hash)\n", argv[0]);
        return EXIT_USAGE;
    }
    return 0;
}

/* Closes the body: the rate limits (each given one, else <current>'s), then '}'. */
static void close_body(args_t *a, const lx_ledger_limits_t *current)
{
    if (a->has_rate) {
        uint32_t cur[3] = {0, 0, 0};
        if (current != NULL) {
            cur[0] = current->rpm;
            cur[1] = current->tpm;
            cur[2] = current->concurrency;
        }
        put_str(&a->body, a->body.len > 1 ? ",\"rate_limit\":{" : "\"rate_limit\":{");
        for (int k = 0; k < 3; k++) {
            char num[16];
            snprintf(num, sizeof(num), "%u", cur[k]);
            put_str(&a->body, k > 0 ? ",\"" : "\"");
            put_str(&a->body, rate_members[k]);
            put_str(&a->body, "\":");
            put_str(&a->body, a->rate[k] != NULL ? a->rate[k] : num);
        }
        put_str(&a->body, "}");
    }
    put(&a->body, "}", 1);
}

/* ---- the store and its jobs ------------------------------------------------------------- */

static int open_store(cli_t *c)
{
    lx_store_opts_t opts;
    memset(&opts, 0, sizeof(opts));
    opts.path = c->path;
    opts.no_migrate = true; /* (a running gateway of an older version may hold the file) */
    char msg[256];
    int rc = lx_store_open(&opts, &c->store, msg, sizeof(msg));
    if (rc != 0) {
        fprintf(c->err, "llmux keys: %s\n", msg[0] != '\0' ? msg : lx_strerror(rc));
        return 1;
    }
    return 0;
}

/* Runs <job> as "cli"; 0, or the exit status after saying why. */
static int run_job(cli_t *c, lx_store_job_t *job, const char *cmd)
{
    snprintf(job->actor, sizeof(job->actor), "cli");
    lx_store_run(c->store, job);
    if (job->status == 0)
        return 0;
    if (job->status == LX_ENOTFOUND)
        fprintf(c->err, "llmux keys %s: no key %s\n", cmd, job->hash);
    else
        fprintf(c->err, "llmux keys %s: %s\n", cmd,
                job->message[0] != '\0' ? job->message : lx_strerror(job->status));
    return job->status == LX_EINVAL ? EXIT_USAGE : 1;
}

/* Prints a malloc'd answer of <len> bytes (NULL: out of memory) and a newline. */
static int print_json(cli_t *c, char *json, size_t len)
{
    if (json == NULL) {
        fprintf(c->err, "llmux keys: out of memory\n");
        return 1;
    }
    fwrite(json, 1, len, c->out);
    fputc('\n', c->out);
    free(json);
    return 0;
}

/* Reads the body of <a> into <in> with the API's rules; 0 or EXIT_USAGE. */
static int read_input(cli_t *c, args_t *a, enum lx_key_json_mode mode, lx_key_input_t *in,
                      const char *cmd)
{
    char msg[256];
    if (lx_key_json_parse(a->body.p, a->body.len, mode, in, msg, sizeof(msg)) != 0) {
        fprintf(c->err, "llmux keys %s: %s\n", cmd, msg);
        return EXIT_USAGE;
    }
    return 0;
}

static int cmd_create(cli_t *c, args_t *a)
{
    lx_store_job_t job;
    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_KEY_CREATE;
    close_body(a, NULL);
    int rc = read_input(c, a, LX_KEY_JSON_CREATE, &job.input, "create");
    if (rc == 0 && (rc = open_store(c)) == 0 && (rc = run_job(c, &job, "create")) == 0) {
        if (job.n_keys < 1) {
            fprintf(c->err, "llmux keys create: the store returned no key\n");
            rc = 1;
        } else {
            fprintf(c->out, "%s\n", job.secret);
            size_t len = 0;
            char *json = lx_key_json_one(&job.keys[0], NULL, &len);
            rc = print_json(c, json, len);
        }
    }
    lx_store_job_dispose(&job);
    return rc;
}

/* Fetches key <hash> into a job (the caller disposes it). */
static int get_key(cli_t *c, const char *hash, lx_store_job_t *job, const char *cmd)
{
    memset(job, 0, sizeof(*job));
    job->kind = LX_JOB_KEY_GET;
    memcpy(job->hash, hash, sizeof(job->hash));
    int rc = run_job(c, job, cmd);
    if (rc == 0 && job->n_keys < 1) {
        fprintf(c->err, "llmux keys %s: no key %s\n", cmd, hash);
        rc = 1;
    }
    return rc;
}

/* The body read again with the rate limits not given taken from the stored key (the API's
 * rate_limit sets all three). */
static int reread_with_current(cli_t *c, args_t *a, size_t mark, lx_key_input_t *in,
                               const char *cmd)
{
    lx_store_job_t cur;
    int rc = get_key(c, a->hash, &cur, cmd);
    if (rc == 0) {
        a->body.len = mark;
        close_body(a, &cur.keys[0].key.limits);
        lx_key_input_dispose(in);
        rc = read_input(c, a, LX_KEY_JSON_UPDATE, in, cmd);
    }
    lx_store_job_dispose(&cur);
    return rc;
}

static int cmd_update(cli_t *c, args_t *a, bool disable)
{
    const char *cmd = disable ? "disable" : "update";
    lx_store_job_t job;
    memset(&job, 0, sizeof(job));
    size_t mark = a->body.len;
    close_body(a, NULL);
    /* every check before the store is opened: a usage error leaves the file alone */
    int rc = read_input(c, a, LX_KEY_JSON_UPDATE, &job.input, cmd);
    if (rc == 0 && disable) {
        job.input.set |= LX_KEY_F_DISABLED;
        job.input.disabled = true;
    }
    if (rc == 0 && job.input.set == 0) {
        fprintf(c->err, "llmux keys update: nothing to change\n");
        rc = EXIT_USAGE;
    }
    if (rc == 0)
        rc = open_store(c);
    if (rc == 0 && a->has_rate)
        rc = reread_with_current(c, a, mark, &job.input, cmd);
    if (rc == 0) {
        job.kind = LX_JOB_KEY_UPDATE;
        memcpy(job.hash, a->hash, sizeof(job.hash));
        rc = run_job(c, &job, cmd);
    }
    if (rc == 0 && job.n_keys > 0) {
        size_t len = 0;
        char *json = lx_key_json_one(&job.keys[0], NULL, &len);
        rc = print_json(c, json, len);
    }
    lx_store_job_dispose(&job);
    return rc;
}

static int cmd_show(cli_t *c, args_t *a)
{
    lx_store_job_t job;
    memset(&job, 0, sizeof(job));
    int rc = open_store(c);
    if (rc == 0 && (rc = get_key(c, a->hash, &job, "show")) == 0) {
        size_t len = 0;
        char *json = lx_key_json_one(&job.keys[0], NULL, &len);
        rc = print_json(c, json, len);
    }
    lx_store_job_dispose(&job);
    return rc;
}

static int cmd_delete(cli_t *c, args_t *a)
{
    lx_store_job_t job;
    memset(&job, 0, sizeof(job));
    job.kind = LX_JOB_KEY_DELETE;
    memcpy(job.hash, a->hash, sizeof(job.hash));
    int rc = open_store(c);
    if (rc == 0 && (rc = run_job(c, &job, "delete")) == 0) {
        size_t len = 0;
        char *json = lx_key_json_deleted(&len);
        rc = print_json(c, json, len);
    }
    lx_store_job_dispose(&job);
    return rc;
}

/* Every key, page after page, as one {"data":[...]}. */
static int cmd_list(cli_t *c, args_t *a)
{
    int rc = open_store(c);
    lx_key_view_t *all = NULL;
    size_t n = 0;
    lx_store_job_t j;
    for (uint32_t page = 0; rc == 0 && page < LIST_PAGES; page++) {
        lx_store_job_t *job = &j;
        memset(job, 0, sizeof(*job));
        job->kind = LX_JOB_KEY_LIST;
        job->include_disabled = a->all;
        job->offset = page * LIST_PAGE;
        if ((rc = run_job(c, job, "list")) != 0)
            break;
        lx_key_view_t *grown = realloc(all, (n + job->n_keys + 1) * sizeof(*all));
        if (grown == NULL) {
            lx_store_job_dispose(job);
            fprintf(c->err, "llmux keys: out of memory\n");
            rc = 1;
            break;
        }
        all = grown;
        size_t got = job->n_keys;
        /* the views move out of the job: their strings stay owned by the copies */
        memcpy(all + n, job->keys, got * sizeof(*all));
        n += got;
        job->n_keys = 0;
        lx_store_job_dispose(job);
        if (got < LIST_PAGE)
            break;
    }
    if (rc == 0) {
        size_t len = 0;
        char *json = lx_key_json_list(all, n, &len);
        rc = print_json(c, json, len);
    }
    for (size_t i = 0; i < n; i++)
        lx_store_key_dispose(&all[i].key);
    free(all);
    return rc;
}

int lx_keys_cli_main(const char *store_path, int argc, char **argv, FILE *out, FILE *err)
{
    static const struct {
        const char *name;
        unsigned on;
        bool hash;
    } cmds[] = {
        {"create", ON_CREATE, false}, {"list", ON_LIST, false}, {"show", 0, true},
        {"update", ON_UPDATE, true},  {"disable", 0, true},     {"delete", 0, true},
    };
    cli_t c = {store_path, out, err, NULL};
    size_t n = sizeof(cmds) / sizeof(cmds[0]), k = 0;
    if (argc > 0 && (strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0 ||
                     strcmp(argv[0], "help") == 0)) {
        usage(out);
        return 0;
    }
    while (argc > 0 && k < n && strcmp(argv[0], cmds[k].name) != 0)
        k++;
    if (argc < 1 || k == n) {
        usage(err);
        return EXIT_USAGE;
    }
    args_t a;
    int rc = read_args(&c, &a, cmds[k].on, cmds[k].hash, argc, argv);
    if (rc == 0) {
        switch (k) {
        case 0:
            rc = cmd_create(&c, &a);
            break;
        case 1:
            rc = cmd_list(&c, &a);
            break;
        case 2:
            rc = cmd_show(&c, &a);
            break;
        case 3:
        case 4:
            rc = cmd_update(&c, &a, k == 4);
            break;
        default:
            rc = cmd_delete(&c, &a);
        }
    }
    free(a.body.p);
    lx_store_close(c.store);
    return rc;
}
