#!/usr/bin/env bash
# Scale-out, measured (docs/scale-out.md), two parts in one run:
#
# 1. The shared tier on one Garage node: a blob warm in the tier but cold on a node, served
#    by that node (curl through an entrepot whose disk is empty), against the same blob from
#    the node's local tier (the next GET), against Garage's own GET of the object (curl
#    --aws-sigv4). Medians of the rounds, as ratios of throughput to Garage's.
# 2. Fetches per client request: three clients pull the same cold images at once (a client
#    hashing every byte, benches/pull.py), through one entrepot, then each through its own
#    node of a three-node cluster; upstream requests counted by the nodes' metrics.
#
#   cargo build --release && benches/scale-out.sh [MiB] [rounds] [images]
#                                         # defaults: 256 MiB, 3 rounds, 30 images
#
# Needs docker-registry, garage, curl (with --aws-sigv4), python3. Binds 127.0.0.1 only;
# stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-256}
ROUNDS=${2:-3}
IMAGES=${3:-30}
. benches/lib.sh

# --- the upstream, with one random blob
start_registry
head -c $((MIB << 20)) /dev/urandom >"$work/blob"
bytes=$(stat -c %s "$work/blob")
hex=$(push_file "$work/blob" bench/shared | cut -d: -f2)
rm "$work/blob"

# --- one Garage node, a bucket and a key
s3=127.0.0.1:$(port)
mkdir -p "$work/garage"
cat >"$work/garage.toml" <<EOF
metadata_dir = "$work/garage/meta"
data_dir = "$work/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$(port)"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "$s3"
EOF
garage -c "$work/garage.toml" server >"$work/garage.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://$s3/" && break; sleep 0.1; done
g() { garage -c "$work/garage.toml" "$@"; }
g layout assign -z dc1 -c 10G "$(g node id -q | cut -d@ -f1)" >/dev/null
g layout apply --version 1 >/dev/null
keyinfo=$(g key create bench)
key_id=$(awk -F': +' '/Key ID/{print $2}' <<<"$keyinfo")
key_secret=$(awk -F': +' '/Secret key/{print $2}' <<<"$keyinfo")
g bucket create entrepot >/dev/null
g bucket allow --read --write --owner entrepot --key bench >/dev/null
object="http://$s3/entrepot/blobs/sha256/$hex"
# curl before 8.x does not send the payload hash S3 wants; a GET has an empty payload.
empty_sha=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
garage_get() { curl -fs --aws-sigv4 "aws:amz:garage:s3" --user "$key_id:$key_secret" -H "x-amz-content-sha256: $empty_sha" "$@"; }

# An entrepot named $1 with [storage] on the Garage bucket (see start_entrepot).
start_node() {
  start_entrepot "$1" "" "$(printf '[storage]\ntype = "s3"\nendpoint = "http://%s"\nbucket = "entrepot"\nregion = "garage"\naccess_key_id = "%s"\nsecret_access_key = "%s"' "$s3" "$key_id" "$key_secret")"
}

timed_get() {
  local t0 t1 got
  t0=$(date +%s%N)
  got=$(curl -fs -o /dev/null -w '%{size_download}' "$@")
  t1=$(date +%s%N)
  [ "$got" = "$bytes" ] || { echo "$got of $bytes bytes from $*" >&2; exit 1; }
  echo "scale=3; ($t1 - $t0) / 1000000000" | bc
}

# The first node fetches the blob from the upstream and uploads it.
start_node seed
curl -fs -o /dev/null "http://$addr/v2/bench.local/bench/shared/blobs/sha256:$hex"
for _ in $(seq 1 600); do garage_get -I -o /dev/null "$object" && break; sleep 0.1; done
garage_get -I -o /dev/null "$object" || { echo "never uploaded" >&2; tail -5 "$work/seed.log" >&2; curl -s -i --aws-sigv4 "aws:amz:garage:s3" --user "$key_id:$key_secret" "$object" | tail -3 >&2; exit 1; }
stop_entrepot seed

echo "one $MIB MiB blob: Garage's own GET vs an entrepot with an empty disk (from the tier) vs its local tier"
echo "| round | Garage s | from the tier s | local tier s | tier / Garage | local / Garage |"
echo "|---|---|---|---|---|---|"
tier=(); local_=()
for r in $(seq "$ROUNDS"); do
  garage_s=$(timed_get --aws-sigv4 "aws:amz:garage:s3" --user "$key_id:$key_secret" -H "x-amz-content-sha256: $empty_sha" "$object")
  start_node "n$r"
  url="http://$addr/v2/bench.local/bench/shared/blobs/sha256:$hex"
  tier_s=$(timed_get "$url")
  sleep 0.5 # the commit finishes after the last byte is served
  local_s=$(timed_get "$url")
  stop_entrepot "n$r"
  t=$(echo "scale=3; $garage_s / $tier_s" | bc); l=$(echo "scale=3; $garage_s / $local_s" | bc)
  tier+=("$t"); local_+=("$l")
  echo "| $r | $garage_s | $tier_s | $local_s | ${t}× | ${l}× |"
done
echo "median throughput against Garage's GET: from the tier $(median "${tier[@]}")×, local tier $(median "${local_[@]}")×"

[ "$IMAGES" -gt 0 ] || exit 0
python3 benches/pull.py push "$reg" "$IMAGES" 3 2000000
# Sums entrepot_upstream_requests_total for the registry over the nodes given.
upstream_requests() {
  for a in "$@"; do curl -fs "http://$a/metrics"; done |
    awk '/^entrepot_upstream_requests_total\{upstream="bench.local",/{s+=$NF} END{print s+0}'
}
# Three clients pull every image at once, client i through node i % (number of nodes).
pull_three() {
  local nodes=("$@") i clients=()
  for i in 0 1 2; do
    python3 benches/pull.py pull "http://${nodes[$((i % ${#nodes[@]}))]}" "$IMAGES" 2 >/dev/null &
    clients+=($!)
  done
  wait "${clients[@]}"
}
echo
echo "$IMAGES cold images (3 layers of 2 MB each), three clients at once: upstream requests"
echo "| setup | upstream requests | per image |"
echo "|---|---|---|"
start_node single
single=$addr
pull_three "$single"
n=$(upstream_requests "$single")
echo "| one node, three clients | $n | $(echo "scale=2; $n / $IMAGES" | bc) |"
stop_entrepot single
# A three-node cluster, no shared tier: the fetch is shared through the owners.
addrs=(); cpids=()
for i in 0 1 2; do addrs+=("127.0.0.1:$(port)"); done
peers=$(printf '"http://%s", ' "${addrs[@]}"); peers="[${peers%, }]"
for i in 0 1 2; do
  printf 'listen = "%s"\ndata_dir = "%s/data-c%s"\n[[upstream]]\nname = "bench.local"\nurl = "http://%s"\n[cluster]\nself = "http://%s"\npeers = %s\nsecret = "bench-cluster-secret-0123456789"\n' \
    "${addrs[$i]}" "$work" "$i" "$reg" "${addrs[$i]}" "$peers" >"$work/c$i.toml"
  "$bin" serve --config "$work/c$i.toml" 2>"$work/c$i.log" &
  cpids+=($!); pids+=($!)
done
for a in "${addrs[@]}"; do wait_up "http://$a/v2/"; done
pull_three "${addrs[@]}"
n=$(upstream_requests "${addrs[@]}")
echo "| three nodes, a client on each | $n | $(echo "scale=2; $n / $IMAGES" | bc) |"
