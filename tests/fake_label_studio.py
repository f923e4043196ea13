"""A tiny HTTP server on 127.0.0.1 playing Label Studio 1.23.2 as shared/notes describe it.

Every route needs ``Authorization: Token <TOKEN>`` (401 otherwise). The routes the service uses:
``GET /data/upload/<project>/<file>``; ``POST /api/predictions/`` (records the prediction, its
``result`` as given, region ids included, answers 201 with it, its ``id`` and ``project``);
``GET /api/predictions/?task=ID`` (the task's stored predictions, a JSON list);
``GET /tasks/<id>/presign/?fileuri=<URL-safe base64 of a cloud URI>`` as Label Studio 1.23's
``TaskResolveStorageUri``: 404 for an unknown task or a URI no cloud storage holds (see
:class:`CloudStorage`), else ``303 See Other`` to the storage's presigned URL
(``presign`` on) or the object's bytes streamed by "Label Studio" itself (``presign`` off).
The routes ``samiam import`` uses (trailing slashes optional, as the SDK adds them):

* ``POST /api/projects`` -> 201 ``{"id", ...}``;
* ``POST /api/projects/<id>/import``: a JSON list of tasks (each must hold the config's ``$image``
  field, else 400), or a multipart upload where each *form field name* makes one task (a
  repeated name keeps only its last file) with ``data.image = /data/upload/<id>/<8hex>-<name>``;
  201 ``{"task_count", "file_upload_ids", ...}``;
* ``POST /api/storages/localfiles`` -> 201, 400 unless the path is an existing folder inside the
  ``document_root`` (LOCAL_FILES_DOCUMENT_ROOT; None: local files serving disabled);
  ``GET /data/local-files/?d=<path>`` serves a file under ``document_root`` only when a storage
  covers its folder (404 otherwise);
* ``POST /api/ml`` -> calls the backend's ``GET /health`` and ``POST /setup`` (400 "health check
  failed" / "doesn't look like a valid ML backend" if they fail), 201;
* ``POST /api/dm/actions?id=retrieve_tasks_predictions&project=<id>`` -> health and setup, then
  ONE ``/predict`` with every selected task that has no prediction of the setup's model_version;
  stores the results when there is one per task; always 200 ``{"processed_items", "detail"}``.

The routes the learning of label names reads (annotations are added with :meth:`FakeLabelStudio.annotate`):
``GET /api/tasks/?project=P&page=N&page_size=S[&only_annotated=true]`` -> ``{"tasks", "total", ...}``
(404 past the last page, as Django's paginator); ``GET /api/tasks/<id>/annotations/`` -> a list;
``GET /api/tasks/<id>/``, ``GET /api/projects/<id>/``, ``GET /api/annotations/<id>/`` -> the item (404 if none).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.parser
import email.policy
import io
import json
import mimetypes
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import requests
from loopback_http import RecordingServer
from PIL import Image

from samiam.labelstudio.config import EXAMPLE_CONFIG

LABEL_CONFIG = EXAMPLE_CONFIG
"""The labeling config of the fake's project 1 (brush labels on an image)."""
TOKEN = "0123456789abcdef0123456789abcdef01234567"
PROJECT = "1.1700000000"
"""``project`` as Label Studio sends it to /predict: "<id>.<created_at unix time>"."""
ANSWER_IDS = 1_000_000
"""Ids of predictions stored from ``/predict`` answers start here (POSTed ones at 1)."""


def task(task_id: int, url: str) -> dict:
    """A task of project 1 as Label Studio sends it to /predict (the fields the backend reads)."""
    return {"id": task_id, "data": {"image": url}, "project": 1, "annotations": [], "predictions": []}


def _now() -> str:
    """Label Studio's time stamps: ISO 8601 with microseconds, in UTC."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def two_texture_png(height: int, width: int) -> bytes:
    """A grey PNG whose left half is a fine checker-like texture and right half coarse stripes."""
    yy, xx = np.mgrid[:height, :width]
    fine = 127 + 60 * np.sin(xx * 1.2) * np.sin(yy * 1.2)
    coarse = 127 + 60 * np.sin(xx * 0.35)
    image = np.where(xx < width // 2, fine, coarse).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class CloudStorage:
    """A cloud import storage of the fake: the URIs under ``prefix`` (``s3://bucket/``) are its."""

    prefix: str
    presigned_url: Callable[[str], str]
    """URI -> the presigned URL Label Studio redirects to."""
    read: Callable[[str], tuple[bytes, str]]
    """URI -> (bytes, content type), what Label Studio streams when ``presign`` is off."""
    presign: bool = True


class FakeLabelStudio:
    """``port`` 0 picks a free one; give an earlier instance's port to play a restarted server.
    ``document_root``: LOCAL_FILES_DOCUMENT_ROOT (None: local files are not served)."""

    def __init__(self, port: int = 0, document_root: Path | None = None):
        self.document_root = document_root
        self.projects: dict[int, dict] = {}
        self.tasks: dict[int, dict] = {}
        """id -> task as Label Studio sends it to /predict."""
        self.storages: list[dict] = []
        self.cloud_storages: list[CloudStorage] = []
        """Cloud import storages whose URIs ``/tasks/<id>/presign/`` resolves."""
        self.ml_backends: list[dict] = []
        self.predict_calls: list[dict] = []
        """Bodies of the /predict calls made to ML backends."""
        self.files: dict[str, tuple[bytes, str]] = {}
        self.downloads = 0
        """Images served so far ..."""
        self.downloaded: list[str] = []
        """... and their paths."""
        self.predictions: list[dict] = []
        """Bodies of the prediction POSTs Label Studio stored, in order (id = index + 1)."""
        self._by_task: dict[str, list[int]] = {}
        self.answers: list[dict] = []
        """Predictions stored from ``/predict`` answers (:meth:`store_answer`), with their task."""
        self.refused_writes = 0
        self.refuse_next_writes = 0
        """How many of the next prediction POSTs to refuse with 400 (as for an unknown task)."""
        self.post_delay_s = 0.0
        """Seconds each prediction POST takes before it is stored (a slow Label Studio)."""
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
                server._post(self, self.rfile.read(int(self.headers.get("Content-Length", 0))))

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
        RecordingServer.send(handler, status, body, content_type)

    @classmethod
    def _json(cls, handler, status: int, body) -> None:
        cls._send(handler, status, json.dumps(body).encode())

    def _get(self, handler) -> None:
        if handler.headers.get("Authorization") != f"Token {TOKEN}":
            return self._send(handler, 401, b'{"detail": "Authentication credentials were not provided."}')
        parts = urlsplit(handler.path)
        if parts.path.rstrip("/") == "/api/predictions":
            task_id = parse_qs(parts.query).get("task", [""])[0]
            with self._lock:
                stored = [self._stored(i) for i in self._by_task.get(task_id, [])] + [
                    dict(p, id=ANSWER_IDS + i, project=1) for i, p in enumerate(self.answers) if str(p["task"]) == task_id]
            return self._send(handler, 200, json.dumps(stored).encode())
        if parts.path.rstrip("/") == "/api/tasks":
            return self._list_tasks(handler, {key: values[0] for key, values in parse_qs(parts.query).items()})
        route = parts.path.rstrip("/").split("/")
        if route[:3] == ["", "api", "tasks"] and len(route) == 5 and route[4] == "annotations":
            found = self.tasks.get(int(route[3]))
            return self._json(handler, 200 if found else 404, found["annotations"] if found else {})
        if route[:2] == ["", "api"] and len(route) == 4 and route[2] in ("tasks", "projects", "annotations"):
            found = self._find(route[2], int(route[3]))
            return self._json(handler, 200 if found else 404, found or {"detail": "Not found."})
        if parts.path == "/data/local-files/":
            return self._get_local_file(handler, parse_qs(parts.query).get("d", [""])[0])
        if len(route) == 4 and route[1] == "tasks" and route[3] == "presign":
            return self._presign(handler, route[2], parse_qs(parts.query).get("fileuri"))
        if handler.path not in self.files:
            return self._send(handler, 404, b'{"detail": "Not found."}')
        data, content_type = self.files[handler.path]
        self._count_download(handler.path)
        return self._send(handler, 200, data, content_type)

    def _presign(self, handler, task_id: str, fileuri: list[str] | None) -> None:
        if not fileuri:
            return self._send(handler, 400, b"")
        if not task_id.isdigit() or int(task_id) not in self.tasks:
            return self._send(handler, 404, b'{"detail": "Not found."}')
        try:  # as Label Studio: base64 first, for backwards compatibility a quoted URI
            uri = base64.urlsafe_b64decode(fileuri[0].encode()).decode()
        except (binascii.Error, UnicodeDecodeError):
            uri = unquote(fileuri[0])
        storage = next((s for s in self.cloud_storages if uri.startswith(s.prefix)), None)
        if storage is None:
            return self._send(handler, 404, b"")
        self._count_download(handler.path)
        if not storage.presign:
            return self._send(handler, 200, *storage.read(uri))
        handler.send_response(303)
        handler.send_header("Location", storage.presigned_url(uri))
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return None

    def _list_tasks(self, handler, query: dict) -> None:
        with self._lock:
            tasks = [t for t in self.tasks.values() if str(t["project"]) == query.get("project")
                     and (query.get("only_annotated") != "true" or t["annotations"])]
        page, size = int(query.get("page", 1)), int(query.get("page_size", 100))
        if page > 1 and (page - 1) * size >= len(tasks):
            return self._send(handler, 404, b'{"detail": "Invalid page."}')
        chosen = [{"id": t["id"], "data": t["data"], "project": t["project"]}
                  for t in tasks[(page - 1) * size:page * size]]
        return self._json(handler, 200, {"tasks": chosen, "total": len(tasks), "total_annotations": 0,
                                         "total_predictions": 0})

    def _find(self, kind: str, item_id: int) -> dict | None:
        """Task, project or annotation ``item_id`` as ``GET /api/<kind>/<id>/`` shows it."""
        with self._lock:
            if kind == "annotations":
                return next((a for t in self.tasks.values() for a in t["annotations"] if a["id"] == item_id), None)
            return (self.tasks if kind == "tasks" else self.projects).get(item_id)

    def annotate(self, task_id: int, result: list[dict], annotation_id: int | None = None) -> dict:
        """Store an annotation of task ``task_id`` (a new one, or a new version of
        ``annotation_id``); returns it as Label Studio's webhooks and API show it."""
        with self._lock:
            stored = self.tasks[task_id]["annotations"]
            annotation_id = annotation_id or 1 + sum(len(t["annotations"]) for t in self.tasks.values())
            annotation = {"id": annotation_id, "task": task_id, "project": self.tasks[task_id]["project"],
                          "result": result, "was_cancelled": False, "completed_by": 1,
                          "created_at": _now(), "updated_at": _now()}
            stored[:] = [a for a in stored if a["id"] != annotation_id] + [annotation]
            return annotation

    def webhook(self, action: str, annotation: dict) -> dict:
        """The body Label Studio posts to ``<backend>/webhook`` for ``action`` on ``annotation``."""
        task = self.tasks[annotation["task"]]
        project = self.projects.get(task["project"]) or {"id": task["project"], "label_config": LABEL_CONFIG}
        return {"action": action, "annotation": annotation, "task": {"id": task["id"], "data": task["data"]},
                "project": {"id": project["id"], "label_config": project["label_config"]}}

    def _count_download(self, path: str) -> None:
        with self._lock:
            self.downloads += 1
            self.downloaded.append(path)

    def _get_local_file(self, handler, relative: str) -> None:
        if self.document_root is None:
            return self._send(handler, 404, b'{"detail": "Serving local files is disabled."}')
        target = (self.document_root / relative).resolve()
        covered = any(target.parent.is_relative_to(Path(storage["path"]).resolve()) for storage in self.storages)
        if not covered or not target.is_file():
            return self._send(handler, 404, b'{"detail": "Not found."}')
        self._count_download(f"/data/local-files/?d={relative}")
        return self._send(handler, 200, target.read_bytes(),
                          mimetypes.guess_type(target.name)[0] or "application/octet-stream")

    def _post(self, handler, raw: bytes) -> None:
        if handler.headers.get("Authorization") != f"Token {TOKEN}":
            return self._send(handler, 401, b'{"detail": "Authentication credentials were not provided."}')
        parts = urlsplit(handler.path)
        route = parts.path.rstrip("/")
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        if route == "/api/predictions":
            return self._post_prediction(handler, json.loads(raw))
        if route == "/api/projects":
            return self._create_project(handler, json.loads(raw))
        if route.startswith("/api/projects/") and route.endswith("/import"):
            return self._import(handler, int(route.split("/")[3]), raw)
        if route == "/api/storages/localfiles":
            return self._create_storage(handler, json.loads(raw))
        if route == "/api/ml":
            return self._create_ml_backend(handler, json.loads(raw))
        if route == "/api/dm/actions" and query.get("id") == "retrieve_tasks_predictions":
            return self._retrieve_predictions(handler, int(query["project"]), json.loads(raw))
        return self._send(handler, 404, b'{"detail": "Not found."}')

    def _create_project(self, handler, body: dict) -> None:
        with self._lock:
            project = {"id": len(self.projects) + 1, "title": body.get("title", ""),
                       "label_config": body.get("label_config", "<View></View>"), "created_at": int(time.time())}
            self.projects[project["id"]] = project
        return self._json(handler, 201, project)

    def add_task(self, project: int, data: dict, file_upload: int | None = None) -> dict:
        task = {"id": len(self.tasks) + 1, "data": data, "meta": {}, "project": project, "file_upload": file_upload,
                "annotations": [], "predictions": []}
        self.tasks[task["id"]] = task
        return task

    def _import(self, handler, project: int, raw: bytes) -> None:
        if project not in self.projects:
            return self._send(handler, 404, b'{"detail": "Not found."}')
        content_type = handler.headers.get("Content-Type", "")
        uploads = []
        with self._lock:
            if content_type.startswith("multipart/form-data"):
                message = email.parser.BytesParser(policy=email.policy.default).parsebytes(
                    f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
                by_field = {part.get_param("name", header="content-disposition"): part
                            for part in message.iter_parts()}  # one task per field name: the last file wins
                for part in by_field.values():
                    path = f"/data/upload/{project}/{secrets.token_hex(4)}-{part.get_filename()}"
                    self.files[path] = (part.get_content(), part.get_content_type())
                    uploads.append(len(self.files))
                    self.add_task(project, {"image": path}, uploads[-1])
                count = len(by_field)
            else:
                tasks = json.loads(raw)
                tasks = tasks if isinstance(tasks, list) else [tasks]
                missing = [i for i, task in enumerate(tasks) if "image" not in task.get("data", task)]
                if missing:
                    return self._json(handler, 400, {"detail": f"Validation error: tasks {missing} have no 'image'"})
                for task in tasks:
                    self.add_task(project, task.get("data", task))
                count = len(tasks)
        return self._json(handler, 201, {"task_count": count, "annotation_count": 0, "prediction_count": 0,
                                         "duration": 0.01, "file_upload_ids": uploads,
                                         "could_be_tasks_list": False, "found_formats": [], "data_columns": []})

    def _create_storage(self, handler, body: dict) -> None:
        path = Path(body.get("path") or "")
        root = self.document_root
        if root is None:
            return self._json(handler, 400, {"detail": "Serving Local Storage files is disabled; set "
                                                       "LOCAL_FILES_SERVING_ENABLED=true"})
        if not path.is_absolute() or not path.resolve().is_relative_to(root.resolve()) or not path.is_dir():
            refusal = f"Path {path} must start with LOCAL_FILES_DOCUMENT_ROOT={root} and must be a child, e.g.: {root}/abc"
            return self._json(handler, 400, {"path": [refusal]})
        with self._lock:
            storage = dict(body, id=len(self.storages) + 1, type="localfiles")
            self.storages.append(storage)
        return self._json(handler, 201, storage)

    def _setup_backend(self, backend: dict) -> str | None:
        """GET /health and POST /setup like Label Studio; returns the model_version or raises ValueError."""
        project = self.projects[backend["project"]]
        try:
            health = requests.get(f"{backend['url']}/health", timeout=1)
            health.json()
        except (requests.RequestException, ValueError):
            raise ValueError("Can't connect to ML backend, health check failed") from None
        if health.status_code != 200:
            raise ValueError("Can't connect to ML backend, health check failed")
        setup = requests.post(f"{backend['url']}/setup", timeout=3, json={
            "project": f"{project['id']}.{project['created_at']}", "schema": project["label_config"],
            "hostname": self.url, "access_token": TOKEN, "extra_params": None})
        if setup.status_code != 200:
            raise ValueError(f"{backend['url']} doesn't look like a valid ML backend")
        return setup.json().get("model_version")

    def _create_ml_backend(self, handler, body: dict) -> None:
        if body.get("project") not in self.projects:
            return self._json(handler, 400, {"project": ["Invalid pk - object does not exist."]})
        backend = {"id": len(self.ml_backends) + 1, "url": str(body.get("url", "")).rstrip("/"),
                   "project": body["project"], "title": body.get("title") or "", "state": "CO"}
        try:
            backend["model_version"] = self._setup_backend(backend)
        except ValueError as error:
            return self._json(handler, 400, {"url": [str(error)]})
        with self._lock:
            self.ml_backends.append(backend)
        return self._json(handler, 201, backend)

    def _retrieve_predictions(self, handler, project: int, body: dict) -> None:
        selected = body.get("selectedItems") or {"all": True, "excluded": []}
        tasks = [task for task in self.tasks.values() if task["project"] == project and (
            task["id"] not in selected.get("excluded", []) if selected.get("all")
            else task["id"] in selected.get("included", []))]
        for backend in (b for b in self.ml_backends if b["project"] == project):
            try:
                version = self._setup_backend(backend)
            except ValueError:
                continue  # Label Studio skips the predict call silently
            todo = [task for task in tasks if not any(p.get("model_version") == version for p in task["predictions"])]
            if not todo:
                continue
            request = {"tasks": todo, "project": f"{project}.{self.projects[project]['created_at']}",
                       "label_config": self.projects[project]["label_config"],
                       "params": {"login": None, "password": None, "context": None}}
            self.predict_calls.append(request)
            try:
                results = requests.post(f"{backend['url']}/predict", json=request, timeout=100).json()["results"]
            except (requests.RequestException, ValueError, KeyError, TypeError):
                continue
            if self.store_answer(todo, {"results": results}):
                for task, result in zip(todo, results):
                    task["predictions"].append(result)
        return self._json(handler, 200, {"processed_items": len(tasks),
                                         "detail": f"Retrieved {len(tasks)} predictions"})

    def store_answer(self, tasks: list[dict], answer: dict) -> bool:
        """Store the predictions of a ``/predict`` ``answer`` for ``tasks`` as Label Studio does:
        all of them when it holds one result per task, else none (returned: whether stored)."""
        results = answer.get("results") or []
        if len(results) != len(tasks):
            return False
        with self._lock:
            self.answers.extend({**result, "task": task["id"]} for task, result in zip(tasks, results))
        return True

    def _post_prediction(self, handler, body: dict) -> None:
        time.sleep(self.post_delay_s)
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
