"""The web tier: Label Studio's ML backend protocol plus monitoring routes (Flask).

Never loads a model (and never imports torch) when ``REDIS_URL`` is set: ``/predict`` enqueues
one job per task and waits. Without ``REDIS_URL`` the jobs run in threads of this process
(:mod:`samiam.service.memory_mode`), which then loads the engine on the first task.

Routes: ``GET /health``, ``POST /setup``, ``POST /predict``, ``POST /webhook``, ``GET /versions``
(Label Studio's), ``GET /metrics`` (Prometheus), ``GET /jobs?project=ID`` (task states),
``GET /`` (HTML status page).

Setting overrides (dotted names, e.g. ``{"merging.materials": 3}``): per project in the ML
backend's ``extra_params`` (sent to ``/setup``), per request in ``params.samiam`` of ``/predict``
(request wins); both on top of the ``SAMIAM_<SECTION>_<FIELD>`` environment. With ``BASIC_AUTH_USER``/``BASIC_AUTH_PASS`` set every route asks
for HTTP basic auth (register the backend in Label Studio with ``auth_method: BASIC_AUTH``).

``/health`` answers 200 whenever this process runs, Redis or not, so that Label Studio keeps the
backend connected and shows the reason of a failure on ``/predict`` (503 "Redis ... cannot be
reached") instead of a bare "disconnected"; its body says ``"redis": "down"`` and
``"ready": false``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from samiam.errors import QueueUnavailableError, RequestError, SamiamError, SettingsError
from samiam.labelstudio.config import parse_label_config
from samiam.service import jobs, prometheus, status_page
from samiam.service.batch import predict_batch
from samiam.service.config import ServiceConfig
from samiam.service.store import project_id

log = logging.getLogger(__name__)

STATES = ("queued", "running", "computed", "answered", "failed", "writing_back", "written", "writeback_failed")
"""Task states in ``/jobs`` (see :mod:`samiam.service.jobs`): ``computed`` is a prediction not yet
delivered; ``answered`` and ``written`` are delivered (in the /predict answer, through the API)."""


def _backend(config: ServiceConfig, engine_factory: Callable | None):
    """The store and dispatcher of the mode ``config`` selects."""
    if config.embedded:
        from samiam.service.memory_mode import EmbeddedDispatcher, MemoryStore
        store = MemoryStore(config.latency_buckets_s, config.recent_failures)
        dispatcher = EmbeddedDispatcher(config)
        dispatcher.runtime = jobs.Runtime(config, store, dispatcher, engine_factory or jobs.load_engine)
        jobs.install(dispatcher.runtime)
        return store, dispatcher
    from samiam.service.redis_mode import RQDispatcher, connect, make_store
    connection = connect(config, config.redis_timeout_s)
    store = make_store(config, connection)
    return store, RQDispatcher(config, connection, store)


def _json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object (Content-Type: application/json)")
    return body


def _tasks(body: dict) -> list[dict]:
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise RequestError("'tasks' must be a non-empty list of Label Studio tasks")
    ids = []
    for task in tasks:
        if not isinstance(task, dict) or not isinstance(task.get("id"), int) \
                or not isinstance(task.get("data"), dict):
            raise RequestError("every task needs an integer 'id' and a 'data' object")
        ids.append(task["id"])
    if len(set(ids)) != len(ids):
        raise RequestError(f"task ids repeat in one request: {sorted(ids)}")
    return tasks


def _overrides(value: Any, where: str) -> dict:
    """Setting overrides given as dotted names (see :meth:`Settings.replace`), or {} for None."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SettingsError(f"{where} must map setting names to values, e.g. {{\"merging.materials\": 3}}")
    return value


def create_app(config: ServiceConfig, *, engine_factory: Callable[[ServiceConfig], Any] | None = None) -> Flask:
    """The Flask app for ``config``. ``engine_factory`` (embedded mode only) builds the engine;
    default: :func:`samiam.service.jobs.load_engine`."""
    app = Flask(__name__)
    store, dispatcher = _backend(config, engine_factory)
    model = jobs.make_model(config)
    app.extensions["samiam"] = {"store": store, "dispatcher": dispatcher, "config": config}
    mode = "embedded" if config.embedded else "redis"

    @app.before_request
    def _authenticate():
        if not config.auth_required:
            return None
        auth = request.authorization
        if auth is None or auth.type != "basic" \
                or not hmac.compare_digest(auth.username or "", config.basic_auth_user) \
                or not hmac.compare_digest(auth.password or "", config.basic_auth_pass):
            return Response("authentication required\n", 401, {"WWW-Authenticate": 'Basic realm="samiam"'})
        return None

    @app.errorhandler(SamiamError)
    def _samiam_error(error: SamiamError):
        if error.http_status >= 500:
            log.error("%s %s: %s", request.method, request.path, error)
        return jsonify(error=str(error), kind=type(error).__name__), error.http_status

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        return jsonify(error=error.description, kind=error.name), error.code

    def _redis_state() -> str:
        return "not used" if config.embedded else ("ok" if store.ping() else "down")

    def _workers() -> list[dict]:
        try:
            return dispatcher.workers()
        except QueueUnavailableError:
            return []

    @app.get("/health")
    def health():
        redis_state = _redis_state()
        workers = len(_workers()) if redis_state != "down" else 0
        return jsonify(status="UP", model_class="SamiamModel", model_version=config.model_version,
                       mode=mode, redis=redis_state, workers=workers,
                       ready=redis_state != "down" and workers > 0)

    @app.post("/setup")
    def setup():
        body = _json_body()
        schema = body.get("schema") or ""
        parse_label_config(schema)
        overrides = _overrides(body.get("extra_params"), "the ML backend's extra_params")
        model.settings_for(schema, overrides)  # bad names or values: 400, shown by Label Studio
        if body.get("project"):
            store.save_project(body["project"], {"hostname": body.get("hostname"),
                                                 "access_token": body.get("access_token"),
                                                 "overrides": overrides})
        return jsonify(model.setup(schema))

    @app.post("/predict")
    def predict():
        body = _json_body()
        tasks = _tasks(body)
        label_config = body.get("label_config") or ""
        parse_label_config(label_config)
        project = str(body.get("project") or tasks[0].get("project") or "")
        overrides = {**((store.project(project) or {}).get("overrides") or {}),
                     **_overrides((body.get("params") or {}).get("samiam"), "params.samiam")}
        model.settings_for(label_config, overrides)  # bad names or values: 400 now, not per task
        answer = predict_batch(tasks, label_config, project, overrides, store=store, dispatcher=dispatcher,
                               deadline_s=config.predict_deadline_s, poll_s=config.poll_interval_s,
                               grace_s=config.batch_grace_s)
        return jsonify(answer.to_json())

    @app.post("/webhook")
    def webhook():
        body = _json_body()
        return jsonify(model.fit(body.get("action"), body) or {})

    @app.get("/versions")
    def versions():
        return jsonify(versions=[config.model_version])

    @app.get("/metrics")
    def metrics():
        workers = _workers()
        text = prometheus.render(store.counters(), config.latency_buckets_s, dispatcher.queue_depth(), len(workers))
        return Response(text, mimetype="text/plain; version=0.0.4")

    @app.get("/jobs")
    def job_states():
        project = request.args.get("project", "").strip()
        if not project:
            raise RequestError("give the Label Studio project id: /jobs?project=ID")
        records = store.tasks(project)
        counts = {state: 0 for state in STATES}
        for record in records.values():
            counts[record["state"]] = counts.get(record["state"], 0) + 1
        tasks = sorted(({"task": int(k) if k.isdigit() else k, **v} for k, v in records.items()),
                       key=lambda r: r["updated"], reverse=True)
        totals = store.project_stats().get(project_id(project), {})
        return jsonify(project=project_id(project), counts=counts, totals=totals, tasks=tasks)

    @app.get("/")
    def status():
        error, counters, failures, depth, projects = None, {}, [], None, {}
        try:
            counters, failures, depth = store.counters(), store.failures(), dispatcher.queue_depth()
            projects = store.project_stats()
        except QueueUnavailableError as unavailable:
            error = str(unavailable)
        html = status_page.render(
            model_version=config.model_version, mode=mode, redis=_redis_state(), queue_depth=depth,
            workers=_workers(), projects=projects, counters=counters, failures=failures,
            refresh_s=config.status_refresh_s,
            error=error)
        return Response(html, mimetype="text/html")

    return app
