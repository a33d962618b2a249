#!/usr/bin/env bash
# make bench: the stage-runtime benchmark, then the HTTP /ping comparison with nginx.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product tidemark-stagebench
swift build -c release --product tidemarkd
echo "== (a) stage chain =="
.build/release/tidemark-stagebench
echo
echo "== (b) HTTP /ping vs nginx =="
bash bench/http-ping.sh "${WRK_SECONDS:-10}"
