#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (SECONDS_PER_TARGET, 120 by
# default), each with its own corpus under fuzz/corpus/ (and the examples in
# fuzz/seeds/), and prints what each did. Exits 1 if a target found a crash.
set -uo pipefail
cd "$(dirname "$0")"
seconds=${SECONDS_PER_TARGET:-120}
status=0
mkdir -p target
for target in gateway_config gateway_request service_inputs; do
    mkdir -p "corpus/$target"
    echo "fuzz: $target for ${seconds}s"
    seeds=()
    [ -d "seeds/$target" ] && seeds=("seeds/$target")
    cargo +nightly fuzz run --sanitizer none "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        >"target/$target.log" 2>&1 || status=1
    grep -E "^(stat::|==[0-9]+==|SUMMARY|thread .* panicked)|DONE" "target/$target.log" || true
done
exit $status
