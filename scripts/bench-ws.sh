#!/usr/bin/env bash
# WebSocket echo, percore (examples/ws_echo.rs, one shard) against
# tokio-tungstenite on a one-thread tokio runtime (bench/peers/tungstenite),
# each on SERVER_CPU in alternating rounds, driven by the same load
# generator (ws-load, one thread on CLIENT_CPU): CONNECTIONS clients, each
# keeping IN_FLIGHT text messages of SIZE bytes in flight. Prints echoes
# per second, the server's CPU per echo and echoes per second per core
# (echoes over the server's CPU seconds) for each round, and the medians
# with their ratio. Then RSS per idle WebSocket with IDLE connections open
# (scripts/idle_connections.py --ws).
#
#   ROUNDS=5 DURATION=5 CONNECTIONS=64 IN_FLIGHT=4 SIZE=32 IDLE=10000 scripts/bench-ws.sh
#
# Builds examples/ws_echo.rs and bench/peers/tungstenite (outside
# percore's tree).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-64}
IN_FLIGHT=${IN_FLIGHT:-4}
SIZE=${SIZE:-32}
IDLE=${IDLE:-10000}
SERVER_CPU=${SERVER_CPU:-1}
CLIENT_CPU=${CLIENT_CPU:-0}
ulimit -n "$(ulimit -Hn)"  # IDLE connections need as many descriptors
cargo build --release --quiet --example ws_echo
cargo build --release --quiet --manifest-path bench/peers/tungstenite/Cargo.toml
peers=bench/peers/tungstenite/target/release

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
server_pid=
start() { # start NAME PORT: the server on SERVER_CPU, once it answers
  case $1 in
    # No idle polling: CPU per echo is work, not a shard spinning while it
    # waits for the load generator.
    percore) PERCORE_IDLE_POLL_US=0 taskset -c "$SERVER_CPU" target/release/examples/ws_echo --shards 1 \
               --listen "127.0.0.1:$2" --log-level warn >/dev/null 2>&1 & ;;
    tungstenite) taskset -c "$SERVER_CPU" "$peers/peer-ws-echo" "127.0.0.1:$2" & ;;
  esac
  server_pid=$!
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $2), timeout=1)" 2>/dev/null && return
    sleep 0.1
  done
  echo "$1 did not start" >&2; exit 1
}
stop() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=; }
trap stop EXIT

declare -A rates cpus cores
hz=$(getconf CLK_TCK)
echo "== echo: $CONNECTIONS connections x $IN_FLIGHT in flight, $SIZE-byte text, ${DURATION}s rounds"
for round in $(seq "$ROUNDS"); do
  for name in percore tungstenite; do
    port=$(free_port)
    start "$name" "$port"
    path=/ws
    before=$(cpu_ticks "$server_pid")
    echoes=$(taskset -c "$CLIENT_CPU" "$peers/ws-load" "ws://127.0.0.1:$port$path" \
      "$CONNECTIONS" "$IN_FLIGHT" "$DURATION" "$SIZE")
    after=$(cpu_ticks "$server_pid")
    stop
    read -r rate per core < <(python3 -c "
e, t = $echoes, ($after - $before) / $hz
print(round(e / $DURATION), round(t * 1e6 / max(e, 1), 3), round(e / max(t, 1e-9)))")
    echo "   round $round $name: $rate echoes/s, $per µs CPU/echo, $core echoes per CPU-second"
    rates[$name]+="$rate "; cpus[$name]+="$per "; cores[$name]+="$core "
  done
done
median() { python3 -c "import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))" "$@"; }
ratio() { python3 -c "print(round($1 / $2, 2))"; }
echo "== idle: RSS per WebSocket, $IDLE open after the handshake"
declare -A idle
for name in percore tungstenite; do
  port=$(free_port)
  start "$name" "$port"
  idle[$name]=$(python3 scripts/idle_connections.py --ws /ws "$port" "$IDLE" "$server_pid")
  stop
  echo "   $name: ${idle[$name]} bytes/connection"
done
echo
echo "| server | echoes/s (median) | µs CPU/echo (median) | echoes per core-second (median) | idle bytes/WebSocket |"
echo "|---|---|---|---|---|"
for name in percore tungstenite; do
  echo "| $name | $(median ${rates[$name]}) | $(median ${cpus[$name]}) | $(median ${cores[$name]}) | ${idle[$name]} |"
done
echo "| ratio percore/tungstenite | $(ratio "$(median ${rates[percore]})" "$(median ${rates[tungstenite]})") | $(ratio "$(median ${cpus[percore]})" "$(median ${cpus[tungstenite]})") | $(ratio "$(median ${cores[percore]})" "$(median ${cores[tungstenite]})") | $(ratio "${idle[percore]}" "${idle[tungstenite]}") |"
