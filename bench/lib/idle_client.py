#!/usr/bin/python3
"""Opens N TCP connections to 127.0.0.1:PORT and holds them idle (never sends a byte).

Connections are opened in batches; after each batch the client waits until the backend has
accepted all but the last batch (read from the backend's --backend-status file), so a proxy's
accept queue never overflows and no SYN has to be retransmitted.
Writes "<connected> <alive>" to --status: `alive` counts connections on which nothing was
received (no data, no EOF, no reset). Stops on SIGTERM/SIGINT, closing everything.
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
        sys.exit(f"idle_client: RLIMIT_NOFILE hard limit {hard} < {need}")


def write_status(path, connected, alive):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{connected} {alive}\n")
    os.replace(tmp, path)


def backend_accepted(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--status", required=True)
    ap.add_argument("--backend-status", required=True)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=60, help="seconds to open all connections")
    args = ap.parse_args()

    raise_nofile(args.count + 64)
    stop = []
    signal.signal(signal.SIGTERM, lambda s, f: stop.append(s))
    signal.signal(signal.SIGINT, lambda s, f: stop.append(s))

    deadline = time.monotonic() + args.timeout
    ep = select.epoll()
    socks = {}
    write_status(args.status, 0, 0)
    while len(socks) < args.count and not stop:
        if time.monotonic() > deadline:
            sys.exit(f"idle_client: only {len(socks)} of {args.count} connections after {args.timeout}s")
        for _ in range(min(args.batch, args.count - len(socks))):
            s = socket.create_connection(("127.0.0.1", args.port), timeout=10)
            s.setblocking(False)
            socks[s.fileno()] = s
            ep.register(s.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
        # pace: let the proxy and the backend catch up to within one batch
        while backend_accepted(args.backend_status) < len(socks) - args.batch and not stop:
            if time.monotonic() > deadline:
                sys.exit(f"idle_client: backend accepted {backend_accepted(args.backend_status)} "
                         f"of {len(socks)} connections after {args.timeout}s")
            time.sleep(0.01)
        write_status(args.status, len(socks), len(socks))
    print(f"idle_client: {len(socks)} connections open", flush=True)

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
