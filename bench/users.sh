#!/usr/bin/env bash
# The users service behind the gateway, on SQLite and on PostgreSQL, in one
# run: requests/s and p99 for POST /users (each also publishes user.created,
# which the notifications service consumes) and GET /users/{id}.
#
#   bash bench/users.sh                    # PostgreSQL at postgres://postgres@127.0.0.1:5432/test
#   PG_URL=postgres://… DURATION=10s CONNS=64 bash bench/users.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/up.sh

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release -q -p flotilla-cli
work=$(mktemp -d)
pid=""
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# Unique e-mails per wrk thread and request.
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local threads, n = 0, 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
request = function()
  n = n + 1
  return wrk.format(nil, "/users", nil, string.format('{"name":"u","email":"u%d-%d-%d@example.com"}', tid, n, os.time()))
end
LUA

# "req/s p99_ms" from wrk's output.
measure() {
    wrk -t2 -c"$CONNS" -d"$DURATION" --latency "$@" | awk '
        /Requests\/sec/ { rps = $2 }
        /^ +99%/ { v = $2; u = v; gsub(/[0-9.]/, "", u); gsub(/[a-z]/, "", v);
                   ms = (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }
        END { printf "%.0f %.2f\n", rps, ms }'
}

run() { # label, extra flags for up
    local label=$1; shift
    start_up "$work/$label" "$@"
    local id
    id=$(curl -s -X POST "$url/users" -H 'content-type: application/json' \
        -d "{\"name\":\"probe\",\"email\":\"probe-$label@example.com\"}" | sed 's/.*"id":"\([^"]*\)".*/\1/')
    read -r post_rps post_p99 < <(measure -s "$work/post.lua" "$url/")
    read -r get_rps get_p99 < <(measure "$url/users/$id")
    printf "%-12s %12s %10s %12s %10s\n" "$label" "$post_rps" "$post_p99" "$get_rps" "$get_p99"
    stop_up
}

echo "wrk -t2 -c$CONNS -d$DURATION through the gateway"
printf "%-12s %12s %10s %12s %10s\n" storage "POST req/s" "p99 ms" "GET req/s" "p99 ms"
run sqlite
schema="bench$$"
run postgres --db "$PG_URL" --db-schema-prefix "${schema}_"
psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS \"${schema}_users\" CASCADE; DROP SCHEMA IF EXISTS \"${schema}_notifications\" CASCADE" >/dev/null 2>&1 || true
