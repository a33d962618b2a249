#!/usr/bin/env bash
# Consensus benchmark (issue 5): standalone, three Raft replicas and three multi-leader
# replicas on loopback (release build), in one run, at 1 and 1000 points per request,
# CONNS connections (default 16) with one request in flight each, against one node (Raft:
# the leader). Every write is acknowledged only once durable (standalone and multi-leader:
# wal_sync batch, one fsync per group commit; Raft: fsync per round). Prints points/s,
# p50/p99 commit latency, and for Raft the leader's fsyncs per committed entry.
# MODES="raft" runs only the modes named; TIDEMARKD=/path/to/tidemarkd runs that build.
# PIN_WRITER=1 pins the node taking writes to CPU 0 and the other nodes and wrk to CPU 1:
# closer to one machine per replica, as far as 2 cores allow (and no spread-writes run).
# All modes run side by side: every node starts first, then ROUNDS rounds (default 3) each
# run every mode in turn, so a drift in the machine's speed hits every mode alike; the
# summary gives each mode's median and the median of the per-round ratios to standalone.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${CONSENSUS_SECONDS:-10}
conns=${CONNS:-16}
command -v wrk >/dev/null || { sudo=$([ "$(id -u)" = 0 ] || echo sudo); $sudo apt-get install -y -q wrk >/dev/null; }
if [ -z "${TIDEMARKD:-}" ]; then swift build -c release --product tidemarkd >/dev/null; fi
bin=${TIDEMARKD:-$PWD/.build/release/tidemarkd}
work=$(mktemp -d /tmp/tidemark-consensusbench.XXXXXX)
pids=()
stop_nodes() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done; pids=(); }
cleanup() { stop_nodes; rm -rf "$work"; }
trap cleanup EXIT
rounds=${ROUNDS:-3}
modes=(${MODES:-standalone raft multi_leader})
run=0
declare -A targets mode_pids mode_base
# CPU seconds (user + system) each of the given processes has used so far, from /proc.
cpu_seconds() { for pid in "$@"; do awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f ", ($14 + $15) / hz}' "/proc/$pid/stat"; done; }
load=()
if [ "${PIN_WRITER:-0}" = 1 ]; then load=(taskset -c 1); fi

# Starts a mode's nodes and waits until one takes writes (Raft: the leader).
start_mode() {
  local mode=$1 base=$((20000 + RANDOM % 20000)) count i
  count=$([ "$mode" = standalone ] && echo 1 || echo 3)
  local peers="\"127.0.0.1:$((base + 1))\", \"127.0.0.1:$((base + 2))\", \"127.0.0.1:$((base + 3))\"" started=()
  for i in $(seq 1 "$count"); do
    {
      echo "node_name: n$i"
      echo "http: {listen: \"127.0.0.1:$((base + 10 + i))\"}"
      echo "wal_sync: batch"
      echo "log_level: warning"
      if [ "$mode" != standalone ]; then
        echo "internal: {listen: \"127.0.0.1:$((base + i))\"}"
        echo "meta_peers: [$peers]"
        echo "cluster_secret: bench"
        echo "data_consensus: $mode"
      fi
    } > "$work/$mode-n$i.yaml"
    "$bin" --config "$work/$mode-n$i.yaml" --data-dir "$work/$mode-d$i" > "$work/$mode-log$i" 2>&1 &
    pids+=($!)
    started+=($!)
  done
  local target= attempt code
  for attempt in $(seq 1 100); do
    for i in $(seq 1 "$count"); do
      code=$(curl -s --max-time 2 -o /dev/null -w "%{http_code}" -u root:root -XPOST "http://127.0.0.1:$((base + 10 + i))/write?db=warmup" --data-binary 'w v=1' || true)
      if [ "$code" = 204 ]; then target=$((base + 10 + i)); break 2; fi
    done
    sleep 0.1
  done
  [ -n "$target" ] || { echo "$mode: no node took writes" >&2; exit 1; }
  if [ "${PIN_WRITER:-0}" = 1 ]; then
    for i in $(seq 1 "$count"); do
      taskset -a -p -c "$([ $((base + 10 + i)) = "$target" ] && echo 0 || echo 1)" "${started[$((i - 1))]}" >/dev/null
    done
  fi
  targets[$mode]=$target
  mode_pids[$mode]="${started[*]}"
  mode_base[$mode]=$base
}

# One wrk run against a mode's target; prints its line and appends "round mode batch points/s" to the results.
measure() {
  local round=$1 mode=$2 batch=$3 before out rate p50 p99 bad points
  run=$((run + 1))
  # shellcheck disable=SC2086
  before=$(cpu_seconds ${mode_pids[$mode]})
  out=$("${load[@]}" wrk -t$((conns < 2 ? 1 : 2)) -c"$conns" -d"${seconds}s" --latency -s bench/consensus-put.lua "http://127.0.0.1:${targets[$mode]}/write?db=cbench&precision=ns" -- "$run" "$batch")
  rate=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  points=$(python3 -c "print(round($rate * $batch))")
  echo "round $round, $mode: batch $batch, $conns connections: $rate requests/s = $points points/s, p50 $p50, p99 $p99, non-2xx ${bad:-0}"
  echo "$round $mode $batch $points" >> "$work/results"
  # What each node spent per point: on separate machines, the busiest node bounds the rate.
  if [ "$batch" = 1000 ]; then
    # shellcheck disable=SC2086
    python3 -c "
b, a = '$before'.split(), '$(cpu_seconds ${mode_pids[$mode]})'.split()
points = $rate * 1000 * $seconds
print('round $round, $mode: CPU per point, node by node (µs):', ' '.join('%.2f' % ((float(y) - float(x)) / points * 1e6) for x, y in zip(b, a)))"
  fi
}

for mode in "${modes[@]}"; do start_mode "$mode"; done
: > "$work/results"
for round in $(seq 1 "$rounds"); do
  for mode in "${modes[@]}"; do
    for batch in 1 1000; do measure "$round" "$mode" "$batch"; done
  done
done

# Every replica takes writes: the same connections spread over the three nodes. Not when
# pinned: two of the nodes would share CPU 1 with wrk, which measures nothing useful.
if [ -n "${targets[multi_leader]:-}" ] && [ "${PIN_WRITER:-0}" != 1 ]; then
  run=$((run + 1))
  loads=()
  for i in 1 2 3; do
    wrk -t1 -c$((conns / 3)) -d"${seconds}s" --latency -s bench/consensus-put.lua "http://127.0.0.1:$((mode_base[multi_leader] + 10 + i))/write?db=cbench&precision=ns" -- "$run$i" 1000 > "$work/spread$i.txt" &
    loads+=($!)
  done
  wait "${loads[@]}"
  total=$(cat "$work"/spread[123].txt | awk '/Requests\/sec/ {sum += $2} END {print sum}')
  p50s=$(cat "$work"/spread[123].txt | awk '$1 == "50%" {printf "%s ", $2}')
  echo "multi_leader: batch 1000, $((conns / 3 * 3)) connections spread over 3 nodes: $(python3 -c "print(round($total * 1000))") points/s, p50 per node ${p50s}"
fi
if [ -n "${targets[raft]:-}" ]; then
  metrics=$(curl -s --max-time 10 -u root:root "http://127.0.0.1:${targets[raft]}/metrics")
  fsyncs=$(echo "$metrics" | awk '/^tidemark_raft_fsyncs_total/ {print $2}')
  entries=$(echo "$metrics" | awk '/^tidemark_raft_applied_entries_total/ {print $2}')
  requests=$(echo "$metrics" | awk '/^tidemark_http_requests_total\{route="\/write",status="204"\}/ {print $2}')
  echo "raft leader, all rounds: $fsyncs fsyncs for $entries committed entries carrying $requests acknowledged requests"
fi
python3 - "$work/results" <<'SUMMARY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
rate = {(int(r), m, int(b)): int(p) for r, m, b, p in rows}
rounds = sorted({r for r, _, _ in rate})
modes = list(dict.fromkeys(m for _, m, _ in rate))
for batch in (1, 1000):
    for mode in modes:
        values = [rate[(r, mode, batch)] for r in rounds]
        line = f"summary: {mode}, batch {batch}: median {statistics.median(values):.0f} points/s over {len(values)} rounds"
        if mode != "standalone" and "standalone" in modes:
            ratios = [rate[(r, mode, batch)] / rate[(r, "standalone", batch)] for r in rounds]
            line += f"; × standalone per round {' '.join('%.2f' % x for x in ratios)}, median {statistics.median(ratios):.2f}"
        print(line)
SUMMARY
