#!/bin/bash
# CPU time per byte served for a cached blob: entrepot (sendfile on plain HTTP/1) against
# nginx (sendfile on) serving the very same file, same client (curl), on loopback. CPU time
# (utime + stime of the server's processes, in clock ticks) is steadier than throughput on
# a shared machine: it does not count the time a server waits for a core.
#
#   cargo build --release && benches/cpu-per-byte.sh [rounds]
#
# Needs nginx, docker-registry and curl. Bounded: `rounds` (default 3) × 5 downloads of 200 MiB per server.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
. benches/lib.sh
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
chmod 755 "$work" # nginx's workers run unprivileged

# The blob, filled through entrepot from the registry the way users fill it (a cached blob
# is served only in a repository that holds it), and the same file under nginx's root.
start_registry
mkdir -p "$work/nginx/logs" "$work/www"
head -c $((200 << 20)) /dev/urandom >"$work/www/blob"
chmod 644 "$work/www/blob"
digest=$(push_file "$work/www/blob" any)

NP=$(port)
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  server { listen 127.0.0.1:$NP; root $work/www; }
}
EOF
"$NGINX" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
NGINX_PID=$!
start_entrepot entrepot 'log = "warn"'
ENTREPOT_PID=$epid
NGINX_URL=http://127.0.0.1:$NP/blob
ENTREPOT_URL=http://$addr/v2/bench.local/any/blobs/$digest
wait_up "$NGINX_URL"
wait_up "$ENTREPOT_URL"

ticks() { local t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
measure() { # url pids...
  local url=$1; shift
  local before start
  before=$(ticks "$@")
  start=$(date +%s%N)
  for _ in 1 2 3 4 5; do curl -sf -o /dev/null "$url"; done
  echo "$(($(ticks "$@") - before)) $((($(date +%s%N) - start) / 1000000))"
}

echo "| round | nginx ticks / 1000 MiB | entrepot ticks / 1000 MiB | nginx wall ms | entrepot wall ms | wall ratio |"
echo "|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  read -r nt nw < <(measure "$NGINX_URL" $(pgrep -P "$NGINX_PID"))
  read -r et ew < <(measure "$ENTREPOT_URL" "$ENTREPOT_PID")
  echo "| $r | $nt | $et | $nw | $ew | $(python3 -c "print(f'{$nw/$ew:.2f}×')") |"
done
