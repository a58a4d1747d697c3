# Shared by the bench scripts (sourced, not run): the binary under test, a work directory
# removed on exit with every process started through `started`, and small helpers.
# Binds 127.0.0.1 only.

bin=${ENTREPOT_BIN:-target/release/entrepot}
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# A free loopback port.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits (10 s at most) until the URL answers.
wait_up() { for _ in $(seq 1 100); do curl -fs -o /dev/null "$1" && return; sleep 0.1; done; echo "$1 never came up" >&2; exit 1; }
median() { printf '%s\n' "$@" | sort -g | sed -n "$(( ($# + 1) / 2 ))p"; }

# Starts Debian's docker-registry (CNCF distribution) on a free port, its access log off;
# sets `reg` (host:port) and `reg_pid`. Not called as $(...): the PID must reach the trap.
start_registry() {
  reg=127.0.0.1:$(port)
  printf 'version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s/reg\nhttp:\n  addr: %s\n' "$work" "$reg" >"$work/reg.yml"
  docker-registry serve "$work/reg.yml" >"$work/reg.log" 2>&1 &
  reg_pid=$!
  pids+=("$reg_pid")
  wait_up "http://$reg/v2/"
}

# Pushes a file as a blob of repository $2; prints its digest.
push_file() {
  local digest loc
  digest="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
  loc=$(curl -fsi -X POST "http://$reg/v2/$2/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
  case "$loc" in http*) ;; *) loc="http://$reg$loc" ;; esac
  curl -fs -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$1" "$loc&digest=$digest" >/dev/null
  echo "$digest"
}

# Starts an entrepot named $1 on a fresh data directory ($work/data-$1) with one upstream,
# "bench.local", in front of the registry; $2: settings before it (top-level keys), $3:
# tables after it. Runs $run if set, else $bin. Sets `addr` and `epid`. Not called as
# $(...): a subshell's PID would never reach the exit trap.
start_entrepot() {
  addr=127.0.0.1:$(port)
  printf 'listen = "%s"\ndata_dir = "%s/data-%s"\n%s\n[[upstream]]\nname = "bench.local"\nurl = "http://%s"\n%s\n' \
    "$addr" "$work" "$1" "${2:-}" "$reg" "${3:-}" >"$work/$1.toml"
  "${run:-$bin}" serve --config "$work/$1.toml" 2>"$work/$1.log" &
  epid=$!
  pids+=("$epid")
  wait_up "http://$addr/v2/"
}
# Stops the entrepot started last, named $1, and removes its data.
stop_entrepot() { kill "$epid"; wait "$epid" 2>/dev/null || true; rm -rf "$work/data-$1"; }
