"""The web tier: Label Studio's ML backend protocol plus monitoring routes (Flask).

Never loads a model (and never imports torch) when ``REDIS_URL`` is set: ``/predict`` enqueues
one job per task and waits. Without ``REDIS_URL`` the jobs run in threads of this process
(:mod:`samiam.service.memory_mode`), which then loads the engine on the first task.

Routes: ``GET /health``, ``POST /setup``, ``POST /predict``, ``POST /webhook``, ``GET /versions``
(Label Studio's), ``GET /metrics`` (Prometheus), ``GET /jobs?project=ID`` (task states),
``GET /`` (HTML status page).

``/webhook`` learns each project's label names from its annotations (see
:mod:`samiam.service.learning`): it checks the body, queues the lesson and answers at once;
``/setup`` answers the project's model version, which changes with its learned prototypes.

Every body and header is untrusted: bad input answers 400 (413 when too large) with the reason,
never 500. The Label Studio protocol (tasks, labeling config, setting overrides) is read by
:mod:`samiam.labelstudio.request`, once per request; what ``/setup`` may change about where
Label Studio is, by :mod:`samiam.service.access`. Every refused ``/setup`` is logged at WARNING
(Label Studio logs nothing useful).

A ``/predict`` whose ``params.context`` is not empty is a smart-tool click
(:mod:`samiam.service.interactive`): answered with one brush region, nothing written back.

Setting overrides (dotted names, e.g. ``{"merging.materials": 3}``; ``removal.*`` and ``merging.*``
only): per project in the ML backend's ``extra_params`` (sent to ``/setup``), per request in
``params.samiam`` of ``/predict`` (request wins); both on top of the ``SAMIAM_<SECTION>_<FIELD>``
environment. With ``BASIC_AUTH_USER``/``BASIC_AUTH_PASS`` set every route asks for HTTP basic
auth (register the backend in Label Studio with ``auth_method: BASIC_AUTH``).

``/health`` answers 200 whenever this process runs, Redis or not, so that Label Studio keeps the
backend connected and shows the reason of a failure on ``/predict`` (503 "Redis ... cannot be
reached") instead of a bare "disconnected"; its body says ``"redis": "down"`` and
``"ready": false``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from samiam.errors import QueueUnavailableError, RequestError, SamiamError
from samiam.labelstudio.prompts import is_interactive
from samiam.labelstudio.request import project_of
from samiam.service import interactive, jobs, prometheus, status_page
from samiam.service.access import setup_record
from samiam.service.batch import predict_batch
from samiam.service.config import ServiceConfig
from samiam.service.learning import forget_annotations
from samiam.service.prototype_store import make_prototype_store
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
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        raise RequestError("the JSON body is nested too deeply") from None
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object (Content-Type: application/json)")
    return body


def _basic_credentials() -> tuple[bytes, bytes] | None:
    """User and password bytes of the request's ``Authorization: Basic`` header, or None."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, colon, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):  # ValueError: non-ASCII in the header
        return None
    return (user, password) if colon else None


def _same_secret(given: bytes, expected: str) -> bool:
    """Constant-time match of ``given`` with ``expected`` encoded as UTF-8 (curl, browsers) or as
    Latin-1 (what python-requests' ``HTTPBasicAuth``, which Label Studio 1.23 uses, sends)."""
    encodings = {expected.encode("utf-8")}
    with contextlib.suppress(UnicodeEncodeError):
        encodings.add(expected.encode("latin-1"))
    return sum(hmac.compare_digest(given, encoded) for encoded in encodings) > 0  # compares all


def create_app(config: ServiceConfig, *, engine_factory: Callable[[ServiceConfig], Any] | None = None) -> Flask:
    """The Flask app for ``config``. ``engine_factory`` (embedded mode only) builds the engine;
    default: :func:`samiam.service.jobs.load_engine`."""
    app = Flask(__name__)
    store, dispatcher = _backend(config, engine_factory)
    prototypes = dispatcher.runtime.prototypes if config.embedded else make_prototype_store(config, store.redis)
    model = jobs.make_model(config)
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    app.extensions["samiam"] = {"store": store, "dispatcher": dispatcher, "config": config,
                                "prototypes": prototypes}
    mode = "embedded" if config.embedded else "redis"

    @app.before_request
    def _authenticate():
        if not config.auth_required:
            return None
        credentials = _basic_credentials()
        if credentials is None or not (_same_secret(credentials[0], config.basic_auth_user)
                                       & _same_secret(credentials[1], config.basic_auth_pass)):
            return Response("authentication required\n", 401, {"WWW-Authenticate": 'Basic realm="samiam"'})
        return None

    @app.errorhandler(SamiamError)
    def _samiam_error(error: SamiamError):
        if error.http_status >= 500:
            log.error("%s %s: %s", request.method, request.path, error)
        return jsonify(error=str(error), kind=type(error).__name__), error.http_status

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if isinstance(error, RequestEntityTooLarge):
            return jsonify(error=f"the request body is larger than SAMIAM_MAX_REQUEST_BYTES = "
                                 f"{config.max_request_bytes} bytes", kind="RequestTooLargeError"), 413
        return jsonify(error=error.description, kind=error.name), error.code

    @app.after_request
    def _log_refused_setup(response: Response):
        if request.path == "/setup" and response.status_code >= 400:
            reason = (response.get_json(silent=True) or {}).get("error") if response.is_json else None
            log.warning("refused /setup from %s (%d): %s", request.remote_addr, response.status_code,
                        reason or response.get_data(as_text=True).strip())
        return response

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
        extra_params, options = interactive.split_options(body.get("extra_params"), "the ML backend's extra_params")
        overrides = model.setup(body.get("schema"), extra_params)  # bad ones: 400, shown by LS
        project = project_of(body.get("project"), "'project'")
        if project:
            access = setup_record(config, store.project(project), body.get("hostname"), body.get("access_token"),
                                  authenticated=config.auth_required)
            store.save_project(project, {**access, "overrides": overrides, **({"interactive": options} if options else {})})
        return jsonify(model_version=model.model_version_for(body.get("schema"),
                                                             prototypes.get(project) if project else None))

    @app.post("/predict")
    def predict():
        body = _json_body()
        if is_interactive(body.get("params")):  # a smart-tool click: one region, nothing written back
            return jsonify(interactive.answer_click(body, model=model, store=store, dispatcher=dispatcher,
                                                    deadline_s=config.click_deadline_s))
        requests = model.requests(body, lambda project: (store.project(project) or {}).get("overrides") or {})
        answer = predict_batch(requests, store=store, dispatcher=dispatcher,
                               deadline_s=config.predict_deadline_s, poll_s=config.poll_interval_s,
                               grace_s=config.batch_grace_s, check_s=config.answer_check_s)
        return jsonify(answer.to_json())

    @app.post("/webhook")
    def webhook():
        lesson = model.fit(_json_body())
        if lesson is None:
            return jsonify(status="ignored", reason="nothing to learn from this event")
        if lesson["kind"] == "forget":
            return jsonify(status="forgotten", prototypes=forget_annotations(prototypes, lesson))
        dispatcher.submit_lesson(lesson)  # Label Studio waits 1 s: the work runs on the queue
        return jsonify(status="queued", lesson=lesson["kind"])

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
