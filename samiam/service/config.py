"""Settings of the web tier and the workers, read from environment variables.

The engine's own knobs live in :class:`samiam.settings.Settings` (``SAMIAM_<SECTION>_<FIELD>``);
this dataclass holds only what the service adds: where Redis is, how long ``/predict`` waits,
how long results are kept, how write-backs are retried, and who may call the service.
Every variable is listed, with its default, in ``.env.example``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from samiam.errors import SettingsError
from samiam.settings import Settings


def _split(text: str, kind: type) -> tuple:
    return tuple(kind(part) for part in text.split(",") if part.strip())


ENVIRONMENT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "REDIS_URL": ("redis_url", str), "SAMIAM_QUEUE": ("queue_name", str),
    "SAMIAM_MODEL_VERSION": ("model_version", str),
    "PREDICT_DEADLINE_S": ("predict_deadline_s", float),
    "SAMIAM_POLL_INTERVAL_S": ("poll_interval_s", float),
    "SAMIAM_BATCH_GRACE_S": ("batch_grace_s", float),
    "SAMIAM_ANSWER_CHECK_S": ("answer_check_s", float),
    "SAMIAM_JOB_TIMEOUT_S": ("job_timeout_s", int), "SAMIAM_RESULT_TTL_S": ("result_ttl_s", int),
    "SAMIAM_PREDICT_RETRIES": ("predict_retries", int), "SAMIAM_JOB_LEASE_S": ("job_lease_s", int),
    "SAMIAM_WORKER_HEARTBEAT_S": ("worker_heartbeat_s", float),
    "SAMIAM_CACHE_TTL_S": ("cache_ttl_s", int),
    "SAMIAM_WRITEBACK_RETRY_INTERVALS_S": ("writeback_retry_intervals_s", lambda t: _split(t, int)),
    "SAMIAM_RECENT_FAILURES": ("recent_failures", int),
    "SAMIAM_REDIS_TIMEOUT_S": ("redis_timeout_s", float),
    "SAMIAM_STATUS_REFRESH_S": ("status_refresh_s", int),
    "SAMIAM_LATENCY_BUCKETS_S": ("latency_buckets_s", lambda t: _split(t, float)),
    "BASIC_AUTH_USER": ("basic_auth_user", str), "BASIC_AUTH_PASS": ("basic_auth_pass", str),
    "LABEL_STUDIO_URL": ("label_studio_url", str),
    "LABEL_STUDIO_API_KEY": ("label_studio_api_key", str),
    "SAMIAM_IMAGE_HOSTS": ("image_hosts", lambda t: _split(t, str.strip)),
    "SAMIAM_STORAGE_HOSTS": ("storage_hosts", lambda t: _split(t, str.strip)),
    "SAMIAM_LOCAL_FILES_ROOT": ("local_files_root", str),
    "SAMIAM_MAX_IMAGE_BYTES": ("max_image_bytes", int),
    "SAMIAM_FETCH_TIMEOUT_S": ("fetch_timeout_s", float),
    "SAMIAM_MAX_TASKS_PER_REQUEST": ("max_tasks_per_request", int),
    "SAMIAM_MAX_REQUEST_BYTES": ("max_request_bytes", int),
    "SAMIAM_CLICK_DEADLINE_S": ("click_deadline_s", float),
    "SAMIAM_CLICK_CACHE_IMAGES": ("click_cache_images", int),
}
"""Environment variable -> (ServiceConfig field, parser of its text)."""


@dataclass(frozen=True)
class ServiceConfig:
    redis_url: str | None = None
    """``REDIS_URL``. None (unset or empty) = embedded mode: jobs run inside the web process."""
    queue_name: str = "samiam"
    """``SAMIAM_QUEUE``: RQ queue the web tier fills and the workers empty."""
    model_version: str = "samiam-v1"
    """``SAMIAM_MODEL_VERSION``: answered by ``/setup`` and put in every prediction; bump it to
    make Label Studio predict tasks again (it skips tasks holding a prediction of this version)."""
    predict_deadline_s: float = 80.0
    """``PREDICT_DEADLINE_S``: longest wait of ``/predict`` before answering late (Label Studio
    gives up after 100 s); late predictions are written back through the Label Studio API."""
    poll_interval_s: float = 0.2
    """``SAMIAM_POLL_INTERVAL_S``: longest single blocking wait of ``/predict`` on Redis (a
    finished task wakes it at once; this only bounds how late it notices the deadline). Must be
    below ``SAMIAM_REDIS_TIMEOUT_S``."""
    batch_grace_s: float = 10.0
    """``SAMIAM_BATCH_GRACE_S``: a ``/predict`` batch still open this long after its deadline lost
    its request (503 while Redis was away, web process killed): its finished predictions are
    written back by the workers' sweep, and predictions finishing later by their jobs."""
    answer_check_s: float = 300.0
    """``SAMIAM_ANSWER_CHECK_S``: this long after ``/predict`` answered, the workers check that
    Label Studio stored each prediction of the answer (by its delivery key) and write back those
    it did not (the answer was lost: the web process died before sending it, the connection
    dropped). Label Studio stores an answer as soon as it reads it, so minutes are ample."""
    job_timeout_s: int = 900
    """``SAMIAM_JOB_TIMEOUT_S``: a worker kills one task's job after this long."""
    predict_retries: int = 2
    """``SAMIAM_PREDICT_RETRIES``: how often a task whose worker died mid-job (killed, out of
    memory) is run again before it counts as failed."""
    job_lease_s: int = 20
    """``SAMIAM_JOB_LEASE_S``: a running job whose worker has not renewed its lease for this long
    is abandoned (its worker died) and is run again by another worker."""
    worker_heartbeat_s: float = 5.0
    """``SAMIAM_WORKER_HEARTBEAT_S``: how often a worker renews the lease of its running job and
    looks for abandoned jobs of dead workers. Must be below ``SAMIAM_JOB_LEASE_S``."""
    result_ttl_s: int = 86400
    """``SAMIAM_RESULT_TTL_S``: how long task states, batch results and job records are kept."""
    cache_ttl_s: int = 7 * 86400
    """``SAMIAM_CACHE_TTL_S``: how long a prediction is cached (0 disables the cache)."""
    writeback_retry_intervals_s: tuple[int, ...] = (10, 60, 300)
    """``SAMIAM_WRITEBACK_RETRY_INTERVALS_S`` (comma separated): waits before each retry of a
    failed write-back; after the last one the write-back is recorded as failed."""
    recent_failures: int = 50
    """``SAMIAM_RECENT_FAILURES``: failures kept for the status page."""
    redis_timeout_s: float = 0.5
    """``SAMIAM_REDIS_TIMEOUT_S``: socket time-out of the web tier's Redis calls (``/health`` has 1 s)."""
    status_refresh_s: int = 5
    """``SAMIAM_STATUS_REFRESH_S``: reload period of the HTML status page."""
    latency_buckets_s: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320)
    """``SAMIAM_LATENCY_BUCKETS_S``: upper bounds of the ``/metrics`` task latency histogram."""
    basic_auth_user: str | None = None
    """``BASIC_AUTH_USER``: with ``BASIC_AUTH_PASS``, every route requires HTTP basic auth."""
    basic_auth_pass: str | None = field(default=None, repr=False)
    """``BASIC_AUTH_PASS``."""
    label_studio_url: str | None = None
    """``LABEL_STUDIO_URL``: Label Studio's base URL for image downloads and write-backs; when set,
    ``/setup``'s hostname is ignored (see :mod:`samiam.service.access`)."""
    label_studio_api_key: str | None = field(default=None, repr=False)
    """``LABEL_STUDIO_API_KEY``: a personal access token (refresh JWT) or a legacy token, sent to
    ``LABEL_STUDIO_URL`` only (it needs ``LABEL_STUDIO_URL``); when set, ``/setup``'s token is ignored."""
    image_hosts: tuple[str, ...] = ()
    """``SAMIAM_IMAGE_HOSTS`` (comma separated ``host`` or ``host:port``): hosts other than Label
    Studio that task images may come from (they never receive the API key)."""
    storage_hosts: tuple[str, ...] = ()
    """``SAMIAM_STORAGE_HOSTS`` (comma separated ``host`` or ``host:port``): hosts Label Studio may
    redirect an image download to: where its presigned cloud-storage URLs point (they never
    receive the API key; see :mod:`samiam.labelstudio.storage`)."""
    local_files_root: str | None = None
    """``SAMIAM_LOCAL_FILES_ROOT``: folder that local image paths must lie in (unset: refused)."""
    max_image_bytes: int | None = None
    """``SAMIAM_MAX_IMAGE_BYTES``: largest image download (unset: the adapter's limit)."""
    fetch_timeout_s: float | None = None
    """``SAMIAM_FETCH_TIMEOUT_S``: limit of one image download or write-back (unset: the adapter's)."""
    max_tasks_per_request: int = 10_000
    """``SAMIAM_MAX_TASKS_PER_REQUEST``: ``/predict`` answers 413 for more tasks than this."""
    max_request_bytes: int = 64 * 2**20
    """``SAMIAM_MAX_REQUEST_BYTES``: every route answers 413 for a larger body (10,000 Label Studio
    tasks take a few MB)."""
    click_deadline_s: float = 20.0
    """``SAMIAM_CLICK_DEADLINE_S``: longest wait of an interactive ``/predict`` (a smart-tool click)
    for its worker; then it answers 504. A first click on a large image on a CPU worker takes
    seconds (SAM's image encoder); later clicks on the same image take a fraction of that."""
    click_cache_images: int = 8
    """``SAMIAM_CLICK_CACHE_IMAGES``: images per worker whose SAM embedding (about 4 MB each) and
    booster segmentation are kept for later clicks, least recently clicked out first."""
    settings: Settings = field(default_factory=Settings)
    """The engine's settings (``SAMIAM_<SECTION>_<FIELD>``)."""

    def __post_init__(self):
        if self.poll_interval_s >= self.redis_timeout_s:
            raise SettingsError(f"SAMIAM_POLL_INTERVAL_S={self.poll_interval_s:g} must be below "
                                f"SAMIAM_REDIS_TIMEOUT_S={self.redis_timeout_s:g}: a blocking wait on Redis "
                                "must end before the socket times out")
        if self.worker_heartbeat_s >= self.job_lease_s:
            raise SettingsError(f"SAMIAM_WORKER_HEARTBEAT_S={self.worker_heartbeat_s:g} must be below "
                                f"SAMIAM_JOB_LEASE_S={self.job_lease_s}, or running jobs look abandoned")
        if not 0 <= self.answer_check_s < self.result_ttl_s:
            raise SettingsError(f"SAMIAM_ANSWER_CHECK_S={self.answer_check_s:g} must be at least 0 and below "
                                f"SAMIAM_RESULT_TTL_S={self.result_ttl_s}: an answered batch is kept that long, "
                                "and its check reads it")
        if self.label_studio_api_key and not self.label_studio_url:
            raise SettingsError("LABEL_STUDIO_API_KEY needs LABEL_STUDIO_URL: the key is only ever sent to "
                                "that origin, never to a hostname a request names")
        if bool(self.basic_auth_user) != bool(self.basic_auth_pass) or ":" in (self.basic_auth_user or ""):
            raise SettingsError("set both BASIC_AUTH_USER and BASIC_AUTH_PASS (or neither); the user name "
                                "cannot contain ':'")
        if self.click_deadline_s <= 0 or self.click_cache_images < 1:
            raise SettingsError("SAMIAM_CLICK_DEADLINE_S and SAMIAM_CLICK_CACHE_IMAGES must be positive")
        if self.max_tasks_per_request < 1 or self.max_request_bytes < 1:
            raise SettingsError("SAMIAM_MAX_TASKS_PER_REQUEST and SAMIAM_MAX_REQUEST_BYTES must be positive")

    @property
    def embedded(self) -> bool:
        return not self.redis_url

    @property
    def auth_required(self) -> bool:
        return bool(self.basic_auth_user and self.basic_auth_pass)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceConfig:
        """Defaults overridden by the environment variables named in each field's docstring."""
        env = os.environ if environ is None else environ
        values = {}
        for key, (name, kind) in ENVIRONMENT.items():
            text = env.get(key, "").strip()
            if not text:
                continue
            try:
                values[name] = kind(text)
            except ValueError:
                raise SettingsError(f"environment variable {key}={text!r} is not a valid {name}") from None
        return cls(settings=Settings.from_env(env), **values)
