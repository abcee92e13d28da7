#!/usr/bin/env bash
# Streaming benchmark: the test upstream directly vs through
# client -> proxy -> worker, measured side by side in one run with wrk.
# See bench/README.md. Usage: bench/run.sh [--duration SECS]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
  echo "==> installing wrk (Debian package)"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; fi
fi
echo "==> building release binaries"
cargo build --release --quiet -p cocoon-cli -p cocoon-testkit
export COCOON_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/release"
exec python3 bench/streaming.py "$@"
