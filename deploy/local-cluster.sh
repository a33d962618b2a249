#!/usr/bin/env bash
# A three-node cluster on loopback (deploy/cluster-3/n*.yaml): HTTP on 18081-18083, internal
# RPC on 10731-10733, data under ./data-cluster (paths are relative to the repository root).
#
#   deploy/local-cluster.sh              start all three in the foreground; Ctrl-C stops all
#   deploy/local-cluster.sh start [K]    start node K (1..3), or every stopped node, in the background
#   deploy/local-cluster.sh stop [K]     stop node K, or all three
#   deploy/local-cluster.sh restart K    stop node K, then start it again
#   deploy/local-cluster.sh status       which nodes run, with their PIDs and HTTP addresses
#
# A node started here writes its PID to ./data-cluster/nK.pid and its output to
# ./data-cluster/nK.log (appended). Stopping sends SIGTERM to that PID only (after checking
# it still is that node's tidemarkd), waits up to STOP_TIMEOUT_S seconds (default 15: a
# node drains within shutdown_timeout_ms, 10 s by default), then sends SIGKILL. The
# foreground mode shows the logs and keeps running while any node runs, so one node can be
# stopped and restarted from another terminal meanwhile.
#
# TIDEMARKD names the binary (default .build/debug/tidemarkd; `make build` builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${TIDEMARKD:-.build/debug/tidemarkd}
data=./data-cluster
stop_timeout_s=${STOP_TIMEOUT_S:-15}
ready_timeout_s=30
nodes=(1 2 3)

usage() {
  sed -n '5,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

config_of() { echo "deploy/cluster-3/n$1.yaml"; }
pid_file_of() { echo "$data/n$1.pid"; }
log_of() { echo "$data/n$1.log"; }
http_of() { sed -n 's/^http: *{listen: *"\{0,1\}\([^"}]*\)"\{0,1\}}.*/\1/p' "$(config_of "$1")"; }

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
  [[ "${1:-}" =~ ^[1-3]$ ]] || { echo "node must be 1, 2 or 3, got '${1:-}'" >&2; usage; }
}

# Starts node K in the background (its log offset goes in launched_at[K]).
declare -A launched_at=()
launch_node() {
  local k=$1 pid log
  [ -x "$binary" ] || { echo "build first (make build), or set TIDEMARKD" >&2; exit 2; }
  pid=$(running_pid "$k")
  if [ -n "$pid" ]; then
    echo "n$k already runs (pid $pid)"
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
      echo "n$k started (pid $pid), http://$(http_of "$k"), log $log"
      return 0
    fi
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$(pid_file_of "$k")"
      echo "n$k exited at start; the end of $log:" >&2
      tail -n 5 "$log" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "n$k (pid $pid) is not ready after ${ready_timeout_s} s (are a majority of the meta peers up?); see $log" >&2
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
    echo "n$k is not running"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((waited = 0; waited < stop_timeout_s * 10; waited++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "n$k (pid $pid) did not stop within ${stop_timeout_s} s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pid_file_of "$k")"
  echo "n$k stopped"
}

status() {
  local k pid
  for k in "${nodes[@]}"; do
    pid=$(running_pid "$k")
    if [ -n "$pid" ]; then
      echo "n$k: running (pid $pid), http://$(http_of "$k"), log $(log_of "$k")"
    else
      echo "n$k: stopped"
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
  tail -n 0 -F "$(log_of 1)" "$(log_of 2)" "$(log_of 3)" &
  tail_pid=$!
  trap 'echo; for k in "${nodes[@]}"; do stop_node "$k"; done; kill "$tail_pid" 2>/dev/null; exit 0' INT TERM
  start_all || true
  echo "three nodes: http://127.0.0.1:18081 18082 18083 (writes go to the Raft leader; the others answer 503)"
  echo "from another terminal: $0 stop|start|restart K, $0 status. Ctrl-C stops all."
  while any_running; do sleep 1; done
  kill "$tail_pid" 2>/dev/null || true
  echo "no node runs any more"
}

case "${1:-}" in
  "") foreground ;;
  start)
    if [ $# -ge 2 ]; then check_node "$2"; start_node "$2"; else start_all; fi ;;
  stop)
    if [ $# -ge 2 ]; then check_node "$2"; stop_node "$2"; else for k in "${nodes[@]}"; do stop_node "$k"; done; fi ;;
  restart)
    check_node "${2:-}"; stop_node "$2"; start_node "$2" ;;
  status) status ;;
  *) usage ;;
esac
