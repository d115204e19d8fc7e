#!/usr/bin/env python3
"""A bounded chaos soak: `flotilla up --processes --replicas 2` on PostgreSQL
and NATS JetStream, an open-loop mix of reads and writes across users,
notifications and kv, and `kill -9` of a random instance of one of those
three every KILL_EVERY seconds. The supervisor restarts what was killed.

Afterwards it reports, with the targets in brackets:
  - idempotent requests (GETs) that failed: 5xx or no answer      [0]
  - writes answered 2xx that are missing                           [0]
  - events whose effect happened twice: a user with more than one
    "User <id> created" notification, a batch stored twice         [0]
and exits 1 when a target is missed. Writes that failed (a POST in flight
on a killed instance may get 502: the gateway does not resend what may have
been applied) are counted, not held against it.

    python3 bench/chaos.py            # DURATION=300 RATE=40 KILL_EVERY=10
    FLOTILLA_BIN=target/release/flotilla DURATION=600 python3 bench/chaos.py
"""

import concurrent.futures
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

DURATION = min(float(os.environ.get("DURATION", "300")), 600)
RATE = float(os.environ.get("RATE", "40"))  # requests per second, open loop
KILL_EVERY = float(os.environ.get("KILL_EVERY", "10"))
BIN = os.environ.get("FLOTILLA_BIN") or (
    "target/release/flotilla" if os.path.exists("target/release/flotilla") else "target/debug/flotilla"
)
PG_URL = os.environ.get("PG_URL", "postgres://postgres@127.0.0.1:5432/test")
NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
TIMEOUT = 15


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One HTTP/1.1 keep-alive connection per thread to the gateway."""

    def __init__(self, port):
        self.port = port
        self.local = threading.local()

    def call(self, method, path, body=None):
        """(status, parsed JSON or None); status 0 when nothing came back."""
        payload = None if body is None else json.dumps(body)
        headers = {"content-type": "application/json"} if body is not None else {}
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
            try:
                conn.request(method, path, payload, headers)
                response = conn.getresponse()
                data = response.read()
                try:
                    parsed = json.loads(data) if data else None
                except ValueError:
                    parsed = None
                return response.status, parsed
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                conn.close()
                self.local.conn = None
                # A kept-alive connection the gateway closed between two
                # requests: the request never reached it, so it is sent again
                # on a new one, as HTTP clients do.
                if attempt == 0 and isinstance(error, http.client.RemoteDisconnected) and method == "GET":
                    continue
                return 0, None
            except OSError:
                conn.close()
                self.local.conn = None
                return 0, None
        return 0, None


class Soak:
    def __init__(self, port):
        self.client = Client(port)
        self.lock = threading.Lock()
        self.users = []  # ids answered 201
        self.messages = []  # ids answered 2xx
        self.pairs = {}  # key -> correlation id answered 202
        self.batches = {}  # id -> size answered 200
        self.counts = {}  # (kind, outcome) -> n
        self.failed_gets = []

    def count(self, kind, outcome):
        with self.lock:
            self.counts[(kind, outcome)] = self.counts.get((kind, outcome), 0) + 1

    def one(self):
        roll = random.random()
        tag = uuid.uuid4().hex[:12]
        if roll < 0.15:
            status, body = self.client.call("POST", "/users", {"name": "Chaos", "email": f"c{tag}@example.com"})
            self.count("POST /users", status)
            if status == 201:
                with self.lock:
                    self.users.append(body["id"])
        elif roll < 0.25:
            status, body = self.client.call("POST", "/notifications/messages", {"channel": "#chaos", "message": f"soak {tag}"})
            self.count("POST /notifications/messages", status)
            if 200 <= status < 300:
                with self.lock:
                    self.messages.append(body["id"])
        elif roll < 0.35:
            key = f"k{tag}"
            status, body = self.client.call("POST", "/kv/roundtrip", {"key": key, "value": tag})
            self.count("POST /kv/roundtrip", status)
            if status == 202:
                with self.lock:
                    self.pairs[key] = body["correlation_id"]
        elif roll < 0.38:
            size = 50
            status, _ = self.client.call("POST", "/kv/batch", {"id": f"b{tag}", "size": size})
            self.count("POST /kv/batch", status)
            if status == 200:
                with self.lock:
                    self.batches[f"b{tag}"] = size
        else:
            with self.lock:
                known = random.choice(self.users) if self.users else None
            path = random.choice(
                [f"/users/{known}" if known else "/users?limit=5", "/users?limit=5", "/notifications/messages?limit=5", "/kv/batches?limit=5"]
            )
            status, _ = self.client.call("GET", path)
            kind = "GET " + re.sub(r"/[0-9a-f-]{36}$", "/{id}", path.split("?")[0])
            self.count(kind, status)
            if status == 0 or status >= 500:
                with self.lock:
                    self.failed_gets.append((round(time.monotonic(), 2), path, status))


def instances(data, services="[a-z]+"):
    pattern = f"serve {services} .*{re.escape(data)}"
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def wait_healthy(port, timeout):
    deadline = time.monotonic() + timeout
    client = Client(port)
    while time.monotonic() < deadline:
        status, body = client.call("GET", "/health")
        if status == 200 and body and all(
            s.get("status") in ("pass", "warn") and sum(i.get("status") == "pass" for i in s.get("instances", [])) >= 2
            for s in body.get("services", {}).values()
        ):
            return True
        time.sleep(0.5)
    return False


def all_messages(client):
    items, after = [], ""
    while True:
        status, page = client.call("GET", f"/notifications/messages?limit=1000&after={after}")
        if status != 200:
            raise RuntimeError(f"listing notifications answered {status}")
        items += page["items"]
        if not page.get("next"):
            return items
        after = page["next"]


def main():
    tag = f"chaos{os.getpid()}"
    port = free_port()
    data = tempfile.mkdtemp(prefix="flotilla-chaos-")
    command = [
        BIN, "up", "--port", str(port), "--data", data, "--processes", "--replicas", "2",
        "--db", PG_URL, "--db-schema-prefix", f"{tag}_", "--bus", NATS_URL, "--bus-namespace", tag,
    ]
    log = open(os.path.join(data, "up.log"), "w")
    stack = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"})
    try:
        if not wait_healthy(port, 120):
            sys.exit("chaos: the stack did not become healthy")
        print(f"chaos: {BIN}, {DURATION:.0f} s at {RATE:.0f} req/s, kill -9 every {KILL_EVERY:.0f} s, "
              f"{len(instances(data))} service instances")
        soak = Soak(port)
        kills = []
        stop = threading.Event()

        def killer():
            while not stop.wait(KILL_EVERY):
                pids = instances(data, "(users|notifications|kv)")
                if pids:
                    victim = random.choice(pids)
                    line = open(f"/proc/{victim}/cmdline").read().split("\0") if os.path.exists(f"/proc/{victim}") else []
                    service = line[2] if len(line) > 2 else "?"
                    os.kill(victim, signal.SIGKILL)
                    kills.append((round(time.monotonic() - started, 1), service))

        started = time.monotonic()
        threading.Thread(target=killer, daemon=True).start()
        with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
            sent = 0
            while (now := time.monotonic() - started) < DURATION:
                due = int(now * RATE)
                for _ in range(due - sent):
                    pool.submit(soak.one)
                sent = max(sent, due)
                time.sleep(0.005)
            stop.set()
        print(f"chaos: {sent} requests sent, {len(kills)} instances killed: "
              + ", ".join(f"{t}s {s}" for t, s in kills))

        # Settle: every instance back, the outboxes and consumers caught up.
        wait_healthy(port, 120)
        client = Client(port)
        missing, twice = [], []
        for user in soak.users:
            if client.call("GET", f"/users/{user}")[0] != 200:
                missing.append(f"user {user}")
        for message in soak.messages:
            if client.call("GET", f"/notifications/messages/{message}")[0] != 200:
                missing.append(f"message {message}")
        deadline = time.monotonic() + 60
        pending = dict(soak.pairs)
        while pending and time.monotonic() < deadline:
            for key, correlation in list(pending.items()):
                status, body = client.call("GET", f"/kv/pairs/{key}")
                if status == 200 and body.get("correlation_id") == correlation:
                    del pending[key]
            time.sleep(0.5)
        missing += [f"pair {key}" for key in pending]
        for batch, size in soak.batches.items():
            status, body = client.call("GET", f"/kv/batches/{batch}")
            keys = [item["key"] for item in (body or {}).get("items", [])]
            if status != 200 or body.get("status") != "done":
                missing.append(f"batch {batch}")
            elif len(keys) != size or len(set(keys)) != size:
                twice.append(f"batch {batch}: {len(keys)} items, {len(set(keys))} distinct")
        # Each user.created has exactly one effect: its notification.
        deadline = time.monotonic() + 60
        while True:
            texts = {}
            for message in all_messages(client):
                texts[message["message"]] = texts.get(message["message"], 0) + 1
            effects = {user: texts.get(f"User {user} created", 0) for user in soak.users}
            if all(n >= 1 for n in effects.values()) or time.monotonic() > deadline:
                break
            time.sleep(1)
        missing += [f"notification of user {u}" for u, n in effects.items() if n == 0]
        twice += [f"user {u}: {n} notifications" for u, n in effects.items() if n > 1]
        twice += [f"{text!r} {n} times" for text, n in texts.items() if text.startswith("User ") and n > 1
                  and text[5:-8] not in effects]

        print("\n| request | outcome | count |\n|---|---|---|")
        for (kind, outcome), n in sorted(soak.counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            print(f"| {kind} | {outcome or 'no answer'} | {n} |")
        print(f"\nfailed idempotent requests: {len(soak.failed_gets)} (target 0)")
        for failure in soak.failed_gets[:20]:
            print(f"  {failure}")
        print(f"2xx writes missing afterwards: {len(missing)} (target 0)")
        for item in missing[:20]:
            print(f"  {item}")
        print(f"events whose effect happened twice: {len(twice)} (target 0)")
        for item in twice[:20]:
            print(f"  {item}")
        print(f"checked: {len(soak.users)} users, {len(soak.messages)} messages, "
              f"{len(soak.pairs)} pairs, {len(soak.batches)} batches")
        sys.exit(1 if soak.failed_gets or missing or twice else 0)
    finally:
        stack.terminate()
        try:
            stack.wait(30)
        except subprocess.TimeoutExpired:
            stack.kill()
        subprocess.run(
            ["psql", PG_URL, "-Atqc",
             f"DO $$DECLARE s text; BEGIN FOR s IN SELECT nspname FROM pg_namespace WHERE nspname LIKE '{tag}\\_%' "
             "LOOP EXECUTE format('DROP SCHEMA %I CASCADE', s); END LOOP; END$$"],
            capture_output=True,
        )


if __name__ == "__main__":
    main()
