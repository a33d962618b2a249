#!/usr/bin/env bash
# make bench: the stage-runtime benchmark, then the HTTP /ping comparison with nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product tidemark-stagebench
swift build -c release --product tidemarkd
swift build -c release --product tidemark-storage
echo "== (a) stage chain =="
.build/release/tidemark-stagebench
echo
echo "== (b) HTTP /ping vs nginx =="
bash bench/http-ping.sh "${WRK_SECONDS:-10}"
echo
echo "== (c) storage: bytes per point and codec throughput =="
# 7600 timestamps per series: as many points per series as VictoriaMetrics and InfluxDB
# stored in their 30 s runs of ../shared/bench (about 76 M points over 10 000 series).
.build/release/tidemark-storage bench --timestamps "${STORAGE_TIMESTAMPS:-7600}"
echo
echo "== (d) Raft: three replicas on loopback, 256-byte writes (compare ../shared/bench/ETCD.md) =="
bash bench/raft.sh

echo "== (e) consensus: standalone, Raft and multi-leader at 1 and 1000 points per request =="
bash bench/consensus.sh

echo "== (f) meta group: CREATE DATABASE and partition allocations per second on three members =="
TIDEMARKD=$PWD/.build/release/tidemarkd bash bench/meta.sh
