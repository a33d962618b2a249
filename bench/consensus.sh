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
run=0
# CPU seconds (user + system) each node has used so far, space-separated, from /proc.
cpu_seconds() { for pid in "${pids[@]}"; do awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f ", ($14 + $15) / hz}' "/proc/$pid/stat"; done; }
for mode in ${MODES:-standalone raft multi_leader}; do
  base=$((20000 + RANDOM % 20000))
  count=$([ "$mode" = standalone ] && echo 1 || echo 3)
  peers="\"127.0.0.1:$((base + 1))\", \"127.0.0.1:$((base + 2))\", \"127.0.0.1:$((base + 3))\""
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
  done
  target=
  for attempt in $(seq 1 100); do
    for i in $(seq 1 "$count"); do
      code=$(curl -s --max-time 2 -o /dev/null -w "%{http_code}" -u root:root -XPOST "http://127.0.0.1:$((base + 10 + i))/write?db=warmup" --data-binary 'w v=1' || true)
      if [ "$code" = 204 ]; then target=$((base + 10 + i)); break 2; fi
    done
    sleep 0.1
  done
  [ -n "$target" ] || { echo "$mode: no node took writes" >&2; exit 1; }
  load=()
  if [ "${PIN_WRITER:-0}" = 1 ]; then
    for i in $(seq 1 "$count"); do
      taskset -a -p -c "$([ $((base + 10 + i)) = "$target" ] && echo 0 || echo 1)" "${pids[$((i - 1))]}" >/dev/null
    done
    load=(taskset -c 1)
  fi
  for batch in 1 1000; do
    run=$((run + 1))
    before=$(cpu_seconds)
    out=$("${load[@]}" wrk -t$((conns < 2 ? 1 : 2)) -c"$conns" -d"${seconds}s" --latency -s bench/consensus-put.lua "http://127.0.0.1:$target/write?db=cbench&precision=ns" -- "$run" "$batch")
    rate=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    points=$(python3 -c "print(round($rate * $batch))")
    echo "$mode: batch $batch, $conns connections: $rate requests/s = $points points/s, p50 $p50, p99 $p99, non-2xx ${bad:-0}"
    # What each node spent per point: on separate machines, the busiest node bounds the rate.
    if [ "$batch" = 1000 ]; then
      python3 -c "
b, a = '$before'.split(), '$(cpu_seconds)'.split()
points = $rate * 1000 * $seconds
print('$mode: CPU per point, node by node (µs):', ' '.join('%.2f' % ((float(y) - float(x)) / points * 1e6) for x, y in zip(b, a)))"
    fi
  done
  # Every replica takes writes: the same connections spread over the three nodes. Not when
  # pinned: two of the nodes would share CPU 1 with wrk, which measures nothing useful.
  if [ "$mode" = multi_leader ] && [ "${PIN_WRITER:-0}" != 1 ]; then
    run=$((run + 1))
    loads=()
    for i in 1 2 3; do
      "${load[@]}" wrk -t1 -c$((conns / 3)) -d"${seconds}s" --latency -s bench/consensus-put.lua "http://127.0.0.1:$((base + 10 + i))/write?db=cbench&precision=ns" -- "$run$i" 1000 > "$work/spread$i.txt" &
      loads+=($!)
    done
    wait "${loads[@]}"
    total=$(cat "$work"/spread[123].txt | awk '/Requests\/sec/ {sum += $2} END {print sum}')
    p50s=$(cat "$work"/spread[123].txt | awk '$1 == "50%" {printf "%s ", $2}')
    echo "multi_leader: batch 1000, $((conns / 3 * 3)) connections spread over 3 nodes: $(python3 -c "print(round($total * 1000))") points/s, p50 per node ${p50s}"
  fi
  if [ "$mode" = raft ]; then
    metrics=$(curl -s --max-time 10 -u root:root "http://127.0.0.1:$target/metrics")
    fsyncs=$(echo "$metrics" | awk '/^tidemark_raft_fsyncs_total/ {print $2}')
    entries=$(echo "$metrics" | awk '/^tidemark_raft_applied_entries_total/ {print $2}')
    requests=$(echo "$metrics" | awk '/^tidemark_http_requests_total\{route="\/write",status="204"\}/ {print $2}')
    echo "raft leader: $fsyncs fsyncs for $entries committed entries carrying $requests acknowledged requests"
  fi
  stop_nodes
done
