#!/usr/bin/env bash
# The kv service through the gateway, on the embedded defaults (SQLite, the
# in-process bus) and on PostgreSQL + NATS JetStream, each next to direct
# inserts into the same database in the same run: roundtrip latency (HTTP
# request to websocket delivery) at a steady rate, and the time to store one
# batch whole. The client is tests/examples/kv_bench.rs.
#
#   bash bench/kv.sh
#   RATE=1000 DURATION=10 BATCH=10000 PG_URL=postgres://… NATS_URL=nats://… bash bench/kv.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/up.sh

RATE=${RATE:-1000}
DURATION=${DURATION:-10}
BATCH=${BATCH:-10000}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
cargo build --release -q -p flotilla-cli
cargo build --release -q -p flotilla-tests --example kv_bench
work=$(mktemp -d)
pid=""
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

run() { # label, database URL for the anchors, extra flags for up
    local label=$1 db=$2; shift 2
    start_up "$work/$label" --kv-batch-timeout-ms 600000 "$@"
    echo "== $label"
    target/release/examples/kv_bench "$url" "$db" "$RATE" "$DURATION" "$BATCH"
    stop_up
}

echo "$RATE roundtrips/s for ${DURATION} s, then one batch of $BATCH items"
run embedded "sqlite://$work/embedded/kv.db"
tag="kvbench$$"
run postgres+nats "$PG_URL?options=-csearch_path%3D${tag}_kv" \
    --db "$PG_URL" --db-schema-prefix "${tag}_" --bus "$NATS_URL" --bus-namespace "$tag"
for service in users notifications kv; do
    psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS \"${tag}_$service\" CASCADE" >/dev/null 2>&1 || true
done
