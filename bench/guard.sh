#!/usr/bin/env bash
# Benchmark ccci-guard against timeout(1) and tini, in the same run on the same machine.
#
#   (a) whole process: `ccci-guard -q -- true` vs `timeout 60 true` vs `tini -s -- true`
#       (hyperfine, no shell)
#   (b) peak RSS: GNU time's maximum resident set size of each of the three, and the
#       guard's own high-water mark (VmHWM) read from /proc while it supervises
#   (c) the final sweep costs O(descendants): (a) for ccci-guard again with 2000 unrelated
#       processes on the host — a /proc scan would slow down, a walk of the guard's own
#       children files does not; strace counts the files it opens under /proc
#   (d) (a) and (b) again for the guard linked dynamically (a plain cargo build)
#
# The guard measured in (a)-(c) is built as it is installed: static-pie on glibc.
# Goals (issue "ccci-guard"): (a) <= 1.3x timeout(1); (b) peak RSS <= 2 MiB.
# Not a test: numbers go to docs/performance.md.
#
#   bash bench/guard.sh            # RUNS=1000 per command by default
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1000}

need() { # command, Debian package
  command -v "$1" >/dev/null && return
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need hyperfine hyperfine
need tini tini
need strace strace
[ -x /usr/bin/time ] || need /usr/bin/time time
# The guard as it is installed (README "Install", nix/package.nix): static-pie on glibc.
# --target keeps the proc macros dynamic; it puts the build under target/<triple>/.
triple=$(rustc --print host-tuple)
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --bin ccci-guard \
  --target "$triple" >/dev/null 2>&1
GUARD=$PWD/target/$triple/release/ccci-guard
TIMEOUT=$(command -v timeout)
TINI=$(command -v tini)
work=$(mktemp -d)
crowd=
cleanup() { [ -n "$crowd" ] && kill -- -"$crowd" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# The guard's own high-water mark while it supervises a command (blocked on a fifo).
hwm_while_supervising() {
  rm -f "$work/go"; mkfifo "$work/go"
  "$1" -q -- sh -c "read x < '$work/go'" &
  local guard=$!
  until grep -q . "/proc/$guard/task/$guard/children" 2>/dev/null; do sleep 0.001; done
  awk '/VmHWM/ {print $2}' "/proc/$guard/status"
  echo go > "$work/go"
  wait "$guard"
}

echo "== machine: $(nproc) cores, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') =="
echo "== (a) whole process, $RUNS runs each =="
hyperfine -N --warmup 50 --runs "$RUNS" --export-json "$work/a.json" \
  "$GUARD -q -- true" "$TIMEOUT 60 true" "$TINI -s -- true" >/dev/null
python3 - "$work/a.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
for x in r:
    name = x['command'].split()[0].rsplit('/', 1)[-1]
    print(f"  {name:<11} mean {x['mean']*1e3:.3f} ms  median {x['median']*1e3:.3f} ms  ± {x['stddev']*1e3:.3f}")
g, t, i = r
print(f"  ratio ccci-guard / timeout(1): mean {g['mean']/t['mean']:.2f}x  median {g['median']/t['median']:.2f}x  (goal <= 1.3x)")
print(f"  ratio ccci-guard / tini -s:    mean {g['mean']/i['mean']:.2f}x  median {g['median']/i['median']:.2f}x")
PY

echo "== (b) peak RSS (GNU time %M: the tool or its command, whichever is larger) =="
for cmd in "$GUARD -q -- true" "$TIMEOUT 60 true" "$TINI -s -- true"; do
  kib=$(/usr/bin/time -f %M $cmd 2>&1 >/dev/null | tail -1)
  printf '  %-11s %5d KiB\n' "$(basename "${cmd%% *}")" "$kib"
done
kib=$(/usr/bin/time -f %M true 2>&1 >/dev/null | tail -1)
printf '  %-11s %5d KiB   (the command alone)\n' true "$kib"
echo "  ccci-guard's own VmHWM while supervising: $(hwm_while_supervising "$GUARD") KiB   (goal <= 2048 KiB)"

echo "== (c) the same with 2000 unrelated processes on the host =="
before=$(ls -d /proc/[0-9]* 2>/dev/null | wc -l)
setsid sh -c 'i=0; while [ $i -lt 2000 ]; do sleep 600 & i=$((i+1)); done; wait' </dev/null >/dev/null 2>&1 &
crowd=$!
until [ "$(ls -d /proc/[0-9]* 2>/dev/null | wc -l)" -ge $((before + 2000)) ]; do sleep 0.05; done
echo "  processes on the host: $(ls -d /proc/[0-9]* 2>/dev/null | wc -l)"
hyperfine -N --warmup 20 --runs "$RUNS" --export-json "$work/c.json" \
  "$GUARD -q -- true" "$TIMEOUT 60 true" >/dev/null
python3 - "$work/a.json" "$work/c.json" <<'PY'
import json, sys
a = json.load(open(sys.argv[1]))["results"]
c = json.load(open(sys.argv[2]))["results"]
for x, base in zip(c, a):
    name = x['command'].split()[0].rsplit('/', 1)[-1]
    print(f"  {name:<11} mean {x['mean']*1e3:.3f} ms  median {x['median']*1e3:.3f} ms  ({x['median']/base['median']:.2f}x its median in (a))")
print(f"  ratio ccci-guard / timeout(1): median {c[0]['median']/c[1]['median']:.2f}x  (a host-wide /proc scan would grow this with the crowd)")
PY
# The direct proof: what the guard opens under /proc does not depend on the host.
opens=$(strace -f -e trace=openat,open "$GUARD" -q -- true 2>&1 | grep -c '"/proc/' || true)
echo "  files under /proc the guard opens for 'true' with $(ls -d /proc/[0-9]* 2>/dev/null | wc -l) processes on the host: $opens"

# (d) the same guard linked dynamically (a plain `cargo build --release`), for comparison.
echo "== (d) dynamically linked build =="
cargo build --release --locked --bin ccci-guard >/dev/null 2>&1
DGUARD=$PWD/target/release/ccci-guard
kill -- -"$crowd" 2>/dev/null || true; crowd=
hyperfine -N --warmup 50 --runs "$RUNS" --export-json "$work/d.json" \
  "$DGUARD -q -- true" "$TIMEOUT 60 true" >/dev/null
python3 - "$work/d.json" <<'PY'
import json, sys
s, t = json.load(open(sys.argv[1]))["results"]
print(f"  dynamic ccci-guard mean {s['mean']*1e3:.3f} ms  median {s['median']*1e3:.3f} ms; timeout(1) median {t['median']*1e3:.3f} ms: {s['median']/t['median']:.2f}x")
PY
echo "  dynamic ccci-guard's own VmHWM while supervising: $(hwm_while_supervising "$DGUARD") KiB   (goal <= 2048 KiB)"
