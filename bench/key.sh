# bench/key.sh - sourced by the bench scripts: which key scenario 1's client presents, and the
# store file kept in the script's temporary directory.
#
#   KEY=none    (default) `auth: none`, no Authorization header: the figures of earlier runs
#   KEY=config  a key of the configuration's `auth.keys`
#   KEY=stored  a stored key with a budget and rate limits (limit $1,000,000, rpm 100,000,000,
#               tpm 1,000,000,000, concurrency 100,000: admitted every time, checked every
#               time), created with `llmux keys create` on the store file before llmux starts
#
# config and stored use the same configuration (the config key, an admin key and the store),
# so the two differ only in the key the client sends. Usage records are written for every
# request whatever the key (the store thread commits them in batches).
#
#   bench_conf_tail DIR BUILD MODE  -> the `auth:`, `admin:` and `store:` lines of a config
#   bench_key DIR BUILD CONF MODE   -> prints the bearer to send (empty for none); makes the
#                                      store file, and the stored key for MODE=stored
# Both in the stored keys' format (sk-lx-v1- + 64 hex digits, 73 bytes): the bearer's SHA-256
# costs two blocks for every key of that length (a shorter config key would hash in one block,
# about 4,000 instructions less, and flatter the config key).
BENCH_CONFIG_KEY=sk-lx-v1-c0f1c0f1c0f1c0f1c0f1c0f1c0f1c0f1c0f1c0f1c0f1c0f1c0f1c0f1c0f1c0f1
BENCH_ADMIN_KEY=sk-lx-v1-ad01ad01ad01ad01ad01ad01ad01ad01ad01ad01ad01ad01ad01ad01ad01ad01

bench_sha256() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

# Whether a build has the store (issue 13): older trees refuse the `store` section.
bench_has_store() { grep -qa 'store.path' "$1/llmux"; }

bench_conf_tail() { # dir build mode
    local dir=$1 build=$2 mode=${3:-none}
    case $mode in
    none) echo "auth: none" ;;
    config | stored)
        echo "auth:"
        echo "  keys:"
        echo "    - {name: bench-config, sha256: $(bench_sha256 "$BENCH_CONFIG_KEY")}"
        if bench_has_store "$build"; then
            echo "admin: {sha256: $(bench_sha256 "$BENCH_ADMIN_KEY")}"
        fi
        ;;
    *)
        echo "KEY must be none, config or stored (not $mode)" >&2
        return 1
        ;;
    esac
    if bench_has_store "$build"; then
        echo "store: {path: \"$dir/llmux.db\"}"
    elif [ "$mode" = stored ]; then
        echo "KEY=stored needs a build with the store ($build has none)" >&2
        return 1
    fi
}

bench_key() { # dir build conf mode
    local dir=$1 build=$2 conf=$3 mode=${4:-none}
    # the store file made (schema applied) before any measured run, whatever the mode: the
    # first start on a new file does the migrations, which would count in that run only
    if bench_has_store "$build" && [ ! -e "$dir/llmux.db" ]; then
        "$build/llmux" -c "$conf" keys list >/dev/null 2>&1 || { echo "cannot open the store of $conf" >&2; return 1; }
    fi
    case $mode in
    none) echo "" ;;
    config) echo "$BENCH_CONFIG_KEY" ;;
    stored)
        if [ ! -s "$dir/stored.key" ]; then
            "$build/llmux" -c "$conf" keys create --name bench --limit 1000000 --rpm 100000000 \
                --tpm 1000000000 --concurrency 100000 >"$dir/stored.out" 2>&1 ||
                { cat "$dir/stored.out" >&2; return 1; }
            head -1 "$dir/stored.out" >"$dir/stored.key"
        fi
        cat "$dir/stored.key"
        ;;
    esac
}

# bench_nginx_conf DIR -> DIR/nginx.conf: nginx as scenario 1's anchor, one worker, in front of
# the mock on $MOCK_PORT, listening on $NGINX_PORT (bench/run.sh and bench/syscalls.sh).
bench_nginx_conf() {
    local T=$1
    cat >"$T/nginx.conf" <<NGINX
worker_processes 1;
worker_rlimit_nofile 20000;
pid $T/nginx.pid;
error_log $T/nginx.err warn;
events { worker_connections 20000; }
http {
    access_log off;
    keepalive_requests 10000000;
    client_max_body_size 64m;
    client_body_buffer_size 1m;
    upstream mock { server 127.0.0.1:$MOCK_PORT; keepalive 256; keepalive_requests 10000000; }
    server {
        listen 127.0.0.1:$NGINX_PORT reuseport;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }
    }
}
NGINX
}
