#!/usr/bin/env bash
# wrk on GET /ping against tidemarkd (release build) and, in the same run, against nginx on
# loopback serving a 4-byte body; prints both and the ratio. Goal: tidemarkd >= 0.5 of nginx.
# Usage: bench/http-ping.sh [wrk-duration-seconds]   (installs wrk and nginx-light when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-10}
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
for tool in wrk nginx; do
  command -v $tool >/dev/null 2>&1 || command -v /usr/sbin/$tool >/dev/null 2>&1 || {
    echo "installing $tool"; $SUDO apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q $([ $tool = nginx ] && echo nginx-light || echo wrk) >/dev/null; }
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[ -x .build/release/tidemarkd ] || swift build -c release --product tidemarkd

work=$(mktemp -d /tmp/tidemark-ping.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# tidemarkd on a port the system picks; its ready line names it.
.build/release/tidemarkd --http-listen 127.0.0.1:0 --data-dir "$work/data" --log-level warning > "$work/tidemarkd.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q "ready http=" "$work/tidemarkd.out" && break; sleep 0.1; done
tm_port=$(sed -n 's/.*ready http=127.0.0.1:\([0-9]*\).*/\1/p' "$work/tidemarkd.out")
[ -n "$tm_port" ] || { cat "$work/tidemarkd.out"; echo "tidemarkd did not start"; exit 1; }

ng_port=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$ng_port; location = /ping { default_type text/plain; return 200 "pong"; } }
}
CONF
"$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$ng_port/ping" >/dev/null 2>&1 && break; sleep 0.1; done

rps() { wrk -t2 -c64 -d"${duration}s" --latency "$1" | tee -a "$work/wrk.log" | awk '/Requests\/sec/ {print $2}'; }
p99() { awk '/ 99% / {print $2}' "$work/wrk.log" | tail -1; }
tm_rps=$(rps "http://127.0.0.1:$tm_port/ping"); tm_p99=$(p99)
ng_rps=$(rps "http://127.0.0.1:$ng_port/ping"); ng_p99=$(p99)
echo "wrk -t2 -c64 -d${duration}s GET /ping on loopback ($(nproc) cores)"
printf "%-10s %12s %10s\n" server "requests/s" "p99"
printf "%-10s %12s %10s\n" tidemarkd "$tm_rps" "$tm_p99"
printf "%-10s %12s %10s\n" nginx "$ng_rps" "$ng_p99"
python3 -c "print('ratio tidemarkd/nginx: %.2f (goal >= 0.50)' % ($tm_rps / $ng_rps))"
