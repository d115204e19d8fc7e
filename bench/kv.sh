#!/usr/bin/env bash
# The kv service through the gateway, on the embedded defaults (SQLite, the
# in-process bus), on PostgreSQL + NATS JetStream and on PostgreSQL +
# RabbitMQ, each next to direct inserts into the same database in the same
# run: roundtrip latency (HTTP request to websocket delivery) at a steady
# rate, and the time to store one batch whole. The client is
# tests/examples/kv_bench.rs.
#
#   bash bench/kv.sh
#   RATE=1000 DURATION=10 BATCH=10000 PG_URL=postgres://… NATS_URL=nats://… AMQP_URL=amqp://… bash bench/kv.sh
#   BACKENDS="embedded postgres+nats" bash bench/kv.sh
#
# With SUSTAIN=1 it looks instead for the highest roundtrip rate each
# backend sustains: SUSTAIN_SECONDS (30) at each of RATES in turn, on one
# stack, until a rate misses (p99 at or over 100 ms, a pair lost, or fewer
# requests sent than asked).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/up.sh

RATE=${RATE:-1000}
DURATION=${DURATION:-10}
BATCH=${BATCH:-10000}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
BACKENDS=${BACKENDS:-embedded postgres+nats postgres+rabbitmq}
SUSTAIN=${SUSTAIN:-}
SUSTAIN_SECONDS=${SUSTAIN_SECONDS:-30}
RATES=${RATES:-500 1000 1500 2000 2500 3000 4000 5000}
cargo build --release -q -p flotilla-cli
cargo build --release -q -p flotilla-tests --example kv_bench
work=$(mktemp -d)
pid=""
tag="kvbench$$"
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$work"
    for service in users notifications kv auth motus score; do
        for bus in n r; do
            psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS \"${tag}${bus}_$service\" CASCADE" >/dev/null 2>&1 || true
        done
    done
    # The stack's JetStream stream, and its RabbitMQ queues where the broker
    # is this machine's (its exchanges stay: rabbitmqctl cannot delete one).
    NATS_URL=$NATS_URL python3 .ci/nats_clean.py "^${tag^^}N\$" >/dev/null || true
    if [[ " $BACKENDS " == *" postgres+rabbitmq "* ]] && command -v rabbitmqctl >/dev/null; then
        rabbitmqctl -q list_queues name 2>/dev/null | grep "^${tag}r\." \
            | xargs -r -n1 rabbitmqctl -q delete_queue >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

sustain() { # gateway URL, database URL
    local best=none rate out p99
    for rate in $RATES; do
        out=$(target/release/examples/kv_bench "$1" "$2" "$rate" "$SUSTAIN_SECONDS" 0)
        p99=$(awk '/HTTP -> websocket/ { for (i = 1; i < NF; i++) if ($i == "p99") { print $(i + 1); exit } }' <<<"$out")
        echo "$rate/s: $(head -1 <<<"$out" | sed 's/^roundtrip *//'), p99 $p99 ms"
        if ! awk -v rate="$rate" -v p99="$p99" '
            /^roundtrip/ { split($2, n, "/"); sent = $5 + 0; lost = $8 + 0 }
            END { exit !(n[1] == n[2] && sent >= 0.95 * rate && lost == 0 && p99 < 100) }' <<<"$out"; then
            break
        fi
        best=$rate
    done
    echo "highest rate sustained for ${SUSTAIN_SECONDS} s with p99 under 100 ms: $best/s"
}

run() { # label, database URL for the anchors, extra flags for up
    local label=$1 db=$2; shift 2
    [[ " $BACKENDS " == *" $label "* ]] || return 0
    start_up "$work/$label" --kv-batch-timeout-ms 600000 "$@"
    echo "== $label"
    if [[ -n $SUSTAIN ]]; then
        sustain "$url" "$db"
    else
        target/release/examples/kv_bench "$url" "$db" "$RATE" "$DURATION" "$BATCH"
    fi
    stop_up
}

if [[ -n $SUSTAIN ]]; then
    echo "roundtrips at each of $RATES per second for ${SUSTAIN_SECONDS} s"
else
    echo "$RATE roundtrips/s for ${DURATION} s, then one batch of $BATCH items"
fi
run embedded "sqlite://$work/embedded/kv.db"
run postgres+nats "$PG_URL?options=-csearch_path%3D${tag}n_kv" \
    --db "$PG_URL" --db-schema-prefix "${tag}n_" --bus "$NATS_URL" --bus-namespace "${tag}n"
run postgres+rabbitmq "$PG_URL?options=-csearch_path%3D${tag}r_kv" \
    --db "$PG_URL" --db-schema-prefix "${tag}r_" --bus "$AMQP_URL" --bus-namespace "${tag}r"
