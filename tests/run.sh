#!/usr/bin/env bash
# The whole test suite, with its set-up: what the tests need is installed here, so this
# one command works on a fresh machine (README: "Run the tests").
set -euo pipefail
cd "$(dirname "$0")/.."

need() { # command, Debian package
  command -v "$1" >/dev/null && return
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  else
    echo "tests/run.sh: '$1' is missing: install the Debian package $2" >&2
    exit 1
  fi
}
need flock util-linux     # interop tests run flock(1) against ccci-lock
need stat coreutils
need groff groff-base    # ccci-gen's tests render the man pages
need zsh zsh             # ... and complete in a real zsh
need mkfs.btrfs btrfs-progs  # a lock dir on btrfs (devices differ from the lock table's)
need python3 python3     # a guard test launches the guard from a Python thread
# ... and a janitor test runs Debian's python3 as another user (a pyenv one under /root
# is out of its reach).
if [ ! -x /usr/bin/python3 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-minimal >/dev/null
  else
    echo "tests/run.sh: /usr/bin/python3 is missing: install the Debian package python3-minimal" >&2
    exit 1
  fi
fi

# The swarm tests need a local dockerd in swarm mode and the test image. As root this
# sets it up (idempotently); otherwise those tests skip with a reason — except in CI,
# where a missing swarm fails them.
if [ "$(id -u)" = 0 ]; then
  bash tests/rig/swarm.sh
elif [ "${CI:-}" = true ]; then
  echo "tests/run.sh: CI needs root to start the test swarm" >&2
  exit 1
fi

# The binaries under test are built as they are installed (README "Install",
# nix/package.nix): static-pie on glibc. `--target` keeps proc macros and build scripts
# dynamic, as they must be; it also puts this build under target/<triple>/.
target=$(rustc --print host-tuple)
case $target in
  *-linux-gnu*) export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" ;;
esac
cargo test --workspace --locked --target "$target" "$@"
