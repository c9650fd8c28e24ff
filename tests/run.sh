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

cargo test --workspace --locked "$@"
