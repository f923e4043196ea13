"""`samiam worker` subprocesses for fault tests, drills and benchmarks, stopped by PID.

Each worker runs in a process group of its own: RQ forks a scheduler process from it, which a
SIGKILL of the worker alone (what the drills do, like the OOM killer) leaves behind, so the
clean-up stops the whole group of the process we started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
from label_studio import stop
from rq import Queue, Worker

ROOT = Path(__file__).resolve().parents[1]


def start_worker(env: dict[str, str], name: str, log_path: Path) -> subprocess.Popen:
    """``samiam worker --name NAME`` in the repository root with ``env`` (REDIS_URL etc.)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "samiam.cli", "worker", "--name", name], cwd=ROOT,
                                env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop_all(processes: list[subprocess.Popen]) -> None:
    """Stop each process group we started (SIGTERM, then SIGKILL); dead leaders' groups too."""
    for process in processes:
        if process.poll() is None:
            stop(process)
        else:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # what a killed worker left behind (RQ's scheduler)
            except ProcessLookupError:
                pass


def kill_busy_worker(redis_url: str, workers: dict[str, subprocess.Popen], queue: str = "samiam",
                     timeout_s: float = 60) -> str:
    """SIGKILL (like the OOM killer) the worker of ``workers`` (name -> process) that is running
    a job, once one is; returns its name."""
    listening = Queue(queue, connection=redis.Redis.from_url(redis_url))
    busy = wait_until(lambda: [w.name for w in Worker.all(queue=listening) if w.get_current_job_id()],
                      timeout_s, "a worker to take a job")[0]
    os.kill(workers[busy].pid, signal.SIGKILL)
    workers[busy].wait(10)
    return busy


def wait_until(condition, timeout_s: float, what: str, poll_s: float = 0.05):
    """Poll ``condition()`` until it returns something truthy (returned) or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)
