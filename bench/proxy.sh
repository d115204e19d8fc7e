#!/usr/bin/env bash
# bench/proxy.sh: the flotilla gateway against HAProxy and nginx as reverse
# proxies, on loopback, in one run.
#
# What it does
#   * One upstream: nginx, one worker, answering every path with "ok\n".
#   * Three proxies in front of it, each on its own port and each held to one
#     thread: HAProxy (nbthread 1, http-reuse always), nginx (one worker,
#     keep-alive upstream pool) and `flotilla serve gateway --threads 1`.
#   * wrk drives the upstream directly and each proxy at 32 and 256
#     keep-alive connections. The targets take turns, round after round, in
#     a rotating order, so that drift on a shared machine falls on all of
#     them alike; the table shows the median of the rounds (the mean of the
#     middle two when ROUNDS is even).
#   * Then the gateway's resident memory (VmRSS) idle and with 1,000 and
#     10,000 idle keep-alive client connections, each of which has completed
#     one request through it.
#
# Why
#   The direct row is the ceiling the machine allows; HAProxy and nginx show
#   what a mature proxy achieves on the same cores. The ratios say how far
#   the gateway is from them, which is the number to watch across changes.
#
# Settings (environment)
#   DURATION    length of each wrk run            (default 10s)
#   ROUNDS      turns each target gets per count  (default 2)
#   CONNS       keep-alive connection counts      (default "32 256")
#   WARMUP      wrk warm-up of each target        (default 2s)
#   IDLE_CONNS  idle connection counts for RSS    (default "1000 10000")
#
# Needs root on Debian for the one-time `apt-get install` of haproxy, nginx
# and wrk; every process it starts uses its own configuration under a
# temporary directory and is stopped on exit. Only loopback is used.

set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-"32 256"}
WARMUP=${WARMUP:-2s}
IDLE_CONNS=${IDLE_CONNS:-"1000 10000"}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEMPLATES=$ROOT/bench/proxy
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/flotilla

WORK=""           # temporary directory: configs, pids, logs, wrk output
PIDS=()           # every process started here, stopped on exit
USED_PORTS=()     # ports handed out, so no two targets share one
POLICY_RC_D=""    # set when a temporary policy-rc.d was put in place
LAST_PID=""       # pid of the process start_bg started last
PORT_OUT=""       # port next_port picked last

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- processes and cleanup -------------------------------------------------

# forget_pid PID: drops a reaped process from PIDS, so that cleanup never
# signals a later process that happens to get the same pid.
forget_pid() {
    local pid kept=()
    for pid in "${PIDS[@]}"; do
        if [[ $pid != "$1" ]]; then kept+=("$pid"); fi
    done
    PIDS=("${kept[@]}")
}

# stop_pid PID: TERM, then KILL after 5s.
stop_pid() {
    local pid=$1 i
    if kill -TERM "$pid" 2>/dev/null; then
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

cleanup() {
    local pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ -n $POLICY_RC_D ]]; then rm -f "$POLICY_RC_D"; fi
    if [[ -n $WORK ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_bg NAME COMMAND...: runs COMMAND in the background, output to
# $WORK/NAME.log; its pid is left in LAST_PID.
start_bg() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# --- setup -----------------------------------------------------------------

# Installs what is missing, without letting Debian start the packaged
# services on their default ports.
install_tools() {
    local -A pkg_of=([haproxy]=haproxy [nginx]=nginx [wrk]=wrk [curl]=curl
        [python3]=python3 [ss]=iproute2)
    local cmd missing=()
    for cmd in "${!pkg_of[@]}"; do
        command -v "$cmd" >/dev/null || missing+=("${pkg_of[$cmd]}")
    done
    ((${#missing[@]})) || return 0
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; run as root to install them"
    log "installing ${missing[*]}"
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        POLICY_RC_D=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC_D"
        chmod 755 "$POLICY_RC_D"
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    if [[ -n $POLICY_RC_D ]]; then
        rm -f "$POLICY_RC_D"
        POLICY_RC_D=""
    fi
    # Should an init system have started them anyway, stop them.
    for cmd in nginx haproxy; do
        if [[ " ${missing[*]} " == *" $cmd "* ]]; then
            service "$cmd" stop >/dev/null 2>&1 || true
        fi
    done
}

build_flotilla() {
    log "building flotilla (release)"
    (cd "$ROOT" && cargo build --release -p flotilla-cli)
    [[ -x $BIN ]] || die "no binary at $BIN"
}

# next_port: sets PORT_OUT to a loopback port nothing listens on and that
# was not handed out before.
next_port() {
    while :; do
        PORT_OUT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        [[ " ${USED_PORTS[*]} " == *" $PORT_OUT "* ]] || break
    done
    USED_PORTS+=("$PORT_OUT")
}

# render TEMPLATE OUT KEY=VALUE...: copies TEMPLATE to OUT with each @KEY@
# replaced by VALUE.
render() {
    local template=$1 out=$2 pair args=()
    shift 2
    for pair in "$@"; do args+=(-e "s|@${pair%%=*}@|${pair#*=}|g"); done
    sed "${args[@]}" "$template" >"$out"
}

# wait_ready NAME PID PORT: waits until GET / on PORT answers "ok".
wait_ready() {
    local name=$1 pid=$2 port=$3 i body
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || {
            tail -n 20 "$WORK/$name.log" >&2
            die "$name exited during startup"
        }
        body=$(curl -fsS --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null) || body=""
        [[ $body == ok ]] && return 0
        sleep 0.1
    done
    tail -n 20 "$WORK/$name.log" >&2
    die "$name did not answer \"ok\" on port $port within 10s"
}

# start_nginx NAME TEMPLATE KEY=VALUE...: nginx on its own configuration,
# in the foreground, its error log, pid and temp files under $WORK.
start_nginx() {
    local name=$1 template=$2
    shift 2
    mkdir -p "$WORK/$name-tmp"
    render "$template" "$WORK/$name.conf" DIR="$WORK" NOFILE="$NOFILE" \
        WORKER_CONNECTIONS=$((NOFILE / 2)) "$@"
    start_bg "$name" nginx -p "$WORK/" -e "$WORK/$name-error.log" -c "$WORK/$name.conf"
}

# start_gateway NAME PORT: the flotilla gateway, one runtime thread,
# forwarding everything to the upstream.
start_gateway() {
    local name=$1 port=$2
    render "$TEMPLATES/gateway.toml" "$WORK/gateway.toml" UPSTREAM_PORT="$UPSTREAM_PORT"
    start_bg "$name" env RUST_LOG=warn "$BIN" serve gateway --port "$port" \
        --config "$WORK/gateway.toml" --threads 1
}

start_all() {
    declare -gA PORT PID
    next_port
    UPSTREAM_PORT=$PORT_OUT
    start_nginx upstream "$TEMPLATES/upstream-nginx.conf" PORT="$UPSTREAM_PORT"
    PORT[direct]=$UPSTREAM_PORT PID[direct]=$LAST_PID
    wait_ready upstream "${PID[direct]}" "${PORT[direct]}"

    next_port
    PORT[haproxy]=$PORT_OUT
    render "$TEMPLATES/haproxy.cfg" "$WORK/haproxy.cfg" PORT="${PORT[haproxy]}" \
        UPSTREAM_PORT="$UPSTREAM_PORT" MAXCONN=$((NOFILE / 2 - 64))
    start_bg haproxy haproxy -db -f "$WORK/haproxy.cfg"
    PID[haproxy]=$LAST_PID
    wait_ready haproxy "${PID[haproxy]}" "${PORT[haproxy]}"

    next_port
    PORT[nginx]=$PORT_OUT
    start_nginx nginx-proxy "$TEMPLATES/proxy-nginx.conf" PORT="${PORT[nginx]}" \
        UPSTREAM_PORT="$UPSTREAM_PORT"
    PID[nginx]=$LAST_PID
    wait_ready nginx-proxy "${PID[nginx]}" "${PORT[nginx]}"

    if ((HAVE_GATEWAY)); then
        next_port
        PORT[flotilla]=$PORT_OUT
        start_gateway flotilla "${PORT[flotilla]}"
        PID[flotilla]=$LAST_PID
        wait_ready flotilla "${PID[flotilla]}" "${PORT[flotilla]}"
    fi
}

# --- throughput and latency ------------------------------------------------

# run_wrk PORT CONNS DURATION OUT: the same wrk settings for every target.
# wrk runs in the background and is waited for, so that Ctrl-C stops the
# script at once rather than after the run.
run_wrk() {
    local port=$1 conns=$2 duration=$3 out=$4 threads=1 pid status=0
    if ((conns > 64)); then threads=2; fi
    wrk -t"$threads" -c"$conns" -d"$duration" --latency "http://127.0.0.1:$port/" >"$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || status=$?
    forget_pid "$pid"
    if ((status != 0)); then
        cat "$out" >&2
        die "wrk failed against port $port"
    fi
}

# parse_wrk FILE: prints "REQ_PER_SEC P99_MS ERRORS", where errors are
# non-2xx/3xx responses plus socket errors.
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /m$/)  return v * 60000
            if (v ~ /h$/)  return v * 3600000
            if (v ~ /s$/)  return v * 1000
            return v + 0
        }
        $1 == "Requests/sec:" { rps = $2 }
        $1 == "99%" || $1 == "99.000%" { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { errors += $NF }
        /Socket errors:/ { gsub(",", ""); errors += $4 + $6 + $8 + $10 }
        END {
            if (rps == "" || p99 == "") exit 1
            printf "%.0f %.3f %d\n", rps, p99, errors
        }' "$1"
}

# median: the median of the numbers on stdin, one a line.
median() {
    sort -g | awk '{ v[NR] = $1 }
        END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

measure() {
    local round conns target i n=${#TARGETS[@]} out rps p99 errors
    : >"$WORK/results"
    log "warming up each target for $WARMUP"
    for target in "${TARGETS[@]}"; do
        run_wrk "${PORT[$target]}" 64 "$WARMUP" "$WORK/warmup.txt"
    done
    for round in $(seq "$ROUNDS"); do
        for conns in $CONNS; do
            # Each round starts the rotation at a different target.
            for i in $(seq 0 $((n - 1))); do
                target=${TARGETS[$(((i + round - 1) % n))]}
                out=$WORK/wrk-$target-$conns-$round.txt
                log "round $round/$ROUNDS: $target, $conns connections, $DURATION"
                run_wrk "${PORT[$target]}" "$conns" "$DURATION" "$out"
                read -r rps p99 errors < <(parse_wrk "$out") ||
                    { cat "$out" >&2; die "cannot read wrk output for $target"; }
                echo "$target $conns $round $rps $p99 $errors" >>"$WORK/results"
                sleep 1
            done
        done
    done
}

# median_of TARGET CONNS FIELD: median of a results column (4 req/s,
# 5 p99, 6 errors).
median_of() {
    awk -v t="$1" -v c="$2" -v f="$3" '$1 == t && $2 == c { print $f }' "$WORK/results" | median
}

report() {
    local conns target rps p99 errors
    declare -gA RPS P99
    echo
    echo "Requests/s and p99 latency, median of $ROUNDS round(s) of $DURATION each"
    echo "(wrk -t1 at up to 64 connections, -t2 above; keep-alive; 3-byte body)"
    echo
    printf '%-10s %6s %12s %10s %8s\n' target conns req/s "p99 ms" errors
    for conns in $CONNS; do
        for target in "${TARGETS[@]}"; do
            rps=$(median_of "$target" "$conns" 4)
            p99=$(median_of "$target" "$conns" 5)
            errors=$(median_of "$target" "$conns" 6)
            RPS[$target,$conns]=$rps P99[$target,$conns]=$p99
            printf '%-10s %6s %12.0f %10.2f %8.0f\n' "$target" "$conns" "$rps" "$p99" "$errors"
        done
    done
    ((HAVE_GATEWAY)) || return 0

    echo
    echo "flotilla relative to the proxies (req/s: above 1 is faster; p99: below 1 is better)"
    echo "\"best\" is the better of haproxy and nginx on each measure"
    echo
    printf '%-6s %-8s %12s %10s\n' conns vs "req/s ratio" "p99 ratio"
    for conns in $CONNS; do
        awk -v c="$conns" \
            -v fr="${RPS[flotilla,$conns]}" -v fp="${P99[flotilla,$conns]}" \
            -v hr="${RPS[haproxy,$conns]}" -v hp="${P99[haproxy,$conns]}" \
            -v nr="${RPS[nginx,$conns]}" -v np="${P99[nginx,$conns]}" '
            function ratio(a, b) { return b > 0 ? sprintf("%.2f", a / b) : "n/a" }
            BEGIN {
                br = hr > nr ? hr : nr
                bp = hp < np ? hp : np
                printf "%-6s %-8s %12s %10s\n", c, "haproxy", ratio(fr, hr), ratio(fp, hp)
                printf "%-6s %-8s %12s %10s\n", c, "nginx", ratio(fr, nr), ratio(fp, np)
                printf "%-6s %-8s %12s %10s\n", c, "best", ratio(fr, br), ratio(fp, bp)
            }'
    done
}

# --- memory ----------------------------------------------------------------

# rss_with CONNS: starts a fresh gateway, opens CONNS idle keep-alive
# connections to it, and sets RSS_KB and OPEN (established connections on
# the gateway's port) while they are held.
rss_with() {
    local conns=$1 port pid helper="" i
    next_port
    port=$PORT_OUT
    start_gateway "gateway-rss-$conns" "$port"
    pid=$LAST_PID
    wait_ready "gateway-rss-$conns" "$pid" "$port"
    if ((conns > 0)); then
        start_bg "idle-$conns" python3 "$TEMPLATES/idle_conns.py" "$conns" "$port"
        helper=$LAST_PID
        for i in $(seq 1200); do
            grep -qx ready "$WORK/idle-$conns.log" && break
            kill -0 "$helper" 2>/dev/null ||
                { cat "$WORK/idle-$conns.log" >&2; die "idle_conns.py failed"; }
            sleep 0.1
        done
        grep -qx ready "$WORK/idle-$conns.log" || die "idle_conns.py not ready within 120s"
    fi
    sleep 1
    RSS_KB=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status")
    OPEN=$(ss -Htn state established "( sport = :$port )" | wc -l)
    if [[ -n $helper ]]; then stop_pid "$helper"; fi
    stop_pid "$pid"
}

measure_memory() {
    local conns
    echo
    echo "flotilla gateway resident memory (VmRSS), fresh process each"
    echo "(idle: after one request; otherwise N keep-alive connections, one request each)"
    echo
    printf '%-12s %10s %12s\n' "client conns" "RSS MB" "open conns"
    for conns in 0 $IDLE_CONNS; do
        if ((conns + 256 > NOFILE)); then
            printf '%-12s %10s %12s\n' "$conns" skipped "(ulimit -n $NOFILE)"
            continue
        fi
        log "gateway RSS with $conns idle connections"
        rss_with "$conns"
        printf '%-12s %10.1f %12s\n' "$([[ $conns == 0 ]] && echo idle || echo "$conns")" \
            "$(awk -v k="$RSS_KB" 'BEGIN { print k / 1024 }')" "$OPEN"
    done
}

# --- main ------------------------------------------------------------------

main() {
    install_tools
    build_flotilla
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/flotilla-bench.XXXXXX")

    # Room for 10,000 client connections plus the gateway's side of them.
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    NOFILE=$(ulimit -n)

    HAVE_GATEWAY=1
    if ! "$BIN" serve --help 2>/dev/null | grep -q -- '--config'; then
        HAVE_GATEWAY=0
        log "warning: this flotilla has no \`serve --config\`; the gateway is left out"
    fi
    TARGETS=(direct haproxy nginx)
    if ((HAVE_GATEWAY)); then TARGETS+=(flotilla); fi

    echo "flotilla $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')," \
        "$(haproxy -v | head -n 1 | cut -d' ' -f1,3)," \
        "$(nginx -v 2>&1 | sed 's/.*: //')," \
        "$(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2);" \
        "$(nproc) cores, ulimit -n $NOFILE"

    start_all
    measure
    report
    if ((HAVE_GATEWAY)); then
        measure_memory
    fi
}

main "$@"
