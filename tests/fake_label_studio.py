"""A tiny HTTP server on 127.0.0.1 playing the Label Studio routes the service uses, as Label
Studio 1.23.2 answers them (``/work/shared/notes/label-studio-1.23-protocol.md`` §6), each
needing ``Authorization: Token <TOKEN>``:

* ``GET /data/upload/<project>/<file>``: the image bytes;
* ``POST /api/predictions/``: records the prediction (its ``result`` as given, region ids
  included), answers 201 with it, its ``id`` and ``project``;
* ``GET /api/predictions/?task=ID``: the task's stored predictions, a JSON list.
"""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

from samiam.labelstudio.config import EXAMPLE_CONFIG

LABEL_CONFIG = EXAMPLE_CONFIG
"""The labeling config of the fake's project 1 (brush labels on an image)."""
TOKEN = "0123456789abcdef0123456789abcdef01234567"
PROJECT = "1.1700000000"
"""``project`` as Label Studio sends it to /predict: "<id>.<created_at unix time>"."""


def task(task_id: int, url: str) -> dict:
    """A task of project 1 as Label Studio sends it to /predict (the fields the backend reads)."""
    return {"id": task_id, "data": {"image": url}, "project": 1, "annotations": [], "predictions": []}


def two_texture_png(height: int, width: int) -> bytes:
    """A grey PNG whose left half is a fine checker-like texture and right half coarse stripes."""
    yy, xx = np.mgrid[:height, :width]
    fine = 127 + 60 * np.sin(xx * 1.2) * np.sin(yy * 1.2)
    coarse = 127 + 60 * np.sin(xx * 0.35)
    image = np.where(xx < width // 2, fine, coarse).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


class FakeLabelStudio:
    """``port`` 0 picks a free one; give an earlier instance's port to play a restarted server."""

    def __init__(self, port: int = 0):
        self.files: dict[str, tuple[bytes, str]] = {}
        self.downloads = 0
        """Images served so far."""
        self.predictions: list[dict] = []
        """Bodies of the prediction POSTs Label Studio stored, in order (id = index + 1)."""
        self._by_task: dict[str, list[int]] = {}
        self.refused_writes = 0
        self.refuse_next_writes = 0
        """How many of the next prediction POSTs to refuse with 400 (as for an unknown task)."""
        self.lose_next_answers = 0
        """How many of the next prediction POSTs to store but answer by dropping the connection
        (the answer lost on the way, as when the backend's worker dies before reading it)."""
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server._get(self)

            def do_POST(self):
                server._post(self, json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def add_file(self, name: str, data: bytes, content_type: str = "image/png") -> str:
        """Serve ``data`` as an upload of project 1; returns the task-data URL (relative, as LS)."""
        path = f"/data/upload/1/{name}"
        self.files[path] = (data, content_type)
        return path

    @staticmethod
    def _send(handler, status: int, body: bytes, content_type: str = "application/json") -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _get(self, handler) -> None:
        if handler.headers.get("Authorization") != f"Token {TOKEN}":
            return self._send(handler, 401, b'{"detail": "Authentication credentials were not provided."}')
        parts = urlsplit(handler.path)
        if parts.path.rstrip("/") == "/api/predictions":
            task_id = parse_qs(parts.query).get("task", [""])[0]
            with self._lock:
                stored = [self._stored(i) for i in self._by_task.get(task_id, [])]
            return self._send(handler, 200, json.dumps(stored).encode())
        if handler.path not in self.files:
            return self._send(handler, 404, b'{"detail": "Not found."}')
        data, content_type = self.files[handler.path]
        with self._lock:
            self.downloads += 1
        return self._send(handler, 200, data, content_type)

    def _post(self, handler, body: dict) -> None:
        if handler.path.rstrip("/") != "/api/predictions" or handler.headers.get("Authorization") != f"Token {TOKEN}":
            return self._send(handler, 404, b'{"detail": "Not found."}')
        with self._lock:
            if self.refuse_next_writes > 0:
                self.refuse_next_writes -= 1
                self.refused_writes += 1
                return self._send(handler, 400, b'{"task": ["Invalid pk - object does not exist."]}')
            self.predictions.append(body)
            self._by_task.setdefault(str(body.get("task")), []).append(len(self.predictions) - 1)
            answer = self._stored(len(self.predictions) - 1)
            if self.lose_next_answers > 0:
                self.lose_next_answers -= 1
                handler.close_connection = True
                return None
        return self._send(handler, 201, json.dumps(answer).encode())

    def _stored(self, index: int) -> dict:
        """Prediction ``index`` as Label Studio returns it (its id is ``index + 1``)."""
        return dict(self.predictions[index], id=index + 1, project=1)

    def wait_for_predictions(self, count: int, timeout_s: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while len(self.predictions) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.predictions)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
