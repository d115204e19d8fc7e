#!/usr/bin/env bash
# The users service behind the gateway, on SQLite and on PostgreSQL, in one
# run: successful requests/s, p99 and errors for POST /users (each also
# publishes user.created, which the notifications service consumes) and
# GET /users/{id}. Anchor, measured in the same run: the same requests sent
# straight to the users instance, without the gateway; the ratios are the
# gateway's path over it.
#
#   bash bench/users.sh                    # PostgreSQL at postgres://postgres@127.0.0.1:5432/test
#   PG_URL=postgres://… DURATION=10s CONNS=64 bash bench/users.sh
#
# A request answered with a status other than 2xx/3xx, or lost to a socket
# error, is an error: it is not counted in req/s, the row says how many, and
# the script exits with status 1 after the table.
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
schema="bench$$"
# Every service's schema of the PostgreSQL run, ${schema}_<service>.
drop_schemas() {
    psql "$PG_URL" -Atc "SELECT format('DROP SCHEMA %I CASCADE;', nspname) FROM pg_namespace
        WHERE nspname LIKE '${schema}\_%'" 2>/dev/null | psql "$PG_URL" -q >/dev/null 2>&1 || true
}
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; drop_schemas; rm -rf "$work"; }
trap cleanup EXIT

# POST <path> with unique e-mails per target, wrk thread and request; the
# path and a tag for the e-mails come after wrk's `--`.
cat > "$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local threads, n, path, tag = 0, 0, "/", "x"
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function init(args) path = args[1] or path; tag = args[2] or tag end
request = function()
  n = n + 1
  return wrk.format(nil, path, nil, string.format('{"name":"u","email":"u-%s-%d-%d-%d@example.com"}', tag, tid, n, os.time()))
end
LUA

# "ok_req/s p99_ms errors detail" from wrk's output: requests answered
# 2xx/3xx per second; errors are non-2xx/3xx responses plus socket errors
# (connect, read, write, timeout), detailed in the last field.
measure() {
    wrk -t2 -c"$CONNS" -d"$DURATION" --latency "$@" | awk '
        function seconds(t,   v, u) {
            v = t; u = t; gsub(/[a-z]/, "", v); gsub(/[0-9.]/, "", u)
            return (u == "us") ? v / 1e6 : (u == "ms") ? v / 1e3 : (u == "m") ? v * 60 : (u == "h") ? v * 3600 : v
        }
        / requests in / { requests = $1; t = $4; sub(/,$/, "", t); elapsed = seconds(t) }
        /Non-2xx or 3xx responses:/ { non2xx = $NF }
        /Socket errors:/ { gsub(/,/, ""); connect = $4; rd = $6; wr = $8; timeout = $10 }
        /^ +99%/ { p99 = seconds($2) * 1000 }
        END {
            if (elapsed == 0) { print "0 0 1 no-wrk-output"; exit }
            errors = non2xx + connect + rd + wr + timeout
            printf "%.0f %.2f %d non2xx=%d,connect=%d,read=%d,write=%d,timeout=%d\n",
                (requests - non2xx) / elapsed, p99, errors, non2xx, connect, rd, wr, timeout
        }'
}

# Waits (at most 60 s) until the stack is idle: under 2 CPU ticks (4% of a
# core) in half a second, so that one measurement does not run while the
# stack still works off the previous one (the notifications service
# consuming user.created, the outbox relay).
settle() {
    local before after
    for _ in $(seq 1 120); do
        before=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
        sleep 0.5
        after=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
        ((after - before < 2)) && return
    done
    echo "note: flotilla up was still busy after 60 s" >&2
}

failed=()
row() { # storage, target, POST figures, GET figures (4 fields each)
    printf "%-10s %-8s %11s %8s %7s %11s %8s %7s\n" "$1" "$2" "$3" "$4" "$5" "$7" "$8" "$9"
    [[ $5 == 0 ]] || failed+=("$1 $2 POST: $6")
    [[ $9 == 0 ]] || failed+=("$1 $2 GET: ${10}")
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

run() { # label, extra flags for up
    local label=$1; shift
    start_up "$work/$label" "$@"
    # The users instance, from the table `flotilla up` prints.
    local direct=""
    for _ in $(seq 1 100); do
        direct=$(awk '/^users / { for (i = 1; i <= NF; i++) if ($i == "instances:") { sub(/[,)]$/, "", $(i+1)); print $(i+1) } }' "$work/$label.out")
        [[ -n $direct ]] && break
        sleep 0.1
    done
    [[ $direct == http://* ]] || { echo "no users instance in the table of flotilla up ($label)" >&2; exit 1; }
    local id
    id=$(curl -s -X POST "$url/users" -H 'content-type: application/json' \
        -d "{\"name\":\"probe\",\"email\":\"probe-$label@example.com\"}" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
    [[ -n $id ]] || { echo "could not create the probe user ($label)" >&2; exit 1; }
    local gp gg dp dg
    settle; gp=$(measure -s "$work/post.lua" "$url/" -- /users "$label-gw")
    settle; dp=$(measure -s "$work/post.lua" "$direct/" -- / "$label-direct")
    settle; gg=$(measure "$url/users/$id")
    settle; dg=$(measure "$direct/$id")
    # shellcheck disable=SC2086 # the figures are space-separated fields
    row "$label" gateway $gp $gg
    # shellcheck disable=SC2086
    row "$label" direct $dp $dg
    read -r gp_rps gp_p99 _ <<<"$gp"; read -r dp_rps dp_p99 _ <<<"$dp"
    read -r gg_rps gg_p99 _ <<<"$gg"; read -r dg_rps dg_p99 _ <<<"$dg"
    printf "%-10s %-8s %11s %8s %7s %11s %8s %7s\n" "$label" ratio \
        "$(ratio "$gp_rps" "$dp_rps")" "$(ratio "$gp_p99" "$dp_p99")" "" \
        "$(ratio "$gg_rps" "$dg_rps")" "$(ratio "$gg_p99" "$dg_p99")" ""
    stop_up
}

echo "wrk -t2 -c$CONNS -d$DURATION; gateway: through the gateway, direct: to the users instance"
printf "%-10s %-8s %11s %8s %7s %11s %8s %7s\n" storage target "POST ok/s" "p99 ms" errors "GET ok/s" "p99 ms" errors
run sqlite
run postgres --db "$PG_URL" --db-schema-prefix "${schema}_"

if ((${#failed[@]})); then
    echo
    echo "ERRORS: some requests failed; ok/s counts only the successful ones:"
    printf '  %s\n' "${failed[@]}"
    exit 1
fi
