"""The Redis-mode service on loopback for benchmarks and drills: redis-server, the web tier under
gunicorn, ``samiam worker`` processes and the fake Label Studio of the tests (serving images as
``/data/upload/...`` and receiving write-backs). Every process is started here and stopped by
its PID (process group) when the ``with`` block ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Self

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_label_studio import LABEL_CONFIG, TOKEN, FakeLabelStudio
from label_studio import free_port, wait_for
from redis_server import RedisServer
from service_processes import start_worker, stop_all, wait_until

__all__ = ["LABEL_CONFIG", "ServiceStack", "task", "wait_until"]

WEB_PROCESSES = 2
WEB_THREADS = 16
STARTUP_TIMEOUT_S = 120


class ServiceStack:
    """``with ServiceStack(workers=2, env={...}) as stack:`` then ``stack.predict(tasks)``."""

    def __init__(self, workers: int = 2, env: dict[str, str] | None = None, persistent_redis: bool = False,
                 web_processes: int = WEB_PROCESSES):
        self.work = Path(tempfile.mkdtemp(prefix="samiam-stack-"))
        self.redis = RedisServer(self.work / "redis", persistent=persistent_redis)
        self.label_studio = FakeLabelStudio()
        self.n_workers = workers
        self.web_processes = web_processes
        self.extra_env = dict(env or {})
        self.web: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self._processes: list[subprocess.Popen] = []
        self.url = ""
        self.session = requests.Session()

    @property
    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.redis.url, "SAMIAM_PROPOSALS_PROPOSER": "classical",
                "LABEL_STUDIO_URL": self.label_studio.url, "LABEL_STUDIO_API_KEY": TOKEN,
                "SAMIAM_LOG_LEVEL": "WARNING", **self.extra_env}

    def __enter__(self) -> Self:
        try:
            self.redis.start()
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            with open(self.work / "web.log", "ab") as log:
                self.web = subprocess.Popen(
                    [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}",
                     "--workers", str(self.web_processes), "--worker-class", "gthread", "--threads", str(WEB_THREADS),
                     "_wsgi:app"], cwd=ROOT, env={**os.environ, **self.env},
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            self._processes.append(self.web)
            wait_for(self.url + "/health", STARTUP_TIMEOUT_S, self.web)
            for i in range(self.n_workers):
                self.start_worker(f"w{i + 1}")
            self.wait_for_workers(self.n_workers)
        except BaseException:
            self.close()
            raise
        return self

    def start_worker(self, name: str) -> subprocess.Popen:
        process = start_worker(self.env, name, self.work / f"{name}.log")
        self.workers[name] = process
        self._processes.append(process)
        return process

    def web_workers(self) -> list[int]:
        """PIDs of the gunicorn worker processes (children of the master we started)."""
        children = Path(f"/proc/{self.web.pid}/task/{self.web.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def health(self) -> dict:
        return self.session.get(self.url + "/health", timeout=5).json()

    def wait_for_workers(self, count: int) -> None:
        wait_until(lambda: self.health()["workers"] == count, STARTUP_TIMEOUT_S, f"{count} workers to register",
                   poll_s=0.2)

    def predict(self, tasks: list[dict], session: requests.Session | None = None, timeout_s: float = 120,
                lose_answer: bool = False) -> dict:
        """POST /predict as Label Studio does, and store the answer in the fake Label Studio as
        Label Studio would (unless ``lose_answer``: lost on its way); the JSON answer (``status``
        added)."""
        response = (session or self.session).post(
            self.url + "/predict", json={"tasks": tasks, "label_config": LABEL_CONFIG, "project": "1.1700000000",
                                         "params": {}}, timeout=timeout_s)
        answer = {"status": response.status_code, **response.json()}
        if not lose_answer:
            self.label_studio.store_answer(tasks, answer)
        return answer

    def counters(self) -> dict[str, float]:
        text = self.session.get(self.url + "/metrics", timeout=5).text
        return {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if not line.startswith("#")}

    def jobs(self) -> dict:
        return self.session.get(self.url + "/jobs?project=1", timeout=5).json()

    def close(self) -> None:
        stop_all(self._processes)
        self.redis.stop()
        self.label_studio.close()

    def __exit__(self, *exc) -> None:
        self.close()


def task(task_id: int, url: str) -> dict:
    return {"id": task_id, "data": {"image": url}, "project": 1}
