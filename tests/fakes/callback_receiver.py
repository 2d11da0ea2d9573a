"""A loopback HTTP server that records the callbacks POSTed to it (``url``): their paths,
their JSON bodies, and an event set at the first one."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class CallbackReceiver:
    def __init__(self):
        self.paths: list[str] = []
        self.bodies: list[dict] = []
        self.received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                receiver.paths.append(self.path)
                receiver.bodies.append(json.loads(self.rfile.read(length) or b"null"))
                self.send_response(204)
                self.end_headers()
                receiver.received.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
