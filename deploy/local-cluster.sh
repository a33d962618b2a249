#!/usr/bin/env bash
# A cluster of N nodes on loopback, M of them in the meta group (the others data-only nodes
# that join through them). Node K listens for HTTP on 18080+K and for internal RPC on
# 10730+K; its config is written to ./cluster-data/nodeK.yaml and its data goes under
# ./cluster-data/nodeK (paths relative to the repository root).
#
#   deploy/local-cluster.sh start N [--meta M]   start nodes 1..N (M meta members: default 3, or N if N < 3)
#   deploy/local-cluster.sh stop [K]             stop node K, or every node
#   deploy/local-cluster.sh restart K            stop node K, then start it again
#   deploy/local-cluster.sh status               which nodes run, with their PIDs and HTTP addresses
#   deploy/local-cluster.sh                      start 3 nodes in the foreground; Ctrl-C stops all
#
# A node started here writes its PID to ./cluster-data/nodeK.pid and its output to
# ./cluster-data/nodeK.log (appended). Stopping sends SIGTERM to that PID only (after checking
# it still is that node's tidemarkd), waits up to STOP_TIMEOUT_S seconds (default 15: a
# node drains within shutdown_timeout_ms, 10 s by default), then sends SIGKILL. The size of
# the cluster is kept in ./cluster-data/size, so stop, restart and status need no N. A
# cluster's meta group never changes: starting again with another --meta is refused.
#
# TIDEMARKD names the binary (default .build/debug/tidemarkd; `make build` builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${TIDEMARKD:-.build/debug/tidemarkd}
data=./cluster-data
stop_timeout_s=${STOP_TIMEOUT_S:-15}
ready_timeout_s=60
nodes=()

usage() {
  sed -n '7,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

config_of() { echo "$data/node$1.yaml"; }
pid_file_of() { echo "$data/node$1.pid"; }
log_of() { echo "$data/node$1.log"; }
http_of() { echo "127.0.0.1:$((18080 + $1))"; }

# Reads the cluster's size (written by `start N`) into nodes=(1..N).
load_size() {
  [ -f "$data/size" ] || { echo "no cluster here yet: start one with $0 start N" >&2; exit 2; }
  local size meta
  read -r size meta < "$data/size"
  nodes=($(seq 1 "$size"))
}

# Writes nodes 1..N's configs, M of them meta members (kept from the first start on).
configure() {
  local size=$1 meta=$2 k peers
  [[ "$size" =~ ^[0-9]+$ ]] && [ "$size" -ge 1 ] && [ "$size" -le 50 ] || { echo "N must be 1..50, got '$size'" >&2; usage; }
  [[ "$meta" =~ ^[135]$ ]] && [ "$meta" -le "$size" ] || { echo "--meta must be 1, 3 or 5 and at most N, got '$meta'" >&2; usage; }
  mkdir -p "$data"
  if [ -f "$data/size" ]; then
    local old_size old_meta
    read -r old_size old_meta < "$data/size"
    [ "$old_meta" = "$meta" ] || { echo "this cluster's meta group has $old_meta members; it never changes (remove $data to start anew)" >&2; exit 2; }
  fi
  echo "$size $meta" > "$data/size"
  peers=""
  for ((k = 1; k <= meta; k++)); do peers+="${peers:+, }\"127.0.0.1:$((10730 + k))\""; done
  for ((k = 1; k <= size; k++)); do
    cat > "$(config_of "$k")" <<YAML
# Node $k of a local cluster (deploy/local-cluster.sh start $size --meta $meta).
node_name: node$k
data_dir: $data/node$k
http: {listen: "$(http_of "$k")"}
internal: {listen: "127.0.0.1:$((10730 + k))"}
meta_peers: [$peers]
# The shipped placeholder: accepted only while every listener is on loopback, as here.
cluster_secret: change-me
YAML
  done
  nodes=($(seq 1 "$size"))
}

# The PID of node K's tidemarkd when it runs, else nothing (a stale PID file is removed).
# A PID is trusted only while it still runs tidemarkd with node K's config: a PID the
# system gave to another process since is never signalled.
running_pid() {
  local file pid
  file=$(pid_file_of "$1")
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if [[ "$pid" =~ ^[0-9]+$ ]] && ps -p "$pid" -o args= 2>/dev/null | grep -q -- "--config $(config_of "$1")"; then
    echo "$pid"
  else
    rm -f "$file"
  fi
}

check_node() {
  [[ "${1:-}" =~ ^[0-9]+$ ]] && [ "$1" -ge 1 ] && [ "$1" -le "${#nodes[@]}" ] || { echo "node must be 1..${#nodes[@]}, got '${1:-}'" >&2; usage; }
}

# Starts node K in the background (its log offset goes in launched_at[K]).
declare -A launched_at=()
launch_node() {
  local k=$1 pid log
  [ -x "$binary" ] || { echo "build first (make build), or set TIDEMARKD" >&2; exit 2; }
  pid=$(running_pid "$k")
  if [ -n "$pid" ]; then
    echo "node$k already runs (pid $pid)"
    return 0
  fi
  mkdir -p "$data"
  log=$(log_of "$k")
  touch "$log"
  launched_at[$k]=$(wc -l < "$log")
  nohup "$binary" --config "$(config_of "$k")" >>"$log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" > "$(pid_file_of "$k")"
}

# Waits (bounded) until node K, launched, says it is ready. A node opens its port only once
# a majority of the meta group is up, so the first of a cluster waits for the others.
wait_node() {
  local k=$1 pid log
  [ -n "${launched_at[$k]:-}" ] || return 0  # it already ran
  pid=$(running_pid "$k")
  log=$(log_of "$k")
  for ((waited = 0; waited < ready_timeout_s * 10; waited++)); do
    if tail -n "+$((launched_at[$k] + 1))" "$log" | grep -q "tidemarkd ready http="; then
      echo "node$k started (pid $pid), http://$(http_of "$k"), log $log"
      return 0
    fi
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$(pid_file_of "$k")"
      echo "node$k exited at start; the end of $log:" >&2
      tail -n 5 "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "node$k (pid $pid) is not ready after ${ready_timeout_s} s (are a majority of the meta peers up?); see $log" >&2
  return 1
}

start_node() { launch_node "$1" && wait_node "$1"; }

# Every stopped node: all launched first, then each waited for.
start_all() {
  local k status=0
  for k in "${nodes[@]}"; do launch_node "$k"; done
  for k in "${nodes[@]}"; do wait_node "$k" || status=1; done
  return $status
}

# Stops node K by its PID: SIGTERM, a bounded wait, then SIGKILL.
stop_node() {
  local k=$1 pid
  pid=$(running_pid "$k")
  if [ -z "$pid" ]; then
    echo "node$k is not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((waited = 0; waited < stop_timeout_s * 10; waited++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "node$k (pid $pid) did not stop within ${stop_timeout_s} s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pid_file_of "$k")"
  echo "node$k stopped"
}

status() {
  local k pid
  for k in "${nodes[@]}"; do
    pid=$(running_pid "$k")
    if [ -n "$pid" ]; then
      echo "node$k: running (pid $pid), http://$(http_of "$k"), log $(log_of "$k")"
    else
      echo "node$k: stopped"
    fi
  done
}

any_running() {
  local k
  for k in "${nodes[@]}"; do [ -n "$(running_pid "$k")" ] && return 0; done
  return 1
}

# All three, watched from the foreground until Ctrl-C (or until none runs any more); their
# logs are shown as they grow.
foreground() {
  local k tail_pid
  mkdir -p "$data"
  for k in "${nodes[@]}"; do touch "$(log_of "$k")"; done
  tail -n 0 -F $(for k in "${nodes[@]}"; do log_of "$k"; done) &
  tail_pid=$!
  trap 'echo; for k in "${nodes[@]}"; do stop_node "$k"; done; kill "$tail_pid" 2>/dev/null; exit 0' INT TERM
  start_all || true
  echo "${#nodes[@]} nodes: http://127.0.0.1:18081 … (writes go to the data leader; the others answer 503 naming it)"
  echo "from another terminal: $0 stop|start|restart K, $0 status. Ctrl-C stops all."
  while any_running; do sleep 1; done
  kill "$tail_pid" 2>/dev/null || true
  echo "no node runs any more"
}

case "${1:-}" in
  "") configure 3 3; foreground ;;
  start)
    [ $# -ge 2 ] || usage
    size=$2
    meta=$(( size < 3 ? size : 3 ))
    if [ "${3:-}" = "--meta" ]; then meta=${4:-}; elif [ $# -gt 2 ]; then usage; fi
    configure "$size" "$meta"
    start_all ;;
  stop)
    load_size
    if [ $# -ge 2 ]; then check_node "$2"; stop_node "$2"; else for k in "${nodes[@]}"; do stop_node "$k"; done; fi ;;
  restart)
    load_size; check_node "${2:-}"; stop_node "$2"; start_node "$2" ;;
  status) load_size; status ;;
  *) usage ;;
esac
