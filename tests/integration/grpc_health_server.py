#!/usr/bin/python3
"""A gRPC server (Debian's grpcio) implementing grpc.health.v1.Health/Check by hand, for the
gRPC health check tests. It runs as a process of its own: grpcio's fork handlers abort a
process that forks (to start sluice) after one of its servers stopped.

    grpc_health_server.py --status-file FILE [--cert CHAIN --key KEY] [--no-health]

FILE holds a JSON object {service: serving status} (1 SERVING, 2 NOT_SERVING, ...), read at
every call, so the test flips a status by rewriting it; a service it does not list gets
NOT_FOUND ("unknown service"). With --no-health the server has no Health service
(UNIMPLEMENTED). Prints "listening PORT" once serving, then one JSON line per Check call:
{"service": ..., "user_agent": ...}. Exits when stdin closes.
"""

import argparse
import json
import sys
import threading
from concurrent import futures

import grpc


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def decode_check_request(data):
    """The service of a HealthCheckRequest (field 1, string); None when malformed."""
    pos, service = 0, ""
    while pos < len(data):
        if data[pos] != 0x0A:
            return None
        pos += 1
        n, shift = 0, 0
        while True:
            if pos >= len(data) or shift > 63:
                return None
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        if pos + n > len(data):
            return None
        service = data[pos:pos + n].decode("utf-8", "replace")
        pos += n
    return service


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--status-file", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--no-health", action="store_true")
    args = ap.parse_args()

    out_lock = threading.Lock()  # calls run on several threads: one whole line each

    def check(request, context):
        service = decode_check_request(request)
        agent = dict(context.invocation_metadata()).get("user-agent", "")
        with out_lock:
            sys.stdout.write(json.dumps({"service": service, "user_agent": agent}) + "\n")
            sys.stdout.flush()
        if service is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed request")
        with open(args.status_file) as f:
            status = json.load(f).get(service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return b"\x08" + varint(status) if status else b""

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
    if not args.no_health:
        handler = grpc.method_handlers_generic_handler(
            "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)})
        server.add_generic_rpc_handlers((handler,))
    if args.cert:
        with open(args.key, "rb") as k, open(args.cert, "rb") as c:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print("listening %d" % port, flush=True)
    sys.stdin.read()  # until the test closes it (or exits)
    server.stop(0)


if __name__ == "__main__":
    main()
