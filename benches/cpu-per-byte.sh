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
ROUNDS=${1:-3}
BIN=${ENTREPOT_BIN:-$(dirname "$0")/../target/release/entrepot}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
DIR=$(mktemp -d)
chmod 755 "$DIR" # nginx's workers run unprivileged
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
head -c $((200 << 20)) /dev/urandom >"$DIR/blob"
HEX=$(sha256sum "$DIR/blob" | cut -c1-64)
mkdir -p "$DIR/nginx/logs" "$DIR/www"
chmod 644 "$DIR/blob"
mv "$DIR/blob" "$DIR/www/blob"

# The upstream entrepot fills the blob from (a cached blob is served only in a repository
# that holds it, so it is filled the way users fill it).
RP=$(port)
printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s/reg\nhttp:\n  addr: 127.0.0.1:%s\n' "$DIR" "$RP" >"$DIR/reg.yml"
docker-registry serve "$DIR/reg.yml" >/dev/null 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$RP/v2/" && break; sleep 0.1; done
LOC=$(curl -fsi -X POST "http://127.0.0.1:$RP/v2/any/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
case "$LOC" in http*) ;; *) LOC="http://127.0.0.1:$RP$LOC" ;; esac
curl -fs -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$DIR/www/blob" "$LOC&digest=sha256:$HEX" >/dev/null

NP=$(port)
EP=$(port)
cat >"$DIR/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $DIR/nginx/nginx.pid;
error_log $DIR/nginx/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path $DIR/nginx; proxy_temp_path $DIR/nginx; fastcgi_temp_path $DIR/nginx;
  uwsgi_temp_path $DIR/nginx; scgi_temp_path $DIR/nginx;
  server { listen 127.0.0.1:$NP; root $DIR/www; }
}
EOF
cat >"$DIR/entrepot.toml" <<EOF
listen = "127.0.0.1:$EP"
data_dir = "$DIR/data"
log = "warn"
[[upstream]]
name = "bench.local"
url = "http://127.0.0.1:$RP"
EOF
"$NGINX" -c "$DIR/nginx/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
NGINX_PID=$!
"$BIN" serve --config "$DIR/entrepot.toml" &
PIDS+=($!)
ENTREPOT_PID=$!
NGINX_URL=http://127.0.0.1:$NP/blob
ENTREPOT_URL=http://127.0.0.1:$EP/v2/bench.local/any/blobs/sha256:$HEX
up=no
for _ in $(seq 100); do
  if curl -sf -o /dev/null "$NGINX_URL" && curl -sf -o /dev/null "$ENTREPOT_URL"; then up=yes; break; fi
  sleep 0.1
done
[ $up = yes ] || { echo "nginx or entrepot did not serve the blob" >&2; exit 1; }

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
