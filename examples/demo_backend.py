#!/usr/bin/env python3
"""A tiny HTTP backend for the quickstart: answers every GET with its own name."""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"hello from {self.server.backend_name} (you asked for {self.path})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    port = int(sys.argv[1])
    name = sys.argv[2] if len(sys.argv) > 2 else f"backend-{port}"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.backend_name = name
    server.serve_forever()


if __name__ == "__main__":
    main()
