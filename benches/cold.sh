#!/usr/bin/env bash
# The cold path, as a user at an edge site times it: one blob that is not cached yet, pulled
# with curl through a fresh entrepot (its default settings: only addresses and paths set),
# against the same blob pulled straight from the upstream (docker-registry), same run.
# Reports wall time both ways, their ratio, and entrepot's CPU time per byte of the fill
# (utime + stime from /proc, which does not count time spent waiting for a core).
#
#   cargo build --release && benches/cold.sh [MiB] [rounds] [images] [herd]
#                                   # defaults: 512 MiB, 3 rounds, 30 images, a herd of 8
#
# Then a herd: that many clients (curl) asking a fresh entrepot for the same cold blob at
# once (one fill, followed by all), against the same clients straight from the upstream:
# wall time both ways, and entrepot's CPU per byte served.
# Then a cold pull of whole images (3 layers of 6 MB each, 30 images: 540 MB), by a client
# that hashes every byte as a runtime does (benches/pull.py, 4 threads), straight from the
# upstream against through a fresh entrepot: the first pull at an edge site.
#
# Needs docker-registry and curl. Binds 127.0.0.1 only; stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-512}
ROUNDS=${2:-3}
IMAGES=${3:-30}
HERD=${4:-8}
. benches/lib.sh
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

start_registry
head -c $((MIB << 20)) /dev/urandom >"$work/blob"
bytes=$(stat -c %s "$work/blob")
digest=$(push_file "$work/blob" bench/cold)
rm "$work/blob"
direct="http://$reg/v2/bench/cold/blobs/$digest"
curl -fs -o /dev/null "$direct" # the registry's page cache is warm for both sides

# wall seconds of $2 concurrent curl GETs of $1 to /dev/null (as fast a client as there
# is), checking that each got every byte; that they are the right bytes is the tests'
# business. Not a subshell: its clients are waited for here.
timed_gets() {
  local t0 t1 out=() cp=()
  t0=$(date +%s%N)
  for i in $(seq "$2"); do
    out+=("$work/got-$i")
    curl -fs -o /dev/null -w '%{size_download}' "$1" >"$work/got-$i" &
    cp+=($!)
  done
  for p in "${cp[@]}"; do wait "$p" || { echo "a GET of $1 failed" >&2; exit 1; }; done
  t1=$(date +%s%N)
  for f in "${out[@]}"; do
    [ "$(cat "$f")" = "$bytes" ] || { echo "$(cat "$f") of $bytes bytes from $1" >&2; exit 1; }
  done
  secs=$(echo "scale=3; ($t1 - $t0) / 1000000000" | bc)
}

# $1 clients on the cold blob, straight from the upstream and through a fresh entrepot, each
# round: their wall times, the ratio, entrepot's CPU and its CPU per byte served.
clients_on_the_blob() {
  local n=$1 r up_s ep_s t0 t1 ratio ns ratios=() nspb=()
  echo "| round | upstream s | entrepot s | ratio (upstream time / entrepot time) | entrepot CPU s | ns per byte served |"
  echo "|---|---|---|---|---|---|"
  for r in $(seq "$ROUNDS"); do
    timed_gets "$direct" "$n"
    up_s=$secs
    start_entrepot "c$n-$r"
    t0=$(ticks "$epid")
    timed_gets "http://$addr/v2/bench.local/bench/cold/blobs/$digest" "$n"
    ep_s=$secs
    sleep 0.5 # the commit (fsync, rename) finishes after the last byte is served
    t1=$(ticks "$epid")
    stop_entrepot "c$n-$r"
    ratio=$(echo "scale=3; $up_s / $ep_s" | bc)
    ns=$(echo "scale=3; ($t1 - $t0) * 1000000000 / $hz / ($bytes * $n)" | bc)
    ratios+=("$ratio"); nspb+=("$ns")
    echo "| $r | $up_s | $ep_s | ${ratio}× | $(echo "scale=2; ($t1 - $t0) / $hz" | bc) | $ns |"
  done
  echo "median: $(median "${ratios[@]}")× the upstream's speed; $(median "${nspb[@]}") ns of entrepot CPU per byte served"
}

echo "cold GET of $MIB MiB: straight from docker-registry vs through a fresh entrepot (default config)"
clients_on_the_blob 1
if [ "$HERD" -gt 0 ]; then
  echo
  echo "a herd of $HERD clients on the same cold $MIB MiB blob: straight from docker-registry vs through a fresh entrepot"
  clients_on_the_blob "$HERD"
fi

[ "$IMAGES" -gt 0 ] || exit 0
python3 benches/pull.py push "$reg" "$IMAGES" 3 6000000
python3 benches/pull.py pull "http://$reg" "$IMAGES" 4 >/dev/null # the registry's page cache
echo
echo "cold pull of $IMAGES images (3 × 6 MB layers each), a client hashing every byte, 4 threads"
echo "| round | upstream s | entrepot s | slowdown (entrepot / upstream) | entrepot CPU s |"
echo "|---|---|---|---|---|"
slow=()
for r in $(seq "$ROUNDS"); do
  read -r up_s _ < <(python3 benches/pull.py pull "http://$reg" "$IMAGES" 4)
  start_entrepot "p$r"
  t0=$(ticks "$epid")
  read -r ep_s _ < <(python3 benches/pull.py pull "http://$addr" "$IMAGES" 4)
  t1=$(ticks "$epid")
  stop_entrepot "p$r"
  s=$(echo "scale=3; $ep_s / $up_s" | bc)
  slow+=("$s")
  echo "| $r | $up_s | $ep_s | ${s}× | $(echo "scale=2; ($t1 - $t0) / $hz" | bc) |"
done
echo "median: a cold pull through entrepot takes $(median "${slow[@]}")× the time of one straight from the upstream"
