#!/usr/bin/python3
"""TCP backend that accepts connections and holds them open without sending anything.

Writes "<accepted> <open>" to --status (atomically) whenever the counts change, so a benchmark
can tell when every client connection has reached the backend through the proxy.
Stops on SIGTERM/SIGINT.
"""

import argparse
import os
import resource
import selectors
import signal
import socket
import time


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def write_status(path, accepted, open_):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{accepted} {open_}\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--status", required=True)
    args = ap.parse_args()

    raise_nofile()
    stop = []
    signal.signal(signal.SIGTERM, lambda s, f: stop.append(s))
    signal.signal(signal.SIGINT, lambda s, f: stop.append(s))

    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", args.port))
    lsock.listen(4096)
    lsock.setblocking(False)

    sel = selectors.DefaultSelector()
    sel.register(lsock, selectors.EVENT_READ, None)
    accepted = 0
    conns = {}
    write_status(args.status, 0, 0)
    last = (0, 0)
    last_write = time.monotonic()
    while not stop:
        for key, _ in sel.select(timeout=0.2):
            if key.data is None:
                while True:
                    try:
                        c, _ = lsock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # EMFILE and friends: stop accepting for this round
                        break
                    c.setblocking(False)
                    conns[c.fileno()] = c
                    sel.register(c, selectors.EVENT_READ, "conn")
                    accepted += 1
            else:
                c = key.fileobj
                try:
                    data = c.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:  # peer closed
                    sel.unregister(c)
                    conns.pop(c.fileno(), None)
                    c.close()
        now = (accepted, len(conns))
        if now != last or time.monotonic() - last_write > 1.0:
            write_status(args.status, *now)
            last, last_write = now, time.monotonic()
    for c in conns.values():
        c.close()
    lsock.close()


if __name__ == "__main__":
    main()
