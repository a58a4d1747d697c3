#!/usr/bin/env bash
# entrepot as users measure it: wrk (the Debian package) against entrepot running the
# shipped config.toml (only listen, data_dir and docker.io's url changed: access log on,
# log = "info", tag_ttl = "1s", its stderr going to a file), beside nginx serving the same
# bytes from static files with sendfile, its access log off and on (combined format to a
# file). Everything in one run, rounds alternating, medians reported as ratios.
#
#   cargo build --release && benches/wrk.sh [rounds] [seconds] [seconds_for_1000]
#                                          # defaults: 3 rounds, 8 s each, 30 s at 1,000
#
# Measures, per round: manifest by tag and by digest at 32 connections (against nginx,
# and against distribution's proxy mode on its defaults); the same and a
# mixed load (hot manifests and a warm 1 MiB blob, with 4 cold 32 MiB blobs pulled through
# entrepot meanwhile) at 1,000 connections, with p50/p99/p99.9; one fast client (curl)
# reading a warm 512 MiB blob, entrepot vs nginx; entrepot's peak RSS and log lines
# dropped. Needs docker-registry, nginx, wrk, curl. Binds 127.0.0.1 only; every load
# is bounded in time; stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-8}
SECS_1000=${3:-30}
. benches/lib.sh
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
lua=$PWD/benches/wrk.lua
chmod 755 "$work" # nginx's workers run unprivileged
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }

# --- the upstream: an image bench/app:v1, a warm 1 MiB blob, a 512 MiB blob, 4 cold blobs
start_registry
push_blob() { echo "$(push_file "$1" bench/app) $(stat -c %s "$1")"; } # file -> "digest size"
mkdir -p "$work/www"
echo '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$work/config.json"
head -c $((1 << 20)) /dev/urandom >"$work/www/warm.bin"
head -c $((512 << 20)) /dev/urandom >"$work/www/big.bin"
read -r cd cs < <(push_blob "$work/config.json")
read -r wd ws < <(push_blob "$work/www/warm.bin")
read -r bd _ < <(push_blob "$work/www/big.bin")
cold=()
for i in 1 2 3 4; do
  head -c $((32 << 20)) /dev/urandom >"$work/cold.bin"
  read -r d _ < <(push_blob "$work/cold.bin")
  cold+=("$d")
done
rm "$work/cold.bin"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' "$cd" "$cs" "$wd" "$ws" >"$work/www/manifest.json"
md="sha256:$(sha256sum "$work/www/manifest.json" | cut -d' ' -f1)"
curl -fs -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$work/www/manifest.json" "http://$reg/v2/bench/app/manifests/v1" >/dev/null
chmod 644 "$work"/www/*

# --- entrepot on the shipped config.toml
ep=127.0.0.1:$(port)
sed -e "s|^listen = .*|listen = \"$ep\"|" -e "s|^data_dir = .*|data_dir = \"$work/data\"|" \
  -e "s|^url = \"https://registry-1.docker.io\"|url = \"http://$reg\"|" config.toml >"$work/entrepot.toml"
"$bin" serve --config "$work/entrepot.toml" 2>"$work/entrepot.log" &
pids+=($!)
epid=$!
wait_up "http://$ep/v2/"

# --- an anchor on its own defaults: distribution's proxy mode (docker-registry with
# proxy.remoteurl; its access log on, as shipped) in front of the same upstream
dp=127.0.0.1:$(port)
printf 'version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s/proxy\nhttp:\n  addr: %s\nproxy:\n  remoteurl: http://%s\n' "$work" "$dp" "$reg" >"$work/proxy.yml"
docker-registry serve "$work/proxy.yml" >"$work/proxy.log" 2>&1 &
pids+=($!)
wait_up "http://$dp/v2/"

# --- nginx, close to Debian's stock settings (workers = cores, sendfile on), keep-alive
# without a request limit so that it is not penalized by reconnections; one server with
# the access log off, one with it on.
np_off=$(port)
np_on=$(port)
mkdir -p "$work/nginx/logs"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 4096; }
http {
  sendfile on; tcp_nopush on; keepalive_requests 1000000;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx; fastcgi_temp_path $work/nginx;
  uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  types { application/vnd.oci.image.manifest.v1+json json; application/octet-stream bin; }
  server { listen 127.0.0.1:$np_off; root $work/www; access_log off; }
  server { listen 127.0.0.1:$np_on; root $work/www; access_log $work/nginx/logs/access.log combined; }
}
EOF
"$NGINX" -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_up "http://127.0.0.1:$np_off/manifest.json"

accept='Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'
by_tag=/v2/bench/app/manifests/v1
by_digest=/v2/bench/app/manifests/$md
warm=/v2/bench/app/blobs/$wd
big=/v2/bench/app/blobs/$bd
for p in "$by_tag" "$by_digest" "$warm" "$big"; do curl -fs -o /dev/null -H "$accept" "http://$ep$p"; done
for p in "$by_tag" "$by_digest"; do curl -fs -o /dev/null -H "$accept" "http://$dp$p"; done

# wrk URL connections seconds [mix] -> "requests req/s p50 p99 p999 errors"
load() {
  WRK_MIX=${4:-} wrk -t2 -c"$2" -d"$3"s --timeout 10s -s "$lua" -H "$accept" "$1" | awk '/^RESULT/{print $2, $3, $4, $5, $6, $7}'
}
E=http://$ep
N0=http://127.0.0.1:$np_off
N1=http://127.0.0.1:$np_on

echo "## 32 connections, $SECS s, $ROUNDS rounds (req/s)"
echo "| round | what | entrepot | nginx log off | nginx log on | vs off | vs on |"
echo "|---|---|---|---|---|---|---|"
declare -A r
for round in $(seq "$ROUNDS"); do
  for what in tag digest; do
    if [ $what = tag ]; then path=$by_tag; else path=$by_digest; fi
    read -r _ e _ < <(load "$E$path" 32 "$SECS")
    read -r _ n0 _ < <(load "$N0/manifest.json" 32 "$SECS")
    read -r _ n1 _ < <(load "$N1/manifest.json" 32 "$SECS")
    r[$what-off]+="$(ratio "$e" "$n0") "
    r[$what-on]+="$(ratio "$e" "$n1") "
    echo "| $round | manifest by $what | $e | $n0 | $n1 | $(ratio "$e" "$n0")× | $(ratio "$e" "$n1")× |"
  done
done
for what in tag digest; do
  # shellcheck disable=SC2086
  echo "median, manifest by $what: $(median ${r[$what-off]})× nginx (log off), $(median ${r[$what-on]})× nginx (log on)"
done

echo
echo "## 32 connections, $SECS s: entrepot against distribution's proxy mode, both on their defaults (req/s)"
echo "| round | what | entrepot | distribution proxy | ratio |"
echo "|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  for what in tag digest; do
    if [ $what = tag ]; then path=$by_tag; else path=$by_digest; fi
    read -r _ e _ < <(load "$E$path" 32 "$SECS")
    read -r _ d _ < <(load "http://$dp$path" 32 "$SECS")
    echo "| $round | manifest by $what | $e | $d | $(ratio "$e" "$d")× |"
  done
done

echo
echo "## one client (curl), warm 512 MiB blob, 5 rounds (seconds)"
echo "| round | entrepot | nginx | ratio (nginx time / entrepot time) |"
echo "|---|---|---|---|"
blob_ratios=()
timed() { local t0 t1; t0=$(date +%s%N); curl -fs -o /dev/null "$1"; t1=$(date +%s%N); echo "scale=3; ($t1 - $t0) / 1000000000" | bc; }
for round in 1 2 3 4 5; do
  te=$(timed "$E$big")
  tn=$(timed "$N0/big.bin")
  blob_ratios+=("$(ratio "$tn" "$te")")
  echo "| $round | $te | $tn | $(ratio "$tn" "$te")× |"
done
echo "median: $(median "${blob_ratios[@]}")× nginx"

echo
echo "## 1,000 connections, $SECS_1000 s (latency in ms)"
echo "| what | server | req/s | p50 | p99 | p99.9 | errors |"
echo "|---|---|---|---|---|---|---|"
row() { # what server result
  read -r _ rps p50 p99 p999 err <<<"$3"
  printf '| %s | %s | %s | %.2f | %.2f | %.2f | %s |\n' "$1" "$2" "$rps" "$(echo "$p50/1000" | bc -l)" "$(echo "$p99/1000" | bc -l)" "$(echo "$p999/1000" | bc -l)" "$err"
}
row "manifest by tag" entrepot "$(load "$E$by_tag" 1000 "$SECS_1000")"
row "manifest (static file)" "nginx, log off" "$(load "$N0/manifest.json" 1000 "$SECS_1000")"
# The mix: 8 manifests by tag, 1 by digest, 1 warm 1 MiB blob in 10; 4 cold blobs
# pulled through entrepot at the start of its run.
mix_e="$(printf "$by_tag %.0s" 1 2 3 4 5 6 7 8)$by_digest $warm"
mix_n="$(printf "/manifest.json %.0s" 1 2 3 4 5 6 7 8 9)/warm.bin"
cold_pids=()
for d in "${cold[@]}"; do
  curl -fs -o /dev/null "$E/v2/bench/app/blobs/$d" &
  cold_pids+=($!)
done
row "mixed + 4 cold blobs" entrepot "$(load "$E$by_tag" 1000 "$SECS_1000" "$mix_e")"
for p in "${cold_pids[@]}"; do wait "$p" || echo "a cold blob pull failed" >&2; done
row "mixed (no cold)" "nginx, log off" "$(load "$N0/manifest.json" 1000 "$SECS_1000" "$mix_n")"

echo
echo "entrepot peak RSS: $(awk '/VmHWM/{print $2, $3}' "/proc/$epid/status"); log: $(wc -l <"$work/entrepot.log") lines, $(du -h "$work/entrepot.log" | cut -f1); lines dropped: $(curl -fs "$E/metrics" | awk '/^entrepot_log_lines_dropped_total/{print $2}')"
