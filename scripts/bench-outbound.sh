#!/usr/bin/env bash
# percore's outbound HTTP client against reqwest (one-thread tokio runtime),
# side by side: each keeps IN_FLIGHT GETs going against the same nginx
# upstream (one worker on SERVER_CPU) from one thread on CLIENT_CPU, in
# alternating rounds. Prints requests per second and client CPU per request
# for each round, and the medians with their ratio (percore / reqwest).
#
#   ROUNDS=5 DURATION=5 IN_FLIGHT=64 scripts/bench-outbound.sh
#
# Builds examples/outbound_load.rs and bench/peers/reqwest (outside percore's
# tree); installs nginx (apt-get) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
IN_FLIGHT=${IN_FLIGHT:-64}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
cargo build --release --quiet --example outbound_load
cargo build --release --quiet --manifest-path bench/peers/reqwest/Cargo.toml

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;
  uwsgi_temp_path $work; scgi_temp_path $work;
  server {
    listen 127.0.0.1:$port;
    location = /plaintext { default_type "text/plain; charset=utf-8"; return 200 "Hello, World!"; }
  }
}
CONF
taskset -c "$SERVER_CPU" nginx -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
trap 'kill $nginx_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do
  curl -s "http://127.0.0.1:$port/plaintext" >/dev/null && break
  sleep 0.1
done
url="http://127.0.0.1:$port/plaintext"

declare -A rates cpus
run() { # run NAME COMMAND...: one round; appends req/s and µs/request
  local name=$1; shift
  read -r requests cpu < <(taskset -c "$CLIENT_CPU" "$@" "$url" "$IN_FLIGHT" "$DURATION")
  local rate per
  rate=$(python3 -c "print(round($requests / $DURATION))")
  per=$(python3 -c "print(round($cpu * 1e6 / max($requests, 1), 2))")
  echo "   round $round $name: $rate req/s, $per µs CPU/request"
  rates[$name]+="$rate "
  cpus[$name]+="$per "
}
echo "== GET /plaintext from one thread, $IN_FLIGHT in flight, ${DURATION}s rounds"
for round in $(seq "$ROUNDS"); do
  run percore target/release/examples/outbound_load http
  run reqwest bench/peers/reqwest/target/release/peer-reqwest
done
median() { python3 -c "import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))" "$@"; }
p_rate=$(median ${rates[percore]}); r_rate=$(median ${rates[reqwest]})
p_cpu=$(median ${cpus[percore]}); r_cpu=$(median ${cpus[reqwest]})
echo
echo "| client | req/s (median) | µs CPU/request (median) |"
echo "|---|---|---|"
echo "| percore | $p_rate | $p_cpu |"
echo "| reqwest | $r_rate | $r_cpu |"
echo "| ratio percore/reqwest | $(python3 -c "print(round($p_rate / $r_rate, 2))") | $(python3 -c "print(round($p_cpu / $r_cpu, 2))") |"
