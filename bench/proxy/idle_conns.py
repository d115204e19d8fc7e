#!/usr/bin/env python3
"""Hold N idle HTTP/1.1 keep-alive connections open to a server.

Usage: idle_conns.py N PORT [HOST]

Opens N TCP connections to HOST:PORT (default 127.0.0.1), sends one
`GET / HTTP/1.1` on each and reads its whole response, so that every
connection is a real keep-alive connection that has served a request. Then
prints "ready" and holds them all open until killed.

Connections are opened in batches, so the server never has more than one
batch of requests in flight. Standard library only.
"""

import resource
import selectors
import signal
import socket
import sys

BATCH = 250
TIMEOUT = 30.0
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def raise_fd_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, needed))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        sys.exit(f"idle_conns: need {needed} file descriptors, the limit is {soft}")


def response_complete(buf):
    """True once buf holds a full response with a Content-Length body."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    length = 0
    for line in buf[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding":
            # A chunked body ends with an empty chunk.
            return buf.endswith(b"0\r\n\r\n")
    return len(buf) >= head_end + 4 + length


def run_batch(sel, host, port, count):
    """Opens count connections, one request each; returns the sockets."""
    pending = {}
    for _ in range(count):
        sock = socket.create_connection((host, port), timeout=TIMEOUT)
        sock.sendall(REQUEST)
        sock.setblocking(False)
        pending[sock] = bytearray()
        sel.register(sock, selectors.EVENT_READ)
    done = []
    while pending:
        events = sel.select(TIMEOUT)
        if not events:
            sys.exit(f"idle_conns: {len(pending)} responses did not come in {TIMEOUT:.0f}s")
        for key, _ in events:
            sock = key.fileobj
            data = sock.recv(65536)
            if not data:
                sys.exit("idle_conns: the server closed a connection before answering")
            buf = pending[sock]
            buf += data
            if response_complete(buf):
                status = bytes(buf.split(b"\r\n", 1)[0])
                if status.split()[1:2] != [b"200"]:
                    sys.exit(f"idle_conns: unexpected response {status!r}")
                sel.unregister(sock)
                del pending[sock]
                done.append(sock)
    return done


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.strip().splitlines()[2])
    total, port = int(sys.argv[1]), int(sys.argv[2])
    host = sys.argv[3] if len(sys.argv) == 4 else "127.0.0.1"
    raise_fd_limit(total + 64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    sel = selectors.DefaultSelector()
    conns = []
    while len(conns) < total:
        conns += run_batch(sel, host, port, min(BATCH, total - len(conns)))
    print("ready", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
