#!/usr/bin/env bash
# Benchmark one ccci-janitor pass (issue "ccci-janitor", not a test):
#   (a) a pass over 10,000 lockfiles, half held by a live process, half free, no swarm
#       resources — goal <= 1 s;
#   (b) docker invocations per pass for 1 vs 50 stacks on the swarm — goal: the same for
#       discovery (no per-stack call).
# Needs the test swarm (bash tests/rig/swarm.sh) and root.
#
#   bash bench/janitor.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
cargo build --release --locked --bin ccci-janitor --bin ccci-lock >/dev/null 2>&1
J=$PWD/target/release/ccci-janitor
work=$(mktemp -d)
cleanup() { [ -n "${holder:-}" ] && kill "$holder" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
export CCCI_APP_LOCK_DIR=$work/locks CCCI_CANONICAL_ABRA_DIR=$work/abra
mkdir -p "$CCCI_APP_LOCK_DIR" "$CCCI_CANONICAL_ABRA_DIR/servers"

echo "== (a) one pass over $N lockfiles (half held, half free), no swarm resources =="
python3 - "$CCCI_APP_LOCK_DIR" "$N" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    open(os.path.join(d, f"cc-ci-app-b{i % 10000:04d}-{i:06x}.ci.example.org.lock"), "w").close()
PY
# One process holds every other lock (as many live runs would).
python3 - "$CCCI_APP_LOCK_DIR" "$work/ready" <<'PY' &
import fcntl, os, resource, sys, time
d, ready = sys.argv[1], sys.argv[2]
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
for i, name in enumerate(sorted(os.listdir(d))):
    if i % 2 == 0:
        f = open(os.path.join(d, name), "r+")
        fcntl.flock(f, fcntl.LOCK_EX)
        held.append(f)
open(ready, "w").close()
time.sleep(3600)
PY
holder=$!
until [ -e "$work/ready" ]; do kill -0 "$holder" || { echo "the lock holder died" >&2; exit 1; }; sleep 0.05; done
allow='^b[0-9]{4}-[0-9a-f]{6}\.'
for mode in --dry-run ""; do
  start=$(date +%s%N)
  CCCI_RUN_APP_RE=$allow "$J" $mode 2>"$work/err" >/dev/null || true
  end=$(date +%s%N)
  echo "  ccci-janitor ${mode:-(real pass)}: $(( (end - start) / 1000000 )) ms — $(tail -1 "$work/err")"
done

# (a2) The same held locks seen from another, empty lock dir on the same filesystem: every
# one of them is on the lock dir's device with an inode the dir lacks, so the check for
# lockfiles unlinked while held looks into their holder — once, not once per lock.
mkdir -p "$work/other"
start=$(date +%s%N)
CCCI_APP_LOCK_DIR=$work/other CCCI_RUN_APP_RE=$allow "$J" --dry-run 2>"$work/err" >/dev/null || true
end=$(date +%s%N)
echo "  ccci-janitor --dry-run on an empty lock dir beside $((N / 2)) held locks: $(( (end - start) / 1000000 )) ms — $(tail -1 "$work/err")"

echo "== (b) docker invocations per pass =="
cat > "$work/docker" <<EOF2
#!/bin/sh
echo "\$*" >> "$work/calls"
exec docker "\$@"
EOF2
chmod +x "$work/docker"
prefix=bz$$
compose=$work/compose.yml
printf 'version: "3.8"\nservices:\n  s:\n    image: ccci-test/busybox:1\n    command: ["sleep", "3600"]\n    deploy:\n      replicas: 0\n' > "$compose"
deploy_stacks() { for i in $(seq "$1" "$2"); do docker stack deploy --detach=true -c "$compose" "${prefix}-$(printf %06x "$i")_ci_example_org" >/dev/null; done; }
remove_stacks() { for i in $(seq 1 50); do docker stack rm "${prefix}-$(printf %06x "$i")_ci_example_org" >/dev/null 2>&1 || true; done; }
trap 'remove_stacks; cleanup' EXIT
rm -rf "$CCCI_APP_LOCK_DIR"/*
for stacks in 1 50; do
  deploy_stacks 1 "$stacks"
  : > "$work/calls"
  # An allowlist that matches none of them: discovery only, nothing probed or reaped.
  CCCI_DOCKER=$work/docker CCCI_RUN_APP_RE='^nothing-matches$' "$J" 2>/dev/null
  echo "  $stacks stack(s): $(wc -l < "$work/calls") docker calls: $(cut -d' ' -f1-2 "$work/calls" | tr '\n' ';')"
done
