"""A real ``redis-server`` for tests: loopback, a free port, its own temp dir, stopped by PID."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Self

import redis
from label_studio import free_port

STARTUP_TIMEOUT_S = 10.0
PERSISTENCE = ("--appendonly", "yes", "--appendfsync", "always")
"""Flags of a persistent server: those of the ``redis`` service in ``docker-compose.yml``."""


def redis_server_bin() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    """``redis-server`` without persistence (``--save "" --appendonly no``) unless ``persistent``:
    then with the append-only file synced on every write, as in ``docker-compose.yml`` (an
    acknowledged write survives even a SIGKILL of the server)."""

    def __init__(self, work_dir: Path, persistent: bool = False):
        self.work_dir = Path(work_dir)
        self.persistent = persistent
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        persistence = list(PERSISTENCE) if self.persistent else ["--save", "", "--appendonly", "no"]
        with open(self.work_dir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(
                [redis_server_bin(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                 str(self.work_dir), *persistence], stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                client.ping()
                return self
            except redis.exceptions.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start; see {self.work_dir / 'redis.log'}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server we started (a crash: no shutdown, no final write) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Terminate the server we started (by its PID) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
