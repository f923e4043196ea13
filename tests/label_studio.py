"""A real Label Studio 1.23.2 server for end-to-end tests, started and stopped by PID.

Label Studio is installed in a virtualenv of its own (``.ci/run`` does it); its executable is
found through ``SAMIAM_LABEL_STUDIO_BIN`` or ``label-studio`` on PATH. A fresh data directory
takes 20-30 s of migrations, so the first start builds a template (admin user, legacy API token
enabled) under ``~/.cache/samiam-ci`` and every later start copies it (about 3 s).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

EMAIL = "admin@example.com"
PASSWORD = "adminpass123"
TOKEN = "0123456789abcdef0123456789abcdef01234567"
TEMPLATE = Path(os.environ.get("SAMIAM_LS_TEMPLATE", Path.home() / ".cache" / "samiam-ci" / "ls-data-1.23.2"))


def label_studio_bin() -> str | None:
    configured = os.environ.get("SAMIAM_LABEL_STUDIO_BIN")
    if configured and Path(configured).exists():
        return configured
    return shutil.which("label-studio")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout_s: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {process.returncode}")
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not up after {timeout_s} s")


def stop(process: subprocess.Popen) -> None:
    """Stop a process group we started (never by name)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@dataclass
class LabelStudio:
    url: str
    process: subprocess.Popen
    log_path: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {TOKEN}"}

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        response = requests.request(method, self.url + path, headers=self.headers, timeout=120, **kwargs)
        if not response.ok:
            raise AssertionError(f"{method} {path} -> {response.status_code}: {response.text[:500]}")
        return response


def log_in(driver, url: str) -> None:
    """Log the selenium ``driver`` in to Label Studio at ``url`` as the admin."""
    from selenium.webdriver.common.by import By

    driver.get(url + "/user/login/")
    driver.find_element(By.NAME, "email").send_keys(EMAIL)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    deadline = time.monotonic() + 30
    while "/user/login" in driver.current_url and time.monotonic() < deadline:
        time.sleep(0.3)


def _environment(port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false",
        "LATEST_VERSION_CHECK": "false", "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false",
        "LABEL_STUDIO_HOST": f"http://127.0.0.1:{port}",
    }, **(extra or {}))
    return env


def _start(executable: str, data_dir: Path, port: int, log_path: Path,
           env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [executable, "start", "--no-browser", "--data-dir", str(data_dir), "--port", str(port),
             "--internal-host", "127.0.0.1", "--username", EMAIL, "--password", PASSWORD,
             "--user-token", TOKEN, "--enable-legacy-api-token"],
            env=_environment(port, env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _build_template(executable: str) -> None:
    staging = TEMPLATE.with_name(TEMPLATE.name + f".building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    port = free_port()
    process = _start(executable, staging, port, staging / "first-start.log")
    try:
        wait_for(f"http://127.0.0.1:{port}/health", 600, process)  # migrations: minutes on a busy box
        # The admin user and its legacy token exist once the API answers with that token.
        deadline = time.monotonic() + 60
        while requests.get(f"http://127.0.0.1:{port}/api/projects", timeout=5,
                           headers={"Authorization": f"Token {TOKEN}"}).status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError("Label Studio's admin token never worked")
            time.sleep(0.5)
    finally:
        stop(process)
    staging.rename(TEMPLATE)


def start_label_studio(work_dir: Path, env: dict[str, str] | None = None) -> LabelStudio:
    """Label Studio on a free loopback port with a copy of the template's data; ``env`` adds
    settings (e.g. ``LOCAL_FILES_SERVING_ENABLED``)."""
    executable = label_studio_bin()
    if executable is None:
        raise FileNotFoundError("label-studio not found: set SAMIAM_LABEL_STUDIO_BIN (.ci/run installs it)")
    if not TEMPLATE.exists():
        _build_template(executable)
    data_dir = work_dir / "ls-data"
    shutil.copytree(TEMPLATE, data_dir)
    port = free_port()
    log_path = work_dir / "label-studio.log"
    process = _start(executable, data_dir, port, log_path, env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url + "/health", 120, process)
    except Exception:
        stop(process)
        raise
    return LabelStudio(url=url, process=process, log_path=log_path)
