#!/usr/bin/env bash
# The auth service through the gateway, on the embedded defaults, each part
# next to its anchor measured in the same run: signing in (login page, then
# the form) against the argon2id verification alone; client_credentials
# tokens against ES256 signing alone. The client is
# tests/examples/auth_bench.rs.
#
#   bash bench/auth.sh
#   LOGINS=400 TOKENS=5000 CONCURRENCY=2 bash bench/auth.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/up.sh

LOGINS=${LOGINS:-400}
TOKENS=${TOKENS:-5000}
CONCURRENCY=${CONCURRENCY:-2}
cargo build --release -q -p flotilla-cli
cargo build --release -q -p flotilla-tests --example auth_bench
work=$(mktemp -d)
pid=""
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# A confidential client for client_credentials.
secret=bench-secret-$$
cat > "$work/clients.toml" <<TOML
[[client]]
id = "bench"
secret_sha256 = "$(printf %s "$secret" | sha256sum | cut -d' ' -f1)"
grants = ["client_credentials"]
TOML
start_up "$work/embedded" --auth-clients-file "$work/clients.toml"
target/release/examples/auth_bench "$url" "$LOGINS" "$CONCURRENCY" bench "$secret" "$TOKENS"
stop_up
