#!/usr/bin/env bash
# Builds the reference the engine is measured against: llama.cpp's own C++
# `llama-server` and `llama-bench`, from the llama.cpp sources vendored in
# the source distribution of llama-cpp-python (pinned below), for this
# machine's CPU. Cached under ~/.cache/cocoon; prints the bin directory.
# Usage: bench/llama-reference.sh   (set GGML_CUDA=ON for a CUDA build)
set -euo pipefail

version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
cuda="${GGML_CUDA:-OFF}"
cache="${COCOON_CACHE:-$HOME/.cache/cocoon}"
root="$cache/llama.cpp-$version"
[ "$cuda" = ON ] && root="$root-cuda"
bin="$root/build/bin"

if [ -x "$bin/llama-server" ] && [ -x "$bin/llama-bench" ]; then
  echo "$bin"
  exit 0
fi

for tool in python3 cmake make c++; do
  command -v "$tool" >/dev/null || { echo "bench/llama-reference.sh needs $tool (scripts/setup installs it)" >&2; exit 1; }
done

mkdir -p "$cache/sdist"
sdist="$cache/sdist/llama_cpp_python-$version.tar.gz"
if [ ! -f "$sdist" ]; then
  echo "==> fetching the llama-cpp-python $version source distribution" >&2
  python3 -m pip download --quiet --disable-pip-version-check --no-binary :all: --no-deps \
    "llama-cpp-python==$version" -d "$cache/sdist" >&2
fi

rm -rf "$root.tmp"
mkdir -p "$root.tmp"
tar -xzf "$sdist" -C "$root.tmp"
src="$root.tmp/llama_cpp_python-$version/vendor/llama.cpp"
[ -f "$src/CMakeLists.txt" ] || { echo "no vendored llama.cpp in $sdist" >&2; exit 1; }

echo "==> building llama-server and llama-bench (llama.cpp vendored by llama-cpp-python $version)" >&2
# Static: the binaries must not point into the temporary build tree.
cmake -S "$src" -B "$root.tmp/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
  -DGGML_CUDA="$cuda" -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON >&2
cmake --build "$root.tmp/build" --target llama-server llama-bench -j "$(nproc)" >&2

# Only the build is kept; a failed build leaves nothing that looks finished.
rm -rf "$root"
mkdir -p "$root"
mv "$root.tmp/build" "$root/build"
rm -rf "$root.tmp"
echo "$bin"
