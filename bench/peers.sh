#!/usr/bin/env bash
# Tidemark in ../shared/bench/peers.sh beside VictoriaMetrics and InfluxDB (same run).
#   bench/peers.sh [--wal-sync 1000|batch|always] [peers.sh options…]
# e.g. bench/peers.sh --duration 20 --repeat 2 --servers victoria-metrics
# Builds the release tidemarkd, runs it on 127.0.0.1:18111 with three decode threads (the
# sizing for a few connections sending large batches: three requests parse at once), and
# counts stored points through /rest/v2/query. Needs what peers.sh needs (root, gcc, curl).
# TIDEMARKD=/path/to/tidemarkd runs that binary instead of building (to compare two builds).
set -euo pipefail
cd "$(dirname "$0")/.."
wal_sync=1000
if [ "${1:-}" = "--wal-sync" ]; then wal_sync=$2; shift 2; fi
if [ -z "${TIDEMARKD:-}" ]; then swift build -c release --product tidemarkd >&2; fi
work=$(mktemp -d /tmp/tidemark-peers.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat > "$work/node.yaml" <<YAML
wal_sync: $wal_sync
log_level: warning
stages:
  decode: {threads: 3}
YAML
cat > "$work/count.sh" <<'COUNT'
#!/usr/bin/env bash
curl -s -m 120 -u root:root -H 'Content-Type: application/json' \
  -d '{"sql":"select count(*) from root.bench.**"}' "$BASE/rest/v2/query" |
  python3 -c 'import json,sys; print(sum(v[0] for v in json.load(sys.stdin)["values"]))'
COUNT
chmod +x "$work/count.sh"
bin=${TIDEMARKD:-$PWD/.build/release/tidemarkd}
bash ../shared/bench/peers.sh \
  --target 'http://127.0.0.1:18111/write?db=bench&precision=ns&u=root&p=root' \
  --start "$bin --config $work/node.yaml --http-listen 127.0.0.1:18111 --data-dir \$DATA_DIR" \
  --name "tidemark-$wal_sync" --flush 'http://root:root@127.0.0.1:18111/flush' --count "$work/count.sh" "$@"
