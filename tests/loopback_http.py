"""Small servers on free loopback ports for the fetcher's tests.

:class:`RecordingServer` is an HTTP server that records every request and hands it to
:meth:`RecordingServer.route`; :class:`RawServer` accepts TCP connections and answers each with
a function of its own (to send what no HTTP library would: trickled bytes, odd headers), and
records every connection it accepts — whether or not a request ever arrives.
"""

from __future__ import annotations

import io
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image


def _tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(buffer, "PNG")
    return buffer.getvalue()


TINY_PNG = _tiny_png()
"""An 8 x 8 grey PNG for the servers to serve."""


class RecordingServer:
    """Records every request as (method, path, headers, json body); subclasses answer in ``route``.
    With ``tls`` (a server-side context) it speaks HTTPS."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(("GET", self.path, dict(self.headers), None))
                server.route(self, "GET", None)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
                server.requests.append(("POST", self.path, dict(self.headers), body))
                server.route(self, "POST", body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_port
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def route(self, h, method, body):
        raise NotImplementedError

    @staticmethod
    def send(h, status, data, content_type="text/plain"):
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def send_redirect(h, location: bytes):
        """A 302 whose Location is ``location`` byte for byte (any characters)."""
        h.wfile.write(b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n")

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def answer_with_tiny_png(connection) -> None:
    """A :class:`RawServer` answer: ``TINY_PNG`` to whatever was asked."""
    connection.recv(65536)
    connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\nContent-Length: "
                       + str(len(TINY_PNG)).encode() + b"\r\n\r\n" + TINY_PNG)


class RawServer:
    """Accepts TCP connections on 127.0.0.1 (and on ::1 at the same port when free) and runs
    ``answer(connection)`` for each in a thread; ``connections`` counts the accepted ones."""

    def __init__(self, answer):
        self.connections = 0
        self._count_lock = threading.Lock()
        self._answer = answer
        self._closed = threading.Event()
        self._listeners = [socket.create_server(("127.0.0.1", 0))]
        self.port = self._listeners[0].getsockname()[1]
        try:
            self._listeners.append(socket.create_server(("::1", self.port), family=socket.AF_INET6))
        except OSError:
            pass  # no IPv6 loopback here, or the port is taken on it
        for listener in self._listeners:
            listener.settimeout(0.05)
            threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener):
        while not self._closed.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            with self._count_lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection):
        with connection:
            try:
                self._answer(connection)
            except OSError:
                pass  # the client went away

    def settle(self, seconds: float = 0.05) -> int:
        """``connections`` after a moment (a connect completes before the accept records it)."""
        time.sleep(seconds)
        return self.connections

    def close(self):
        self._closed.set()
        for listener in self._listeners:
            listener.close()
