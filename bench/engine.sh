#!/usr/bin/env bash
# Engine benchmark: the embedded engine through the full Cocoon path
# (client -> proxy -> worker -> llama.cpp in-process) against llama.cpp's
# own C++ llama-server and llama-bench, built from the llama.cpp that the
# llama-cpp-python source distribution vendors (bench/llama-reference.sh),
# on the same GGUF, in one run. See bench/README.md.
# Usage: bench/engine.sh [--runs N] [--max-tokens N] [--warm-tokens N] [--only llama-server|cocoon]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup

LLAMA_BIN_DIR="$(bench/llama-reference.sh)"
echo "==> building release binaries"
cargo build --release --quiet -p cocoon-cli
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
"$bin/cocoon" model fetch >/dev/null
export COCOON_BIN_DIR="$bin" LLAMA_BIN_DIR
exec python3 bench/engine.py "$@"
