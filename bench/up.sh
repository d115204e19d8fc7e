# Sourced by the benchmarks: `start_up DIR ARGS...` starts the release
# `flotilla up` on a free port with its data in DIR and sets `pid` and `url`
# (the gateway's); `stop_up` stops it.

start_up() {
    local data=$1; shift
    RUST_LOG=warn target/release/flotilla up --port 0 --data "$data" "$@" > "$data.out" 2>/dev/null &
    pid=$!
    url=""
    for _ in $(seq 1 100); do
        url=$(awk '/^gateway/ { print $2 }' "$data.out")
        [[ -n $url ]] && return
        sleep 0.1
    done
    echo "flotilla up did not start ($data)" >&2
    exit 1
}

stop_up() {
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}
