#!/usr/bin/env bash
# The brief's demo, timed: a one-page confidential document sent to the
# Telegram bot (against the local Bot API double), a private summary back,
# on `cocoon up` with the default model; beside it the same prompt sent to
# the API directly and the engine's own time. See bench/README.md.
# Usage: bench/telegram_demo.sh [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> building release binaries"
cargo build --release --quiet -p cocoon-cli -p cocoon-e2e --bin cocoon --bin bot-api-double
export COCOON_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/release"
"$COCOON_BIN_DIR/cocoon" model fetch >/dev/null
exec python3 bench/telegram_demo.py "$@"
