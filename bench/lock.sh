#!/usr/bin/env bash
# Benchmark ccci-lock against flock(1), in the same run on the same machine.
#
#   (a) whole process: `ccci-lock D -- true` vs `flock F true` (hyperfine)
#   (b) hand-off latency: the holder's last act (a timestamp) to the waiter's command's
#       first act (a timestamp), over many rounds, for both tools.
#
# Goals (issue "Workspace foundation and ccci-lock"): (a) <= 1.2x flock(1);
# (b) median <= 2 ms, p99 <= 10 ms. Not a test: numbers go to docs/performance.md.
#
#   bash bench/lock.sh            # ROUNDS=300 hand-offs per tool by default
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-300}

command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
cargo build --release --locked --bin ccci-lock >/dev/null 2>&1
LOCK=$PWD/target/release/ccci-lock
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export CCCI_APP_LOCK_DIR=$work/locks
D=bench-0a1b2c.ci.example.org
F=$CCCI_APP_LOCK_DIR/cc-ci-app-$D.lock
"$LOCK" -q "$D" -- true   # create the lock dir and lockfile once, as on a host

echo "== machine: $(nproc) cores, $(uname -sr), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') =="
echo "== (a) whole process, uncontended =="
hyperfine -N --warmup 50 --runs 1000 --export-json "$work/a.json" \
  "$LOCK -q $D -- true" "flock $F true" >/dev/null
python3 - "$work/a.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
ours, theirs = r[0], r[1]
for x in r:
    print(f"  {x['command'].split()[0].rsplit('/',1)[-1]:<10} mean {x['mean']*1e3:.3f} ms  median {x['median']*1e3:.3f} ms  ± {x['stddev']*1e3:.3f}")
print(f"  ratio ccci-lock / flock(1): mean {ours['mean']/theirs['mean']:.2f}x  median {ours['median']/theirs['median']:.2f}x  (goal <= 1.2x)")
PY

# Wait until the kernel shows a blocked flock request on the lockfile's inode.
inode=$(stat -c %i "$F")
wait_blocked() {
  until grep -q -- "-> FLOCK .*:$inode " /proc/locks; do sleep 0.001; done
}

handoff() { # $1 = tool name; prints latencies in microseconds, one per line
  local tool=$1 i
  for ((i = 0; i < ROUNDS; i++)); do
    rm -f "$work/go" "$work/ready" && mkfifo "$work/go"
    local hold="echo > '$work/ready'; read x < '$work/go'; exec date +%s%N"
    if [ "$tool" = ccci-lock ]; then
      "$LOCK" -q "$D" -- sh -c "$hold" > "$work/t1" &
    else
      flock "$F" sh -c "$hold" > "$work/t1" &
    fi
    local holder=$!
    until [ -e "$work/ready" ]; do sleep 0.001; done
    if [ "$tool" = ccci-lock ]; then
      "$LOCK" -q "$D" -- date +%s%N > "$work/t2" &
    else
      flock "$F" date +%s%N > "$work/t2" &
    fi
    local waiter=$!
    wait_blocked
    echo > "$work/go"
    wait "$holder" "$waiter"
    echo $(( ($(cat "$work/t2") - $(cat "$work/t1")) / 1000 ))
  done
}

stats() { # stdin: microseconds; prints median and p99 in ms
  sort -n | awk '{v[NR]=$1} END {
    m = v[int((NR+1)/2)]; p = v[int(NR*0.99 + 0.999)]
    printf "median %.3f ms  p99 %.3f ms  max %.3f ms  (n=%d)", m/1000, p/1000, v[NR]/1000, NR }'
}

echo "== (b) hand-off: holder's last act -> waiter's command's first act, $ROUNDS rounds =="
echo "  ccci-lock  $(handoff ccci-lock | stats)   (goal: median <= 2 ms, p99 <= 10 ms)"
echo "  flock(1)   $(handoff flock | stats)"
