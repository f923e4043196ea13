"""`samiam worker` (and web tier) subprocesses for fault tests, drills and benchmarks, stopped by PID.

Each worker runs in a session (and process group) of its own, so that a test can list what is
left of a worker it SIGKILLed (:func:`session_processes`: nothing, as a worker forks no child),
and the clean-up stops the whole group of each process we started, dead leader or not.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis
import requests
from label_studio import TOKEN, free_port, start_label_studio, stop, wait_for
from rq import Queue, Worker

ROOT = Path(__file__).resolve().parents[1]


def start_worker(env: dict[str, str], name: str, log_path: Path, module: str = "samiam.cli") -> subprocess.Popen:
    """``samiam worker --name NAME`` in the repository root with ``env`` (REDIS_URL etc.);
    ``module``: the ``python -m`` module that runs the CLI (``tiny_sam_worker``: with a tiny SAM)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", module, "worker", "--name", name], cwd=ROOT,
                                env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def log_tails(folder: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of every ``*.log`` in ``folder``: what the processes of a failed
    test said (pytest keeps only the last few runs' temporary folders)."""
    return "\n".join(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
                     for log in sorted(folder.glob("*.log")))


def start_web(env: dict[str, str], work: Path, name: str) -> tuple[str, subprocess.Popen]:
    """The web tier under gunicorn (2 gthread workers) on a free loopback port, logging to
    ``work/NAME.log``; (its URL, the process)."""
    port = free_port()
    with open(work / f"{name}.log", "wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2",
             "--worker-class", "gthread", "--threads", "8", "_wsgi:app"], cwd=ROOT, env=env,
            start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    return f"http://127.0.0.1:{port}", process


def stop_all(processes: list[subprocess.Popen]) -> None:
    """Stop each process group we started (SIGTERM, then SIGKILL); dead leaders' groups too."""
    for process in processes:
        if process.poll() is None:
            stop(process)
        else:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # whatever a killed worker left behind
            except ProcessLookupError:
                pass


def session_processes(session_id: int) -> list[int]:
    """PIDs of the live (not zombie) processes of session ``session_id`` (a process started
    with ``start_new_session``, dead or alive, and whatever it forked)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended while we looked
            continue
        if int(fields[3]) == session_id and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def busy_workers(redis_url: str, queue: str = "samiam") -> list[str]:
    """Names of the workers on ``queue`` that are running a job now."""
    listening = Queue(queue, connection=redis.Redis.from_url(redis_url))
    return [w.name for w in Worker.all(queue=listening) if w.get_current_job_id()]


def kill_busy_worker(redis_url: str, workers: dict[str, subprocess.Popen], queue: str = "samiam",
                     timeout_s: float = 60) -> str:
    """SIGKILL (like the OOM killer) the worker of ``workers`` (name -> process) that is running
    a job, once one is; returns its name."""
    busy = wait_until(lambda: busy_workers(redis_url, queue), timeout_s, "a worker to take a job")[0]
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


@contextlib.contextmanager
def label_studio_with_backend(work: Path, worker_name: str, backend_env: dict[str, str],
                              studio_env: dict[str, str] | None = None):
    """The end-to-end stack on loopback: redis-server, Label Studio (``studio_env`` added to its
    environment), samiam's web tier under gunicorn and one ``samiam worker`` (``backend_env``
    added to theirs), ready for predictions. Yields ``{"studio", "backend", "env", "processes"}``;
    processes a caller appends to ``processes`` are stopped with the rest."""
    from redis_server import RedisServer

    processes = []
    redis_server = RedisServer(work / "redis").start()
    studio = None
    try:
        studio = start_label_studio(work, studio_env)
        env = dict(os.environ, REDIS_URL=redis_server.url, LABEL_STUDIO_URL=studio.url, LABEL_STUDIO_API_KEY=TOKEN,
                   **backend_env)
        backend, web = start_web(env, work, "web")
        processes += [web, start_worker(env, worker_name, work / "worker.log")]
        wait_for(backend + "/health", 60, web)
        wait_until(lambda: requests.get(backend + "/health", timeout=5).json()["ready"], 60,
                   f"the worker to be ready (its log: {work / 'worker.log'})", poll_s=0.3)
        yield {"studio": studio, "backend": backend, "env": env, "processes": processes}
    finally:
        stop_all(processes)
        if studio is not None:
            stop(studio.process)
        redis_server.stop()
