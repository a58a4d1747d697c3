#!/usr/bin/env bash
# Two builds of entrepot against each other on the cold path, rounds alternating which goes
# first, each on a fresh data directory: what benches/cold.sh measures, without its
# reference and at a size that leaves the disk's writeback out of the way (cold.sh writes
# gigabytes, and a round that starts while the kernel writes them back costs more CPU for
# no fault of the build under test).
#
#   benches/ab.sh OLD_BINARY NEW_BINARY [rounds]      # default 4 rounds
#
#   git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release)
#   cargo build --release && benches/ab.sh /tmp/old/target/release/entrepot target/release/entrepot
#
# Per round and build: one cold 256 MiB GET by curl (CPU nanoseconds per byte, wall
# seconds); 8 curls on one cold 256 MiB blob at once (CPU per byte served, wall); 30
# images (3 × 6 MB layers) pulled by benches/pull.py, 4 threads, hashing every byte (wall,
# CPU). CPU is the server's utime + stime from /proc. Needs docker-registry, curl, python3.
# Binds 127.0.0.1 only; stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,12p "$0"; exit 2; }
OLD=$1
NEW=$2
ROUNDS=${3:-4}
ENTREPOT_BIN=$NEW
. benches/lib.sh
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

start_registry
head -c $((256 << 20)) /dev/urandom >"$work/blob"
bytes=$(stat -c %s "$work/blob")
digest=$(push_file "$work/blob" bench/cold)
rm "$work/blob"
python3 benches/pull.py push "$reg" 30 3 6000000
python3 benches/pull.py pull "http://$reg" 30 4 >/dev/null # the registry's page cache

seconds() { echo "scale=3; ($2 - $1) / 1000000000" | bc; }
per_byte() { echo "scale=2; ($2 - $1) * 1000000000 / $hz / $3" | bc; }
url() { echo "http://$addr/v2/bench.local/bench/cold/blobs/$digest"; }

# Each measure sets `res` ("a b"); none runs in a subshell, so that the server's PID
# reaches the exit trap.

# $2 GETs at once of the cold blob through build $1: "ns/byte served wall"
clients() {
  run=$1 start_entrepot ab
  local c0 t0 t1 c1 cp=()
  c0=$(ticks "$epid"); t0=$(date +%s%N)
  for _ in $(seq "$2"); do
    curl -fs -o /dev/null "$(url)" &
    cp+=($!)
  done
  for p in "${cp[@]}"; do wait "$p"; done
  t1=$(date +%s%N); sleep 0.5; c1=$(ticks "$epid")
  stop_entrepot ab
  res="$(per_byte "$c0" "$c1" $((bytes * $2))) $(seconds "$t0" "$t1")"
}
# 30 images: "wall cpu-seconds"
images() {
  run=$1 start_entrepot ab
  local c0 c1 s
  c0=$(ticks "$epid")
  s=$(python3 benches/pull.py pull "http://$addr" 30 4 | cut -d' ' -f1)
  c1=$(ticks "$epid")
  stop_entrepot ab
  res="$s $(echo "scale=2; ($c1 - $c0) / $hz" | bc)"
}

echo "| round | build | one GET ns/B | s | herd of 8 ns/B served | s | 30 images s | CPU s |"
echo "|---|---|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  order=(old new)
  [ $((r % 2)) -eq 0 ] && order=(new old)
  for which in "${order[@]}"; do
    if [ "$which" = old ]; then b=$OLD; else b=$NEW; fi
    clients "$b" 1
    read -r o1 o2 <<<"$res"
    clients "$b" 8
    read -r h1 h2 <<<"$res"
    images "$b"
    read -r i1 i2 <<<"$res"
    echo "| $r | $which | $o1 | $o2 | $h1 | $h2 | $i1 | $i2 |"
  done
done
