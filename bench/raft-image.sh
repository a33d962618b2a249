#!/usr/bin/env bash
# Catch-up from a large region image (issue 5): three Raft nodes (release build) on loopback
# with raft.catch_up_bytes_max 1, a follower SIGKILLed while the leader takes SECONDS
# (default 40) of incompressible writes (random doubles: ~90 MB of segments), then restarted.
# Prints the image's bytes, how long the follower took to hold every point, its peak RSS, and
# what is left in its spool (should be nothing), and the most its data directory held. Usage: bench/raft-image.sh [TIDEMARKD] [SECONDS]
set -u
cd "$(dirname "$0")/.."
if [ -z "${1:-}" ]; then swift build -c release --product tidemarkd >/dev/null; fi
bin=${1:-$PWD/.build/release/tidemarkd}; seconds=${2:-40}
work=$(mktemp -d /tmp/tidemark-raftimage.XXXXXX); trap "rm -rf $work" EXIT
base=$((20000 + RANDOM % 20000))
peers="\"127.0.0.1:$((base+1))\", \"127.0.0.1:$((base+2))\", \"127.0.0.1:$((base+3))\""
declare -A pid
start() { i=$1
  printf 'node_name: n%s\nhttp: {listen: "127.0.0.1:%s"}\ninternal: {listen: "127.0.0.1:%s"}\nmeta_peers: [%s]\ncluster_secret: s\nraft: {catch_up_bytes_max: 1}\nlog_level: notice\n' $i $((base+10+i)) $((base+i)) "$peers" > $work/n$i.yaml
  $bin --config $work/n$i.yaml --data-dir $work/d$i >> $work/log$i 2>&1 & pid[$i]=$!; }
for i in 1 2 3; do start $i; done
leader=
for a in $(seq 1 100); do for i in 1 2 3; do c=$(curl -s -o /dev/null -w "%{http_code}" -u root:root -XPOST "http://127.0.0.1:$((base+10+i))/write?db=big" --data-binary 'w v=1'); [ "$c" = 204 ] && leader=$i && break 2; done; sleep 0.1; done
echo "leader n$leader"
follower=$(( leader % 3 + 1 ))
kill -9 ${pid[$follower]}; echo "killed n$follower"
wrk -t2 -c8 -d${seconds}s -s bench/raft-image-put.lua "http://127.0.0.1:$((base+10+leader))/write?db=big&precision=ms" | grep -E "Requests/sec|Non-2xx"
du -sh $work/d$leader/regions/0/segments
start $follower
t0=$(date +%s.%N); hwm=0; disk=0
q='{"sql":"select count(f0) from root.big.m.d0"}'
want=$(curl -s -u root:root "http://127.0.0.1:$((base+10+leader))/rest/v2/query" -d "$q")
echo "leader: $want"
for a in $(seq 1 600); do
  h=$(awk '/VmHWM/ {print $2}' /proc/${pid[$follower]}/status 2>/dev/null); [ -n "$h" ] && [ "$h" -gt "$hwm" ] && hwm=$h
  d=$(du -sk $work/d$follower 2>/dev/null | cut -f1); [ -n "$d" ] && [ "$d" -gt "$disk" ] && disk=$d
  got=$(curl -s -u root:root "http://127.0.0.1:$((base+10+follower))/rest/v2/query" -d "$q")
  [ "$got" = "$want" ] && break; sleep 0.5
done
t1=$(date +%s.%N)
echo "follower: $got after $(echo "$t1-$t0"|bc) s, peak RSS ${hwm} kB, largest data directory seen (every 0.5 s) ${disk} kB"
du -sh $work/d$follower/regions/0/segments; echo "left in the spool: $(ls -l $work/d$follower/raft/images | tail -n +2)"; grep -h -iE "snapshot|image|error|warn" $work/log* | tail -8
curl -s "http://127.0.0.1:$((base+10+leader))/metrics" | grep -E "snapshot"
curl -s "http://127.0.0.1:$((base+10+follower))/metrics" | grep -E "snapshots_installed"
grep -iE "image|snapshot" $work/log$leader $work/log$follower | tail -5
for i in 1 2 3; do kill ${pid[$i]} 2>/dev/null; done; wait
