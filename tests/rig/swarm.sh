#!/usr/bin/env bash
# The test swarm: a local dockerd in swarm mode and the image the fixture recipes use.
# Idempotent: starts dockerd only if `docker info` fails, initialises the swarm only if
# it is not active, imports the image only if it is absent. Needs root (apt, dockerd).
#
#   bash tests/rig/swarm.sh        # then: docker info / docker node ls
set -euo pipefail

IMAGE=ccci-test/busybox:1
LOG=${CCCI_DOCKERD_LOG:-/var/log/ccci-dockerd.log}

say() { printf '== swarm rig: %s ==\n' "$*" >&2; }

if ! command -v dockerd >/dev/null || ! [ -x /bin/busybox ]; then
  say "installing docker.io and busybox-static"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io busybox-static >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (log: $LOG)"
  setsid dockerd >"$LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 120); do
    docker info >/dev/null 2>&1 && break
    sleep 0.5
  done
  docker info >/dev/null 2>&1 || { tail -20 "$LOG" >&2; say "dockerd did not come up"; exit 1; }
fi

if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  say "initialising the swarm"
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  say "importing $IMAGE from a static busybox"
  root=$(mktemp -d)
  trap 'rm -rf "$root"' EXIT
  mkdir -p "$root/bin" "$root/tmp" "$root/etc"
  cp /bin/busybox "$root/bin/busybox"
  for applet in sh sleep cat echo ls true false env; do ln -s busybox "$root/bin/$applet"; done
  tar -C "$root" -c . | docker import - "$IMAGE" >/dev/null
fi
say "ready: swarm $(docker info --format '{{.Swarm.LocalNodeState}}'), image $IMAGE"
