#!/usr/bin/env bash
# Holds every service's OpenAPI document to what its handlers do: starts
# `flotilla up` (embedded defaults) and runs schemathesis, with all its
# checks, against each service's document through the gateway, once with a
# fixed seed and once with a random one (printed, to replay a failure).
#
#   tests/contract/run.sh [service...]    (every service by default)
#
# FLOTILLA_BIN names the binary (target/debug/flotilla by default).
# tests/contract/<service>.toml, when there is one, is that service's
# schemathesis configuration. schemathesis is installed from PyPI into
# target/schemathesis, pinned.
set -euo pipefail
cd "$(dirname "$0")/../.."
flotilla=${FLOTILLA_BIN:-target/debug/flotilla}
version=4.32.5
venv=target/schemathesis
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==$version"
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=$(mktemp -d)
base="http://127.0.0.1:$port"
# Batches of at most 2,000 items (the document says so): a fuzzer sends
# the largest allowed, and 100,000-item batches take longer than it waits.
"$flotilla" up --port "$port" --data "$data" --kv-batch-max-items 2000 >"$data/up.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
    curl -fs "$base/health" >/dev/null && break
    sleep 0.1
done

# A user's access token: sign up, then the login form (with its CSRF
# cookie), which sets the auth_token cookie.
email=contract@example.com password=contract-passw0rd-4217
csrf=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
curl -fs -o /dev/null "$base/auth/signup" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"name\":\"Contract\",\"password\":\"$password\"}"
token=$(curl -s -o /dev/null -D - "$base/auth/login" -H "cookie: flotilla_csrf=$csrf" \
    --data-urlencode "csrf=$csrf" --data-urlencode "email=$email" --data-urlencode "password=$password" \
    | tr -d '\r' | sed -n 's/^set-cookie: auth_token=\([^;]*\).*/\1/Ip')
[ -n "$token" ] || { echo "contract: could not sign in" >&2; exit 1; }

services=${*:-$(curl -fs "$base/_flotilla/api/services" | python3 -c 'import json, sys; print(" ".join(sorted(json.load(sys.stdin)["services"])))')}
random_seed=$(python3 -c 'import random; print(random.randrange(1, 2**31))')
echo "contract: schemathesis $version, seeds 1 and $random_seed, services: $services"
status=0
for seed in 1 "$random_seed"; do
    for service in $services; do
        echo "contract: $service, seed $seed"
        config=()
        [ -f "tests/contract/$service.toml" ] && config=(--config-file "tests/contract/$service.toml")
        "$venv/bin/schemathesis" "${config[@]}" run "$base/$service/openapi.json" --url "$base/$service" \
            -H "Authorization: Bearer $token" --checks all --max-examples 40 --seed "$seed" \
            --generation-database none --no-color || status=1
    done
done
if grep -q '"level":"ERROR"\|panicked' "$data/up.log"; then
    echo "contract: the stack logged errors:" >&2
    grep '"level":"ERROR"\|panicked' "$data/up.log" | head -20 >&2
    status=1
fi
exit $status
