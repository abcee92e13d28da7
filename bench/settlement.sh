#!/usr/bin/env bash
# Settlement latency: client deposit -> served, worker withdraw -> wallet
# credited, in seconds and blocks on `cocoon up`'s devnet at its default
# block interval. See bench/README.md. Usage: bench/settlement.sh [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> building release binaries"
cargo build --release --quiet -p cocoon-cli -p cocoon-testkit
export COCOON_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/release"
exec python3 bench/settlement.py "$@"
