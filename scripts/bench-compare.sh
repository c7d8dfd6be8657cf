#!/usr/bin/env bash
# percore against nginx and the fastest Rust servers, one core each, side by
# side (the method is in bench/README.md).
#
#   scripts/bench-compare.sh
#
# Each server runs on SERVER_CPU with one shard / worker; the load generator
# (wrk, or oha for open-loop latency) runs on LOAD_CPU. Rounds alternate
# between the servers of a scenario; each figure is the median of the rounds
# with its min–max, and ratios are of medians against the first peer named.
# CPU per request is the server's user+system time (all its threads, from
# /proc/PID/stat) over the requests the load generator counted.
#
# Servers: percore (the shard's own io_uring), percore-glommio (glommio's
# streams, for comparison), nginx, and for /json actix-web (1 worker) and
# may_minihttp (1 worker), built from bench/peers/ outside percore's tree.
#
# percore-limited is percore with rate limiting checking every request (one
# policy no client reaches), to show what the limiter costs. percore-tls and
# nginx-tls serve HTTPS with the same ECDSA P-256 certificate
# (scripts/gen-certs.sh), nginx with OpenSSL: keep-alive requests, and a new
# connection (a full handshake) per request.
#
# Knobs (environment): ROUNDS=5 DURATION=5 WARMUP=2 SERVER_CPU=1 LOAD_CPU=0
# IDLE_CONNECTIONS=10000 LATENCY_SECONDS=8 (about 10 minutes in all);
# ONLY=layers compares the reference app with and without CORS, request IDs
# and one from_fn layer (examples/layered.rs; about two minutes).
# ONLY=proxy: percore's reverse proxy against nginx's proxy_pass (keepalive
# 32, the same forwarding fields), one core each, to the same upstream (an
# nginx worker answering /plaintext on LOAD_CPU, beside the load), at 64 and
# 256 connections, then p99 at 80 % of nginx's proxied capacity (about
# four minutes). Beside them: percore-proxy-churn (keepalive_surplus_ms = 0,
# nginx's pool policy) and nginx-keepalive256 (the same nginx keeping 256
# idle connections), which together show what the connection churn costs.
# ONLY=seeds: the seeds' stack end to end, nginx -> gunicorn (two uvicorn
# workers, FastAPI, tests/support/fastapi_app.py, on a Unix socket) against
# percore -> the same gunicorn, GET /app/items/7 (about a minute; installs
# FastAPI, uvicorn and gunicorn into .ci/.venv when missing).
# ONLY=static: static files against nginx (sendfile on, tcp_nopush on,
# open_file_cache, gzip on at level 6), one core each: 1 KiB and 64 KiB
# files (64 connections), a 10 MiB file (8 connections: throughput is
# req/s × 10 MiB), a 20 KiB JSON file gzipped at level 6 on the fly
# (CPU per response, and the compressed size), and RSS per download with
# 1,000 slow downloads of the 10 MiB file stalled at once (about four
# minutes).
# ONLY=h2: h2load against nginx (listen ... http2, and ssl http2) and
# percore (h2c with prior knowledge; h2 by ALPN), one core each, -c 64
# -m 32 and -c 16 -m 100 (about three minutes; installs nghttp2-client).
# ONLY=limiter runs just the rate-limit scenario (about a minute); ONLY=tls
# just the HTTPS ones (about two). ONLY=baseline BASELINE=path/to/percore
# puts an older build (percore-base, percore-base-tls) beside this one and
# nginx in plaintext, pipelined, /json, HTTPS and idle memory, for a before
# and after in one run (about five minutes). Installs nginx and wrk (apt-get)
# and oha (cargo install) when missing. Prints Markdown tables; the same goes
# to target/bench-compare.md.
set -euo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
SERVER_CPU=${SERVER_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
LATENCY_SECONDS=${LATENCY_SECONDS:-8}

cd "$(dirname "$0")/.."
root=$(pwd)

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  apt-get update -qq && apt-get install -y -qq nginx wrk >/dev/null
fi
# oha (open-loop latency) serves the full run and ONLY=proxy; the Rust
# peers only the full run: a fresh machine builds nothing it will not use.
case "${ONLY:-}" in
  ""|proxy) command -v oha >/dev/null || cargo install --quiet --locked oha ;;
esac
cargo build --release --quiet
if [ -z "${ONLY:-}" ]; then
  for peer in actix minihttp; do
    cargo build --release --quiet --manifest-path "bench/peers/$peer/Cargo.toml"
  done
fi
ulimit -n "$(ulimit -Hn)"  # the hard limit; 10k idle connections need ~10k

work=$(mktemp -d)
declare -A port pid
cleanup() {
  for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # port
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  exit 1
}

mask=$(python3 -c "print(format(1 << $SERVER_CPU, 'b'))")
nginx_conf() {
  mkdir -p "$work/nginx"
  # What each proxying location sets: HTTP/1.1 kept alive and the
  # forwarding fields percore sets by default.
  local forward='proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;'
  cat > "$work/nginx/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity $mask;
worker_rlimit_nofile $(ulimit -n);
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections $((IDLE_CONNECTIONS + 1024)); }
http {
  access_log off;
  server_tokens off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx;
  scgi_temp_path $work/nginx;
  server {
    listen 127.0.0.1:${port[nginx]};
    location = /plaintext { default_type "text/plain; charset=utf-8"; return 200 "Hello, World!"; }
    location = /json { default_type application/json; return 200 '{"message":"Hello, World!"}'; }
    # ONLY=seeds: the gunicorn percore-seeds forwards to.
    location /app/ {
      proxy_pass http://fastapi_app/;
      $forward
    }
    # ONLY=static: the files percore-static serves.
    location /static/ {
      alias $work/static/;
      types { application/json json; application/octet-stream bin; }
      sendfile on;
      tcp_nopush on;
      open_file_cache max=1000 inactive=60s;
      open_file_cache_valid 60s;
      gzip on;
      gzip_comp_level 6;
      gzip_min_length 1000;
      gzip_types application/json;
      gzip_vary on;
    }
    # ONLY=proxy: the same upstream percore-proxy forwards to.
    location /up/ {
      proxy_pass http://bench/;
      $forward
    }
  }
  upstream bench {
    server 127.0.0.1:${port[upstream]:-9};
    keepalive 32;
  }
  # ONLY=proxy, nginx-keepalive256: enough idle connections kept that
  # 64 and 256 clients never make it close and reopen any (a reference:
  # what the same nginx costs without that churn).
  upstream bench256 {
    server 127.0.0.1:${port[upstream]:-9};
    keepalive 256;
  }
  server {
    listen 127.0.0.1:${port[nginx-keepalive256]:-9};
    location /up/ {
      proxy_pass http://bench256/;
      $forward
    }
  }
  upstream fastapi_app {
    server unix:$work/gunicorn.sock;
    keepalive 32;
  }
  server {
    # ONLY=h2: HTTP/2 with prior knowledge.
    listen 127.0.0.1:${port[nginx-h2c]:-9} http2;
    location = /plaintext { default_type "text/plain; charset=utf-8"; return 200 "Hello, World!"; }
  }
  server {
    listen 127.0.0.1:${port[nginx-tls]} ssl http2;
    ssl_certificate $work/certs/server.pem;
    ssl_certificate_key $work/certs/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    # The suites in percore's order, the server's choice: same work both sides.
    ssl_prefer_server_ciphers on;
    ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
    location = /plaintext { default_type "text/plain; charset=utf-8"; return 200 "Hello, World!"; }
  }
}
CONF
}

# start NAME: starts a server on its port; pid[NAME] is the process measured.
start() {
  local name=$1
  port[$name]=${port[$name]:-$(free_port)}
  local on_cpu=(taskset -c "$SERVER_CPU")
  # Same as nginx's keepalive_requests below: no reconnects mid-run.
  export PERCORE_KEEPALIVE_REQUESTS=1000000
  # Same bytes as the peers, which send no security headers.
  export PERCORE_CONTENT_TYPE_OPTIONS="" PERCORE_FRAME_OPTIONS="" PERCORE_REFERRER_POLICY=""
  case $name in
    percore) "${on_cpu[@]}" target/release/percore --listen "127.0.0.1:${port[$name]}" \
               --shards 1 --cpus "$SERVER_CPU" --log-level warn & pid[$name]=$! ;;
    percore-glommio) "${on_cpu[@]}" target/release/percore --io glommio --listen "127.0.0.1:${port[$name]}" \
               --shards 1 --cpus "$SERVER_CPU" --log-level warn & pid[$name]=$! ;;
    percore-limited)
      cat > "$work/limited.toml" <<'TOML'
[rate_limit]
enabled = true
[[rate_limit.policy]]
name = "bench"
rate = 1000000000.0
burst = 1000000
TOML
      "${on_cpu[@]}" target/release/percore --config "$work/limited.toml" --listen "127.0.0.1:${port[$name]}" \
               --shards 1 --cpus "$SERVER_CPU" --log-level warn & pid[$name]=$! ;;
    percore-layered)
      PERCORE_CORS_ALLOW_ORIGINS=http://bench.test PERCORE_REQUEST_ID=true \
        "${on_cpu[@]}" target/release/examples/layered --listen "127.0.0.1:${port[$name]}" \
               --shards 1 --cpus "$SERVER_CPU" --log-level warn & pid[$name]=$! ;;
    percore-base) "${on_cpu[@]}" "$BASELINE" --listen "127.0.0.1:${port[$name]}" \
               --shards 1 --cpus "$SERVER_CPU" --log-level warn & pid[$name]=$! ;;
    percore-tls|percore-tls-nospin|percore-base-tls)
      cat > "$work/$name.toml" <<TOML
[tls]
listen = ["127.0.0.1:${port[$name]}"]
hsts = ""
[[tls.certificate]]
cert = "$work/certs/server.pem"
key = "$work/certs/server.key"
TOML
      # -nospin: no idle polling, so CPU per request is work, not the spin
      # of a shard waiting for a load generator that is the bottleneck.
      local spin=50
      [ "$name" = percore-tls-nospin ] && spin=0
      local binary=target/release/percore
      [ "$name" = percore-base-tls ] && binary=$BASELINE
      PERCORE_IDLE_POLL_US=$spin "${on_cpu[@]}" "$binary" --config "$work/$name.toml" \
               --listen "127.0.0.1:$(free_port)" --shards 1 --cpus "$SERVER_CPU" --log-level warn & pid[$name]=$! ;;
    percore-proxy|percore-proxy-churn)
      # -churn: nginx's pool policy (a connection idle beyond keepalive
      # closes at once), to set beside nginx's own row.
      local surplus=1000
      [ "$name" = percore-proxy-churn ] && surplus=0
      cat > "$work/$name.toml" <<TOML
[[upstream]]
name = "bench"
servers = ["127.0.0.1:${port[upstream]}"]
keepalive = 32
keepalive_surplus_ms = $surplus
[[route]]
prefix = "/up/"
proxy = "bench"
strip_prefix = true
TOML
      "${on_cpu[@]}" target/release/percore --config "$work/$name.toml" --listen "127.0.0.1:${port[$name]}" \
               --shards 1 --cpus "$SERVER_CPU" --log-level warn & pid[$name]=$! ;;
    percore-h2c)
      printf '[http2]\ncleartext = true\n' > "$work/h2c.toml"
      "${on_cpu[@]}" target/release/percore --config "$work/h2c.toml" --listen "127.0.0.1:${port[$name]}" \
               --shards 1 --cpus "$SERVER_CPU" --log-level warn & pid[$name]=$! ;;
    percore-static)
      cat > "$work/static.toml" <<TOML
[compression]
enabled = true
encodings = ["gzip"]
types = ["application/json"]
gzip_level = 6
[[route]]
prefix = "/static/"
static = { alias = "$work/static", cache_valid_ms = 60000 }
TOML
      "${on_cpu[@]}" target/release/percore --config "$work/static.toml" --listen "127.0.0.1:${port[$name]}" \
               --shards 1 --cpus "$SERVER_CPU" --log-level warn & pid[$name]=$! ;;
    percore-seeds)
      cat > "$work/seeds.toml" <<TOML
[[upstream]]
name = "fastapi_app"
servers = ["unix:$work/gunicorn.sock"]
keepalive = 32
[[route]]
prefix = "/app/"
proxy = "fastapi_app"
strip_prefix = true
TOML
      "${on_cpu[@]}" target/release/percore --config "$work/seeds.toml" --listen "127.0.0.1:${port[$name]}" \
               --shards 1 --cpus "$SERVER_CPU" --log-level warn & pid[$name]=$! ;;
    upstream)
      mkdir -p "$work/upstream"
      cat > "$work/upstream/nginx.conf" <<CONF
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity $(python3 -c "print(format(1 << $LOAD_CPU, 'b'))");
worker_rlimit_nofile $(ulimit -n);
pid $work/upstream/nginx.pid;
error_log $work/upstream/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path $work/upstream;
  proxy_temp_path $work/upstream;
  fastcgi_temp_path $work/upstream;
  uwsgi_temp_path $work/upstream;
  scgi_temp_path $work/upstream;
  server {
    listen 127.0.0.1:${port[upstream]};
    location = /plaintext { default_type "text/plain; charset=utf-8"; return 200 "Hello, World!"; }
  }
}
CONF
      nginx -c "$work/upstream/nginx.conf" & pid[upstream]=$! ;;
    nginx) port[nginx-tls]=${port[nginx-tls]:-$(free_port)}
           port[nginx-h2c]=${port[nginx-h2c]:-$(free_port)}
           port[nginx-keepalive256]=${port[nginx-keepalive256]:-$(free_port)}
           nginx_conf; nginx -c "$work/nginx/nginx.conf" & pid[nginx-master]=$! ;;
    actix) "${on_cpu[@]}" bench/peers/actix/target/release/peer-actix "127.0.0.1:${port[$name]}" & pid[$name]=$! ;;
    minihttp) "${on_cpu[@]}" bench/peers/minihttp/target/release/peer-minihttp "127.0.0.1:${port[$name]}" & pid[$name]=$! ;;
  esac
  wait_for "${port[$name]}"
  if [ "$name" = nginx ]; then
    pid[nginx]=$(pgrep -P "${pid[nginx-master]}" | head -1)
    pid[nginx-tls]=${pid[nginx]}
    pid[nginx-h2c]=${pid[nginx]}
    pid[nginx-keepalive256]=${pid[nginx]}
  fi
}

stop() {
  local name=$1 p
  p=${pid[$name]}
  [ "$name" = nginx ] && p=${pid[nginx-master]}
  kill "$p"; wait "$p" 2>/dev/null || true
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run_wrk NAME CONNECTIONS PATH DEPTH SECONDS -> "requests_per_second cpu_microseconds_per_request"
run_wrk() {
  local name=$1 connections=$2 path=$3 depth=$4 seconds=$5
  local scheme=http
  [[ $name == *-tls* ]] && scheme=https
  local args=(-t1 -c"$connections" -d"${seconds}s" "$scheme://127.0.0.1:${port[$name]}$path")
  # Sent to every server of a run alike (ONLY=layers: the CORS origin).
  [ -n "${EXTRA_HEADER:-}" ] && args+=(-H "$EXTRA_HEADER")
  if [ "$depth" = close ]; then
    args+=(-H "Connection: close")  # a new connection, so a full handshake, per request
  elif [ -n "$depth" ]; then
    args+=(-s scripts/pipeline.lua -- "$depth" "$path")
  fi
  local before after out requests rps
  before=$(cpu_ticks "${pid[$name]}")
  out=$(taskset -c "$LOAD_CPU" wrk "${args[@]}")
  after=$(cpu_ticks "${pid[$name]}")
  if echo "$out" | grep -q "Non-2xx\|Socket errors"; then
    echo "$name: $(echo "$out" | grep "Non-2xx\|Socket errors")" >&2
  fi
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  python3 -c "print($rps, ($after - $before) / $hz * 1e6 / max($requests, 1))"
}

results="$work/results"

# run_h2load NAME CONNECTIONS STREAMS SECONDS -> "requests_per_second cpu_microseconds_per_request"
run_h2load() {
  local name=$1 connections=$2 streams=$3 seconds=$4 scheme=http
  [[ $name == *-tls* ]] && scheme=https
  local before after out requests rps
  before=$(cpu_ticks "${pid[$name]}")
  out=$(taskset -c "$LOAD_CPU" h2load -t1 -c"$connections" -m"$streams" -D"$seconds" \
    "$scheme://127.0.0.1:${port[$name]}/plaintext" 2>&1)
  after=$(cpu_ticks "${pid[$name]}")
  requests=$(echo "$out" | awk '/^requests:/ {print $8}')
  rps=$(echo "$out" | awk '/^finished in/ {print $4}')
  if ! echo "$out" | grep -q " 0 failed, 0 errored"; then
    echo "$name: $(echo "$out" | grep '^requests:')" >&2
  fi
  python3 -c "print(${rps:-0}, ($after - $before) / $hz * 1e6 / max(${requests:-0}, 1))"
}

# h2_scenario NAME CONNECTIONS STREAMS SERVER...: as scenario, with h2load.
h2_scenario() {
  local name=$1 connections=$2 streams=$3
  shift 3
  echo "== $name" >&2
  for server in "$@"; do run_h2load "$server" "$connections" "$streams" "$WARMUP" >/dev/null; done
  for round in $(seq "$ROUNDS"); do
    for server in "$@"; do
      read -r rps us < <(run_h2load "$server" "$connections" "$streams" "$DURATION")
      echo "$name|$server|$rps|$us" >> "$results"
      printf '   round %s %-16s %10.0f req/s %6.2f µs CPU/req\n' "$round" "$server" "$rps" "$us" >&2
    done
  done
}

# latency_row FILE SCENARIO SERVER: oha's JSON summary as a results row
# (p50, p99 and p99.9 in µs).
latency_row() {
  python3 - "$@" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
p = data["latencyPercentiles"]
print(f"{sys.argv[2]}|{sys.argv[3]}|{p['p50']*1e6:.0f},{p['p99']*1e6:.0f},{p['p99.9']*1e6:.0f}|0")
PY
}
: > "$results"

# scenario NAME CONNECTIONS PATH DEPTH SERVER...
scenario() {
  local name=$1 connections=$2 path=$3 depth=$4
  shift 4
  echo "== $name" >&2
  for server in "$@"; do run_wrk "$server" "$connections" "$path" "$depth" "$WARMUP" >/dev/null; done
  for round in $(seq "$ROUNDS"); do
    for server in "$@"; do
      read -r rps us < <(run_wrk "$server" "$connections" "$path" "$depth" "$DURATION")
      echo "$name|$server|$rps|$us" >> "$results"
      printf '   round %s %-16s %10.0f req/s %6.2f µs CPU/req\n' "$round" "$server" "$rps" "$us" >&2
    done
  done
}

scripts/gen-certs.sh "$work/certs" localhost 127.0.0.1 >/dev/null

tls_scenarios() {
  scenario "https keep-alive, 64 connections" 64 /plaintext "" nginx-tls percore-tls
  scenario "https new connection per request (full handshakes), 16 connections" 16 /plaintext close nginx-tls percore-tls percore-tls-nospin
}

if [ "${ONLY:-}" = tls ]; then
  for server in nginx percore-tls percore-tls-nospin; do start "$server"; done
  tls_scenarios
  python3 scripts/bench_table.py "$results" | tee target/bench-compare.md
  exit 0
fi

# idle_rounds SERVER...: RSS growth per idle keep-alive connection, two
# rounds, each server freshly started: connections opened one at a time,
# then all at once (a burst: RSS per connection while they idle, and RSS
# left over the baseline once they have closed and the pools had time to
# trim).
idle_rounds() {
  echo "== idle keep-alive memory, $IDLE_CONNECTIONS connections, fresh servers" >&2
  for round in 1 2; do
    for server in "$@"; do
      stop "$server"
      start "$server"
      echo "idle, one at a time: bytes/conn|$server|$(python3 scripts/idle_connections.py "${port[$server]}" "$IDLE_CONNECTIONS" "${pid[$server]}")|0" >> "$results"
      tail -1 "$results" >&2
      stop "$server"
      start "$server"
      read -r per_conn trimmed left base < <(python3 scripts/idle_connections.py --burst "${port[$server]}" "$IDLE_CONNECTIONS" "${pid[$server]}")
      echo "idle after a burst: bytes/conn|$server|$per_conn|0" >> "$results"
      echo "idle after a burst, 12 s on: bytes/conn|$server|$trimmed|0" >> "$results"
      echo "idle after a burst, all closed: KiB over baseline|$server|$left|0" >> "$results"
      echo "idle baseline RSS: KiB|$server|$base|0" >> "$results"
      tail -4 "$results" >&2
    done
  done
}

# idle_tls_rounds SERVER...: the same one-at-a-time figure over TLS.
idle_tls_rounds() {
  echo "== idle TLS keep-alive memory, $IDLE_CONNECTIONS connections, fresh servers" >&2
  local process
  for round in 1 2; do
    for server in "$@"; do
      process=$server
      [ "$server" = nginx-tls ] && process=nginx  # one nginx serves both
      stop "$process"
      start "$process"
      echo "idle TLS, one at a time: bytes/conn|$server|$(python3 scripts/idle_connections.py --tls "${port[$server]}" "$IDLE_CONNECTIONS" "${pid[$server]}")|0" >> "$results"
      tail -1 "$results" >&2
    done
  done
}

if [ "${ONLY:-}" = baseline ]; then
  for server in nginx percore percore-base percore-tls percore-base-tls; do start "$server"; done
  scenario "plaintext keep-alive, 64 connections" 64 /plaintext "" nginx percore percore-base
  scenario "plaintext pipelined ×16, 256 connections" 256 /plaintext 16 nginx percore percore-base
  scenario "json keep-alive, 64 connections" 64 /json "" nginx percore percore-base
  scenario "https keep-alive, 64 connections" 64 /plaintext "" nginx-tls percore-tls percore-base-tls
  idle_rounds percore percore-base
  idle_tls_rounds percore-tls percore-base-tls
  python3 scripts/bench_table.py "$results" | tee target/bench-compare.md
  exit 0
fi

if [ "${ONLY:-}" = layers ]; then
  cargo build --release --quiet --example layered
  for server in percore percore-layered; do start "$server"; done
  EXTRA_HEADER="Origin: http://bench.test"
  scenario "plaintext keep-alive, 64 connections, no layers vs CORS + request ID + one layer" 64 /plaintext "" percore percore-layered
  scenario "json keep-alive, 64 connections, no layers vs CORS + request ID + one layer" 64 /json "" percore percore-layered
  python3 scripts/bench_table.py "$results" | tee target/bench-compare.md
  exit 0
fi

if [ "${ONLY:-}" = proxy ]; then
  port[upstream]=$(free_port)
  for server in upstream nginx percore-proxy percore-proxy-churn; do start "$server"; done
  for clients in 64 256; do
    scenario "proxied plaintext keep-alive, $clients connections" "$clients" /up/plaintext "" \
      nginx percore-proxy percore-proxy-churn nginx-keepalive256
  done
  proxied_json() { # NAME ARGS... -> oha's JSON summary
    local name=$1; shift
    taskset -c "$LOAD_CPU" oha --no-tui --output-format json -c 64 "$@" "http://127.0.0.1:${port[$name]}/up/plaintext"
  }
  capacity=$(proxied_json nginx -z 5s | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["summary"]["requestsPerSec"]))')
  echo "== open-loop latency; nginx proxied capacity under oha: $capacity req/s" >&2
  rate=$((capacity * 80 / 100))
  for round in 1 2 3; do
    for server in nginx percore-proxy; do
      proxied_json "$server" -z "${LATENCY_SECONDS}s" -q "$rate" --latency-correction > "$work/oha.json"
      latency_row "$work/oha.json" "latency 80% proxied ($rate req/s)" "$server" >> "$results"
      tail -1 "$results" >&2
    done
  done
  python3 scripts/bench_table.py "$results" | tee target/bench-compare.md
  exit 0
fi

if [ "${ONLY:-}" = seeds ]; then
  venv=$root/.ci/.venv
  if [[ ! -x $venv/bin/gunicorn ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q fastapi 'uvicorn[standard]' gunicorn
  fi
  "$venv/bin/gunicorn" -k uvicorn.workers.UvicornWorker -w 2 -b "unix:$work/gunicorn.sock" \
    --chdir tests/support --log-level warning --graceful-timeout 1 fastapi_app:app &
  pid[gunicorn]=$!
  for _ in $(seq 100); do [ -S "$work/gunicorn.sock" ] && break; sleep 0.1; done
  # nginx's worker runs as nobody: let it reach the socket.
  chmod 755 "$work"; chmod 777 "$work/gunicorn.sock"
  for server in nginx percore-seeds; do start "$server"; done
  scenario "FastAPI under gunicorn (2 uvicorn workers), GET /items/7, 64 connections" 64 /app/items/7 "" nginx percore-seeds
  python3 scripts/bench_table.py "$results" | tee target/bench-compare.md
  exit 0
fi

if [ "${ONLY:-}" = h2 ]; then
  command -v h2load >/dev/null || { apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null; }
  for server in nginx percore-h2c percore-tls-nospin; do start "$server"; done
  h2_scenario "h2c, h2load -c 64 -m 32" 64 32 nginx-h2c percore-h2c
  h2_scenario "h2c, h2load -c 16 -m 100" 16 100 nginx-h2c percore-h2c
  h2_scenario "h2 over TLS, h2load -c 64 -m 32" 64 32 nginx-tls percore-tls-nospin
  h2_scenario "h2 over TLS, h2load -c 16 -m 100" 16 100 nginx-tls percore-tls-nospin
  echo "== idle HTTP/2 memory, ${H2_IDLE:-2000} connections after one stream each" >&2
  for server in nginx-h2c percore-h2c; do
    process=$server
    [ "$server" = nginx-h2c ] && process=nginx
    stop "$process"; start "$process"
    echo "idle h2c, one at a time: bytes/conn|$server|$(python3 scripts/idle_connections.py --h2 "${port[$server]}" "${H2_IDLE:-2000}" "${pid[$server]}")|0" >> "$results"
    tail -1 "$results" >&2
  done
  python3 scripts/bench_table.py "$results" | tee target/bench-compare.md
  exit 0
fi

if [ "${ONLY:-}" = static ]; then
  mkdir -p "$work/static"
  head -c 1024 /dev/urandom > "$work/static/1k.bin"
  head -c 65536 /dev/urandom > "$work/static/64k.bin"
  head -c 10485760 /dev/urandom > "$work/static/10m.bin"
  python3 -c 'import json; print(json.dumps({"items": [{"id": i, "name": f"item {i}", "tags": ["a", "b"], "price": i * 3} for i in range(330)]}))' > "$work/static/20k.json"
  # nginx's worker runs as nobody: let it read the files.
  chmod 755 "$work" "$work/static"; chmod 644 "$work/static/"*
  for server in nginx percore-static; do start "$server"; done
  scenario "static 1 KiB file, 64 connections" 64 /static/1k.bin "" nginx percore-static
  scenario "static 64 KiB file, 64 connections" 64 /static/64k.bin "" nginx percore-static
  scenario "static 10 MiB file, 8 connections (MiB/s = req/s × 10)" 8 /static/10m.bin "" nginx percore-static
  EXTRA_HEADER="Accept-Encoding: gzip"
  scenario "20 KiB JSON file, gzip level 6, 16 connections" 16 /static/20k.json "" nginx percore-static
  for server in nginx percore-static; do
    size=$(curl -s -H "Accept-Encoding: gzip" "http://127.0.0.1:${port[$server]}/static/20k.json" | wc -c)
    echo "gzip level 6 of $(wc -c < "$work/static/20k.json") bytes of JSON: bytes sent|$server|$size|0" >> "$results"
  done
  echo "== 1000 slow downloads of the 10 MiB file" >&2
  for round in 1 2; do
    for server in nginx percore-static; do
      stop "$server"; start "$server"
      read -r per_download base < <(python3 scripts/slow_downloads.py "${port[$server]}" /static/10m.bin 1000 "${pid[$server]}")
      echo "1000 stalled 10 MiB downloads: RSS KiB/download|$server|$per_download|0" >> "$results"
      tail -1 "$results" >&2
    done
  done
  python3 scripts/bench_table.py "$results" | tee target/bench-compare.md
  exit 0
fi

if [ "${ONLY:-}" = limiter ]; then
  for server in percore percore-limited; do start "$server"; done
  scenario "plaintext keep-alive, 64 connections, rate limit off vs on" 64 /plaintext "" percore percore-limited
  python3 scripts/bench_table.py "$results" | tee target/bench-compare.md
  exit 0
fi

for server in percore percore-glommio percore-limited percore-tls percore-tls-nospin nginx actix minihttp; do start "$server"; done

scenario "plaintext keep-alive, 64 connections" 64 /plaintext "" nginx percore percore-glommio
scenario "plaintext keep-alive, 256 connections" 256 /plaintext "" nginx percore percore-glommio
scenario "plaintext pipelined ×16, 256 connections" 256 /plaintext 16 nginx percore percore-glommio
scenario "json keep-alive, 64 connections" 64 /json "" nginx percore actix minihttp
scenario "plaintext keep-alive, 64 connections, rate limit off vs on" 64 /plaintext "" percore percore-limited
tls_scenarios

# Open-loop latency: oha at a fixed rate (with latency correction) at 50 %
# and 80 % of nginx's capacity as oha itself measures it.
oha_json() { # NAME ARGS... -> JSON summary
  local name=$1; shift
  taskset -c "$LOAD_CPU" oha --no-tui --output-format json -c 64 "$@" "http://127.0.0.1:${port[$name]}/plaintext"
}
capacity=$(oha_json nginx -z 5s | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["summary"]["requestsPerSec"]))')
echo "== open-loop latency; nginx capacity under oha: $capacity req/s" >&2
for share in 50 80; do
  rate=$((capacity * share / 100))
  for round in 1 2 3; do
    for server in nginx percore; do
      oha_json "$server" -z "${LATENCY_SECONDS}s" -q "$rate" --latency-correction > "$work/oha.json"
      latency_row "$work/oha.json" "latency $share% ($rate req/s)" "$server" >> "$results"
      tail -1 "$results" >&2
    done
  done
done

idle_rounds nginx percore percore-glommio
idle_tls_rounds nginx-tls percore-tls

python3 scripts/bench_table.py "$results" | tee target/bench-compare.md
