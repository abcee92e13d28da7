#!/usr/bin/env bash
# Attestation benchmark: cold evidence verification (TDX, SEV-SNP, sim),
# RA-TLS certificate verification with and without the cache, and mutual
# TLS handshakes per second, plain vs RA-TLS, side by side in one run.
# See bench/README.md. Usage: bench/attestation.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
out="bench/results/attestation-$(date -u +%Y%m%d-%H%M%S).md"
COCOON_BENCH_OUT="$PWD/$out" cargo bench -p cocoon-transport --bench attestation -- "$@"
echo "==> written to $out"
