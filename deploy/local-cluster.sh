#!/usr/bin/env bash
# Starts a three-node cluster on loopback (deploy/cluster-3/n*.yaml): HTTP on 18081-18083,
# internal RPC on 10731-10733, data under ./data-cluster. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${TIDEMARKD:-.build/debug/tidemarkd}
[ -x "$binary" ] || { echo "build first (make build), or set TIDEMARKD" >&2; exit 2; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
for i in 1 2 3; do
  "$binary" --config "deploy/cluster-3/n$i.yaml" &
  pids+=($!)
done
echo "three nodes: http://127.0.0.1:18081 18082 18083 (writes go to the Raft leader; the others answer 503)"
wait
