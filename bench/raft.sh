#!/usr/bin/env bash
# Raft write benchmark, after ../shared/bench/etcd.sh: a three-node tidemarkd cluster on
# loopback (release build), 256-byte values, one point per request, every connection with one
# request in flight, against the leader; 256 connections, then 1. Prints writes/s and
# latency, the leader's fsyncs per committed entry, and checks that every replica stored
# every acknowledged write. Nodes are started and stopped by PID; data goes to a temp dir.
# TIDEMARKD=/path/to/tidemarkd runs that build; RAFT_EXTRA_CONFIG adds lines to every node's config.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${RAFT_SECONDS:-15}
command -v wrk >/dev/null || { sudo=$([ "$(id -u)" = 0 ] || echo sudo); $sudo apt-get install -y -q wrk >/dev/null; }
if [ -z "${TIDEMARKD:-}" ]; then swift build -c release --product tidemarkd >/dev/null; fi
bin=${TIDEMARKD:-$PWD/.build/release/tidemarkd}
work=$(mktemp -d /tmp/tidemark-raftbench.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
base=$((20000 + RANDOM % 20000))
peers="\"127.0.0.1:$((base + 1))\", \"127.0.0.1:$((base + 2))\", \"127.0.0.1:$((base + 3))\""
for i in 1 2 3; do
  cat > "$work/n$i.yaml" <<YAML
node_name: n$i
http: {listen: "127.0.0.1:$((base + 10 + i))"}
internal: {listen: "127.0.0.1:$((base + i))"}
meta_peers: [$peers]
cluster_secret: bench
log_level: warning
${RAFT_EXTRA_CONFIG:-}
YAML
  "$bin" --config "$work/n$i.yaml" --data-dir "$work/d$i" > "$work/log$i" 2>&1 &
  pids+=($!)
done
leader=
for attempt in $(seq 1 100); do
  for i in 1 2 3; do
    code=$(curl -s --max-time 2 -o /dev/null -w "%{http_code}" -u root:root -XPOST "http://127.0.0.1:$((base + 10 + i))/write?db=warmup" --data-binary 'w v=1' || true)
    if [ "$code" = 204 ]; then leader=$((base + 10 + i)); break 2; fi
  done
  sleep 0.1
done
[ -n "$leader" ] || { echo "no leader elected" >&2; exit 1; }
acknowledged=0
run=0
for conns in 256 1; do
  run=$((run + 1))
  threads=$([ "$conns" = 1 ] && echo 1 || echo 2)
  out=$(wrk -t"$threads" -c"$conns" -d"${seconds}s" --latency -s bench/consensus-put.lua "http://127.0.0.1:$leader/write?db=raftbench&precision=ms" -- "$run" s256)
  rate=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  bad=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "raft, 3 replicas: $conns connection(s): ${rate} writes/s, p50 ${p50}, p99 ${p99}, non-2xx ${bad:-0}"
done
metrics=$(curl -s --max-time 10 -u root:root "http://127.0.0.1:$leader/metrics")
fsyncs=$(echo "$metrics" | awk '/^tidemark_raft_fsyncs_total/ {print $2}')
entries=$(echo "$metrics" | awk '/^tidemark_raft_applied_entries_total/ {print $2}')
acknowledged=$(echo "$metrics" | awk '/^tidemark_http_requests_total\{route="\/write",status="204"\}/ {print $2}')
echo "leader: $fsyncs fsyncs, $entries committed entries, $acknowledged acknowledged requests (one is the warm-up write)"
# Followers apply a moment after the leader answers: poll each (bounded), fail on a shortfall.
failed=0
for i in 1 2 3; do
  stored=0
  for attempt in $(seq 1 50); do
    stored=$(curl -s --max-time 10 -u root:root "http://127.0.0.1:$((base + 10 + i))/rest/v2/query" -d '{"sql":"select count(v) from root.raftbench.kv"}' |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["values"][0][0])' 2>/dev/null || echo 0)
    [ "$stored" = "$((acknowledged - 1))" ] && break
    sleep 0.2
  done
  echo "node $i stores $stored points (acknowledged: $((acknowledged - 1)))"
  [ "$stored" = "$((acknowledged - 1))" ] || failed=1
done
exit $failed
