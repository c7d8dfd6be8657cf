#!/usr/bin/env bash
# percore's Redis client from one shard against redis-benchmark from one
# core, both against one redis-server on SERVER_CPU, the clients on
# CLIENT_CPU. redis-benchmark runs SET and GET with CONNECTIONS clients
# (one command in flight each); percore keeps IN_FLIGHT commands in flight
# on its one multiplexed connection (SET and GET in turn).
#
#   ROUNDS=3 DURATION=5 scripts/bench-redis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
IN_FLIGHT=${IN_FLIGHT:-64}
CONNECTIONS=${CONNECTIONS:-64}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
cargo build --release --quiet --example outbound_load
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
work=$(mktemp -d)
taskset -c "$SERVER_CPU" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$work" >"$work/redis.log" &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
for round in $(seq "$ROUNDS"); do
  read -r commands cpu < <(taskset -c "$CLIENT_CPU" target/release/examples/outbound_load redis \
    "redis://127.0.0.1:$port" "$IN_FLIGHT" "$DURATION")
  echo "round $round percore: $(python3 -c "print(round($commands / $DURATION))") commands/s," \
    "$(python3 -c "print(round($cpu * 1e6 / $commands, 2))") µs CPU/command"
  taskset -c "$CLIENT_CPU" redis-benchmark -p "$port" -c "$CONNECTIONS" -n 400000 -t set,get -q \
    | tr '\r' '\n' | grep "requests per second" | sed "s/^/round $round redis-benchmark /"
done
