#!/usr/bin/env bash
# What the default tag_ttl ("1s": a HEAD upstream about every second per tag) costs a warm
# manifest-by-tag load, measured with wrk against two entrepots in the same run: the shipped
# defaults, and the same with tag_ttl = "5m". Rounds alternate A and B, three each.
#
#   cargo build --release && benches/revalidation.sh
#
# Needs docker-registry, wrk, curl. Everything binds to 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

# The registry with its access log on: the HEADs entrepot sends are counted from it.
reg=127.0.0.1:$(port)
printf 'version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: %s/reg\nhttp:\n  addr: %s\n' "$work" "$reg" >"$work/reg.yml"
docker-registry serve "$work/reg.yml" >"$work/reg.log" 2>&1 &
pids+=($!)
wait_up "http://$reg/v2/"

# A small image: one config blob, one layer, an OCI manifest tagged v1.
push_blob() { echo "$(push_file "$1" bench/app) $(stat -c %s "$1")"; } # file -> "digest size"
echo '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$work/config.json"
head -c 100000 /dev/urandom >"$work/layer.bin"
read -r cd cs < <(push_blob "$work/config.json")
read -r ld ls < <(push_blob "$work/layer.bin")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' "$cd" "$cs" "$ld" "$ls" >"$work/manifest.json"
curl -fs -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "@$work/manifest.json" "http://$reg/v2/bench/app/manifests/v1" >/dev/null

start_entrepot default ""
a=$addr
start_entrepot ttl5m 'tag_ttl = "5m"'
b=$addr
accept='Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'
for addr in "$a" "$b"; do curl -fs -H "$accept" "http://$addr/v2/bench/app/manifests/v1" >/dev/null; done

rps() { wrk -t2 -c32 -d8s -H "$accept" "http://$1/v2/bench/app/manifests/v1" | awk '/Requests\/sec/{print $2}'; }
heads() { grep -c '"HEAD /v2/bench/app/manifests/v1' "$work/reg.log" || true; }
echo "round  default(1s) req/s  tag_ttl=5m req/s  ratio"
ra=(); rb=()
for round in 1 2 3; do
  h0=$(heads); x=$(rps "$a"); h1=$(heads); y=$(rps "$b")
  ra+=("$x"); rb+=("$y")
  printf '%s      %s           %s          %.3f   (upstream HEADs during the default run: %s)\n' "$round" "$x" "$y" "$(echo "$x / $y" | bc -l)" "$((h1 - h0))"
done
ma=$(median "${ra[@]}"); mb=$(median "${rb[@]}")
printf 'median: default %s req/s, tag_ttl=5m %s req/s: %.3f\n' "$ma" "$mb" "$(echo "$ma / $mb" | bc -l)"
