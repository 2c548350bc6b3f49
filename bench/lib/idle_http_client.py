#!/usr/bin/python3
"""Opens N HTTP/1.1 keep-alive connections to 127.0.0.1:PORT, makes one request on each, then
holds them idle.

Connections are opened in batches: connect every socket of the batch, send `GET PATH` on each,
then read each response completely (status line, headers, Content-Length body) before the next
batch, so the proxy's accept queue never overflows. A response other than 200, or one that asks
to close the connection, is an error. Writes "<done> <alive>" to --status: `done` counts
connections whose request completed, `alive` those on which nothing arrived since (no data, no
EOF, no reset). Stops on SIGTERM/SIGINT, closing everything.
"""

import argparse
import os
import resource
import select
import signal
import socket
import sys
import time


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < need:
        sys.exit(f"idle_http_client: RLIMIT_NOFILE hard limit {hard} < {need}")


def write_status(path, done, alive):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{done} {alive}\n")
    os.replace(tmp, path)


def read_response(s):
    """Reads one response with a Content-Length body; returns (status, headers dict)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("EOF before the end of the response headers")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("EOF in the response body")
        body += chunk
    if len(body) > length:
        raise ConnectionError("more data than Content-Length")
    return status, headers


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--status", required=True)
    ap.add_argument("--path", default="/")
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=60, help="seconds to open all connections")
    args = ap.parse_args()

    raise_nofile(args.count + 64)
    stop = []
    signal.signal(signal.SIGTERM, lambda s, f: stop.append(s))
    signal.signal(signal.SIGINT, lambda s, f: stop.append(s))

    request = (f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n"
               f"User-Agent: sluice-bench-idle\r\nAccept: */*\r\n\r\n").encode()
    deadline = time.monotonic() + args.timeout
    ep = select.epoll()
    socks = {}
    write_status(args.status, 0, 0)
    while len(socks) < args.count and not stop:
        if time.monotonic() > deadline:
            sys.exit(f"idle_http_client: only {len(socks)} of {args.count} connections after {args.timeout}s")
        batch = []
        for _ in range(min(args.batch, args.count - len(socks))):
            s = socket.create_connection(("127.0.0.1", args.port), timeout=10)
            batch.append(s)
        for s in batch:
            s.sendall(request)
        for s in batch:
            try:
                status, headers = read_response(s)
            except (OSError, ValueError) as e:
                sys.exit(f"idle_http_client: connection {len(socks) + 1}: {e}")
            if status != 200 or headers.get("connection", "").lower() == "close":
                sys.exit(f"idle_http_client: connection {len(socks) + 1}: status {status}, "
                         f"connection: {headers.get('connection', '-')}")
            s.setblocking(False)
            socks[s.fileno()] = s
            ep.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        write_status(args.status, len(socks), len(socks))
    print(f"idle_http_client: {len(socks)} keep-alive connections open, one request each", flush=True)

    dead = set()
    while not stop:
        for fd, _ in ep.poll(0.5):
            dead.add(fd)
            ep.unregister(fd)
        write_status(args.status, len(socks), len(socks) - len(dead))
    for s in socks.values():
        s.close()


if __name__ == "__main__":
    main()
