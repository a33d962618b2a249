#!/usr/bin/env bash
# Meta group operations per second (issue 29) on a three-member meta group on loopback
# (release build): DATABASES `CREATE DATABASE` statements (default 2000), then WRITES
# writes (default 400) that each bring 100 devices into a new time partition, so each
# allocates 100 (slot, time partition) pairs in one meta entry before it is written.
# CONNS requests in flight (default 16), sent to every node in turn (a member that does not
# lead passes the command on to the leader). Prints operations per second and the CPU the
# three nodes spent per operation, summed (they share this machine's cores).
# TIDEMARKD=/path/to/tidemarkd runs that build.
set -euo pipefail
cd "$(dirname "$0")/.."
databases=${DATABASES:-2000}
writes=${WRITES:-400}
conns=${CONNS:-16}
if [ -z "${TIDEMARKD:-}" ]; then swift build -c release --product tidemarkd >/dev/null; fi
bin=${TIDEMARKD:-$PWD/.build/release/tidemarkd}
work=$(mktemp -d /tmp/tidemark-metabench.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
internal=() http=()
for k in 0 1 2; do internal+=("$(free_port)"); http+=("$(free_port)"); done
peers="\"127.0.0.1:${internal[0]}\", \"127.0.0.1:${internal[1]}\", \"127.0.0.1:${internal[2]}\""
for k in 0 1 2; do
  cat > "$work/n$k.yaml" <<YAML
node_name: n$k
http: {listen: "127.0.0.1:${http[$k]}"}
internal: {listen: "127.0.0.1:${internal[$k]}"}
meta_peers: [$peers]
cluster_secret: bench-secret
log_level: warning
YAML
  "$bin" --config "$work/n$k.yaml" --data-dir "$work/data$k" >"$work/n$k.log" 2>&1 &
  pids+=($!)
done
for k in 0 1 2; do
  for _ in $(seq 1 300); do grep -q "tidemarkd ready" "$work/n$k.log" && break; sleep 0.1; done
  grep -q "tidemarkd ready" "$work/n$k.log" || { echo "node $k did not start:" >&2; tail -5 "$work/n$k.log" >&2; exit 1; }
done
cpu() { local total=0 pid; for pid in "${pids[@]}"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done; echo "$total"; }
ticks=$(getconf CLK_TCK)

# Sends requests CONNS at a time (python3: one persistent connection per worker, so the
# client is not what is measured) and prints how many failed.
# send METHOD PATH OK_STATUS OK_TEXT < bodies (one request body per line; "\n" inside stands for a newline)
cat > "$work/send.py" <<'PY'
import base64, http.client, sys, threading
port, conns, method, path, ok_status, ok_text = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
bodies = [line.rstrip("\n").replace("\\n", "\n").encode() for line in sys.stdin]
auth = {"Authorization": "Basic " + base64.b64encode(b"root:root").decode()}
failed, lock, next_index = [0], threading.Lock(), [0]
def work():
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    while True:
        with lock:
            if next_index[0] >= len(bodies): return
            body = bodies[next_index[0]]; next_index[0] += 1
        client.request(method, path, body=body, headers=auth)
        answer = client.getresponse(); text = answer.read().decode()
        if answer.status != ok_status or ok_text not in text:
            with lock: failed[0] += 1
threads = [threading.Thread(target=work) for _ in range(conns)]
for t in threads: t.start()
for t in threads: t.join()
print(failed[0])
PY
send() { python3 "$work/send.py" "$leader" "$conns" "$1" "$2" "$3" "$4"; }

measure() {  # $1 label, $2 operations, $3 failures, $4 start ns, $5 cpu ticks before
  local end_ns elapsed
  end_ns=$(date +%s%N)
  elapsed=$(( end_ns - $4 ))
  awk -v label="$1" -v ops="$2" -v fails="$3" -v ns="$elapsed" -v cpu=$(( $(cpu) - $5 )) -v hz="$ticks" 'BEGIN {
    printf "%-34s %6d ops in %6.2f s: %8.1f ops/s, %6.2f ms CPU per op (3 nodes summed), failed %d\n",
      label, ops, ns / 1e9, ops / (ns / 1e9), cpu / hz * 1000 / ops, fails }'
}

# Sent to the data group's leader: the statement's engine part runs there (the meta part
# goes on to the meta leader when that is another node).
leader=""
for port in "${http[@]}"; do
  curl -s -u root:root "http://127.0.0.1:$port/cluster" | grep -q '"group":"data-0","role":"leader"' && leader=$port && break
done
[ -n "$leader" ] || { echo "no data leader" >&2; exit 1; }

start=$(date +%s%N); before=$(cpu)
failed=$(seq 1 "$databases" | sed 's/.*/{"sql":"create database root.meta_bench_&"}/' | send POST /rest/v2/nonQuery 200 '"code":200')
measure "CREATE DATABASE" "$databases" "$failed" "$start" "$before"

week=604800000
start=$(date +%s%N); before=$(cpu)
failed=$(for i in $(seq 0 $((writes - 1))); do
  for d in $(seq 0 99); do printf 'alloc,dev=d%d v=%d %d\\n' "$d" "$i" $(( (i + 1) * week )); done; echo
done | send POST "/write?db=alloc&precision=ms" 204 "")
measure "writes allocating 100 partitions" "$writes" "$failed" "$start" "$before"
echo "partition assignments: $((writes * 100)) (100 per write, one meta entry each)"
