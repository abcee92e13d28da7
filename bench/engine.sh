#!/usr/bin/env bash
# Engine benchmark: the embedded engine through the full Cocoon path
# (client -> proxy -> worker -> llama.cpp in-process) against llama.cpp's
# own server (llama-cpp-python[server], which builds the same llama.cpp),
# on the same GGUF, in one run. See bench/README.md.
# Usage: bench/engine.sh [--runs N] [--max-tokens N]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup

venv="${COCOON_CACHE:-$HOME/.cache/cocoon}/bench-venv"
if ! "$venv/bin/python" -c 'import llama_cpp.server' 2>/dev/null; then
  echo "==> installing llama-cpp-python[server] into $venv (compiles llama.cpp; takes a while)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'llama-cpp-python[server]'
fi
echo "==> building release binaries"
cargo build --release --quiet -p cocoon-cli
bin="${CARGO_TARGET_DIR:-$PWD/target}/release"
"$bin/cocoon" model fetch >/dev/null
export COCOON_BIN_DIR="$bin" LLAMA_SERVER_PYTHON="$venv/bin/python"
exec python3 bench/engine.py "$@"
