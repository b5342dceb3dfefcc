"""A small web service for slipway's Dockerfile builds: the standard library only.

GET /            a greeting with the commit it was built from
GET /healthz     200 while the process lives
GET /readyz      200 once it serves
GET /version     the commit and version, as JSON

It listens on 127.0.0.1 (HOST) and PORT (default 8080), and stops on SIGTERM.

`python3 app.py migrate` is its release-phase command: it records in DATA_DIR
that the data is ready for this commit, and exits.
"""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = os.environ.get("APP_COMMIT", "unknown")
VERSION = os.environ.get("APP_VERSION", COMMIT[:7])
GREETING = "Hello from pyapp"


def answer(path):
    """Returns the status, content type and body for a GET of path."""
    if path == "/":
        return 200, "text/plain", "%s %s\n" % (GREETING, VERSION)
    if path in ("/healthz", "/readyz"):
        return 200, "text/plain", "ok\n"
    if path == "/version":
        return 200, "application/json", json.dumps({"commit": COMMIT, "version": VERSION}) + "\n"
    return 404, "application/json", json.dumps({"error": "no such path: " + path}) + "\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        status, ctype, body = answer(self.path.split("?", 1)[0])
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        sys.stderr.write(json.dumps({"msg": fmt % args, "commit": COMMIT}) + "\n")


def migrate():
    """Prepares the data for this commit: run once per deployment, before its replicas start."""
    data = os.environ.get("DATA_DIR", ".")
    with open(os.path.join(data, "migrated-" + COMMIT), "w") as f:
        f.write(VERSION + "\n")
    print(json.dumps({"msg": "data ready", "commit": COMMIT, "dataDir": data}), flush=True)


def main():
    if sys.argv[1:] == ["migrate"]:
        migrate()
        return
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(json.dumps({"msg": "listening", "addr": "%s:%d" % (host, port), "commit": COMMIT, "version": VERSION,
                      "python": sys.version.split()[0]}), flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
