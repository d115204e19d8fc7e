#!/usr/bin/env bash
# Signing in through the gateway (login page, then the form), on the
# embedded defaults, next to its anchor measured in the same run: the
# argon2id verification alone, with the same parameters and concurrency.
# The client is tests/examples/auth_bench.rs.
#
#   bash bench/auth.sh
#   LOGINS=400 CONCURRENCY=2 bash bench/auth.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/up.sh

LOGINS=${LOGINS:-400}
CONCURRENCY=${CONCURRENCY:-2}
cargo build --release -q -p flotilla-cli
cargo build --release -q -p flotilla-tests --example auth_bench
work=$(mktemp -d)
pid=""
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start_up "$work/embedded"
target/release/examples/auth_bench "$url" "$LOGINS" "$CONCURRENCY"
stop_up
