#!/usr/bin/env bash
# Cluster ingestion: ../shared/bench/peers.sh's workload (its lpbench, same batches) written
# to a cluster of tidemarkd nodes on loopback, the connections spread over the nodes (every
# node coordinates). Prints points/s, p50/p99, RSS per node and the cluster's CPU per
# acknowledged point (summed over nodes), then checks the stored count through every node.
#   bench/cluster.sh [--nodes 3] [--rf 1] [--consensus raft|multi_leader] [--duration 20]
#                    [--conns-per-node 2] [--max-rate 3000000] [--wal-sync 1000|batch|always]
# A multi-leader write is acknowledged once the receiving replica's log is synced: with
# wal_sync 1000 that waits for the next periodic sync (a second), so run it with batch.
# --nodes 1 runs a single node (no meta_peers): the baseline for CPU per point.
# All nodes share this machine's cores: throughput here understates a real cluster; CPU per
# point is the figure to compare. TIDEMARKD=/path/to/tidemarkd runs that build.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=3 rf=1 consensus=raft duration=20 conns=2 maxrate=3000000 devices=1000 fields=10 batch=5000 walsync=1000
while [ $# -gt 0 ]; do
  case $1 in
    --nodes) nodes=$2;; --rf) rf=$2;; --consensus) consensus=$2;; --duration) duration=$2;;
    --conns-per-node) conns=$2;; --max-rate) maxrate=$2;; --wal-sync) walsync=$2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
  shift 2
done
if [ -z "${TIDEMARKD:-}" ]; then swift build -c release --product tidemarkd >&2; fi
bin=${TIDEMARKD:-$PWD/.build/release/tidemarkd}
work=$(mktemp -d /tmp/tidemark-cluster.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

cc -O2 -pthread -o "$work/lpbench" ../shared/bench/lpbench.c
ppb=$((batch * fields))
nb=$(( (maxrate * duration + ppb - 1) / ppb ))
t0=$(( ($(date +%s) - nb * batch / devices * 10 - 86400) / 86400 * 86400 ))
mkdir -p "$work/batches"
eval "$("$work/lpbench" gen "$work/batches" "$devices" "$fields" "$batch" "$nb" "$t0" 42)"
log "workload: $nb batches of $ppb points"

base=$((20000 + RANDOM % 10000))
peers=$(for i in $(seq 1 $((nodes < 3 ? nodes : 3))); do printf '"127.0.0.1:%d", ' $((base + i)); done | sed 's/, $//')
for i in $(seq 1 "$nodes"); do
  {
    echo "node_name: n$i"
    echo "http: {listen: \"127.0.0.1:$((base + 100 + i))\"}"
    echo "wal_sync: $walsync"
    echo "log_level: warning"
    echo "stages: {decode: {threads: 3}}"
    if [ "$nodes" -gt 1 ]; then
      echo "internal: {listen: \"127.0.0.1:$((base + i))\"}"
      echo "meta_peers: [$peers]"
      echo "cluster_secret: bench-secret"
      echo "data_consensus: $consensus"
      echo "data_replication_factor: $rf"
    fi
  } > "$work/n$i.yaml"
  "$bin" --config "$work/n$i.yaml" --data-dir "$work/d$i" > "$work/log$i" 2>&1 &
  pids+=($!)
done
for i in $(seq 1 "$nodes"); do
  for _ in $(seq 1 300); do curl -sf -u root:root "http://127.0.0.1:$((base + 100 + i))/ping" >/dev/null && break; sleep 0.1; done
done
# The database first, so the load does not race its creation.
curl -s -u root:root -H 'Content-Type: application/json' -d '{"sql":"create database root.bench"}' \
  "http://127.0.0.1:$((base + 101))/rest/v2/nonQuery" >/dev/null
sleep 2

ticks() { awk '{print $14+$15}' /proc/"$1"/stat; }
declare -a c0 c1
for i in "${!pids[@]}"; do c0[$i]=$(ticks "${pids[$i]}"); done
# Each node's share of the batches, so no two loads write the same points.
share=$((nb / nodes))
for i in $(seq 1 "$nodes"); do
  mkdir -p "$work/share$i"
  for b in $(seq 0 $((share - 1))); do
    ln -s "$work/batches/$(printf 'b%06d.lp' $(( (i - 1) * share + b )))" "$work/share$i/$(printf 'b%06d.lp' "$b")"
  done
  "$work/lpbench" load "http://127.0.0.1:$((base + 100 + i))/write?db=bench&precision=ns&u=root&p=root" "$work/share$i" "$share" "$ppb" \
    "$duration" "$conns" > "$work/load$i.txt" &
done
wait $(jobs -p | grep -v -F -x -f <(printf '%s\n' "${pids[@]}")) 2>/dev/null || true
for i in "${!pids[@]}"; do c1[$i]=$(ticks "${pids[$i]}"); done

hz=$(getconf CLK_TCK)
acked=0 rate=0 p50=0 p99=0 bad=0
for i in $(seq 1 "$nodes"); do
  eval "$(grep -v '^first_non2xx' "$work/load$i.txt")"
  acked=$((acked + acked_points)); rate=$(awk -v a="$rate" -v b="$points_per_s" 'BEGIN{print a+b}'); bad=$((bad + non2xx + io_errors))
  p50=$(awk -v a="$p50" -v b="$p50_ms" 'BEGIN{print (b>a)?b:a}'); p99=$(awk -v a="$p99" -v b="$p99_ms" 'BEGIN{print (b>a)?b:a}')
  grep '^first_non2xx' "$work/load$i.txt" >&2 || true
done
cpu_total=0 busiest=0
for i in "${!pids[@]}"; do
  s=$(awk -v t=$((c1[$i] - c0[$i])) -v hz="$hz" 'BEGIN{print t/hz}')
  rss=$(( $(awk '/VmHWM/{print $2}' /proc/"${pids[$i]}"/status) / 1024 ))
  log "node $((i + 1)): cpu ${s}s, rss ${rss} MiB"
  cpu_total=$(awk -v a="$cpu_total" -v b="$s" 'BEGIN{print a+b}')
  busiest=$(awk -v a="$busiest" -v b="$s" 'BEGIN{print (b>a)?b:a}')
done
sleep 3
counts=""
for i in $(seq 1 "$nodes"); do
  body=$(curl -s -m 120 -u root:root -H 'Content-Type: application/json' -d '{"sql":"select count(*) from root.bench.**"}' \
    "http://127.0.0.1:$((base + 100 + i))/rest/v2/query" || true)
  c=$(echo "$body" | python3 -c 'import json,sys; print(sum(v[0] for v in json.load(sys.stdin)["values"]))' 2>/dev/null || echo n/a)
  if [ "$c" = n/a ]; then log "node $i answered the count with: ${body:0:300}"; tail -5 "$work/log$i" >&2; fi
  counts="$counts $c"
done
echo "nodes=$nodes rf=$rf consensus=$consensus wal_sync=$walsync duration=${duration}s conns=$((conns * nodes)) cores=$(nproc)"
echo "points/s=$(printf '%.0f' "$rate") p50_ms(max over nodes)=$p50 p99_ms=$p99 acked=$acked bad=$bad"
awk -v c="$cpu_total" -v b="$busiest" -v a="$acked" 'BEGIN{
  printf "cluster_cpu_us_per_point=%.3f busiest_node_cpu_us_per_point=%.3f\n", 1e6*c/a, 1e6*b/a }'
echo "count through each node:$counts (acked $acked)"
