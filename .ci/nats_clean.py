"""Deletes the JetStream streams that test runs leave behind (TEST_*, T*,
P* names made by the suites), or those whose names match the pattern given
as the first argument, on the server of NATS_URL (default
nats://127.0.0.1:4222), speaking the NATS protocol directly."""
import json
import os
import re
import socket
import sys
from urllib.parse import urlsplit

SERVER = urlsplit(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
HOST, PORT = SERVER.hostname or "127.0.0.1", SERVER.port or 4222
TEST_STREAM = re.compile(r"^(TEST_[0-9A-F]+|T[0-9A-F]{12}|PTMP[0-9A-Z]+)$")


class Nats:
    def __init__(self):
        self.sock = socket.create_connection((HOST, PORT), timeout=5)
        self.buf = b""
        self.line()  # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.clean 1\r\n')

    def line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def request(self, subject, payload=b""):
        self.sock.sendall(b"PUB %s _INBOX.clean %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
        while True:
            line = self.line()
            if line.startswith(b"PING"):
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"MSG"):
                size = int(line.split()[-1])
                while len(self.buf) < size + 2:
                    self.buf += self.sock.recv(65536)
                body, self.buf = self.buf[:size], self.buf[size + 2:]
                return json.loads(body or b"{}")


def main():
    nats = Nats()
    names = nats.request("$JS.API.STREAM.NAMES", b"{}").get("streams") or []
    pattern = re.compile(sys.argv[1]) if len(sys.argv) > 1 else TEST_STREAM
    doomed = [n for n in names if pattern.match(n)]
    for name in doomed:
        nats.request(f"$JS.API.STREAM.DELETE.{name}")
    print(f"deleted {len(doomed)} stream(s)")


if __name__ == "__main__":
    try:
        main()
    except OSError as error:
        print(f"NATS cleanup skipped: {error}", file=sys.stderr)
