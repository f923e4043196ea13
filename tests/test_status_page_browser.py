"""The backend's status page at `/`, rendered by headless Chromium against a live Redis-mode stack.

gunicorn web tier + redis-server + one `samiam worker`, a fake Label Studio serving one image.
After one good task and one refused task, the page must show the worker and its device, the
per-project table (Label Studio's project id, 1 computed, 1 delivered, 1 failed, the refused
task's reason as the last failure) and the reason in the recent failures; it must also reload
itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from browser import ARTIFACTS, headless_chromium, require_e2e
from fake_label_studio import LABEL_CONFIG, TOKEN, FakeLabelStudio, two_texture_png
from label_studio import free_port, stop, wait_for
from redis_server import RedisServer, redis_server_bin
from service_processes import start_worker, stop_all, wait_until

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.e2e]


def test_status_page_shows_workers_projects_and_failures(tmp_path):
    require_e2e(redis_server_bin() is not None, "redis-server")
    studio = FakeLabelStudio()
    redis = RedisServer(tmp_path / "redis").start()
    processes = []
    try:
        env = {"REDIS_URL": redis.url, "LABEL_STUDIO_URL": studio.url, "LABEL_STUDIO_API_KEY": TOKEN,
               "SAMIAM_PROPOSALS_PROPOSER": "classical", "SAMIAM_STATUS_REFRESH_S": "2"}
        processes.append(start_worker(env, "status-worker", tmp_path / "worker.log"))
        port = free_port()
        with open(tmp_path / "web.log", "ab") as log:
            processes.append(subprocess.Popen(
                [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}", "_wsgi:app"],
                cwd=REPO, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        backend = f"http://127.0.0.1:{port}"
        wait_for(backend + "/health", 60, processes[-1])
        wait_until(lambda: requests.get(backend + "/health", timeout=2).json().get("workers"), 60, "the worker")
        tasks = [{"id": 1, "project": 1, "data": {"image": studio.add_file("good.png", two_texture_png(96, 128))}},
                 {"id": 2, "project": 1, "data": {"image": "http://elsewhere.invalid/evil.png"}}]
        answer = requests.post(backend + "/predict", timeout=120, json={
            "tasks": tasks, "label_config": LABEL_CONFIG, "project": "1.1700000000", "params": {}}).json()
        assert [f["task"] for f in answer["failed"]] == [2]  # the refused host; task 1 is written back
        studio.wait_for_predictions(1)
        wait_until(lambda: requests.get(backend + "/jobs?project=1", timeout=2).json()["totals"].get("delivered"),
                   30, "the write-back to be recorded")

        driver = headless_chromium("1200,900")
        ARTIFACTS.mkdir(exist_ok=True)
        try:
            driver.get(backend + "/")
            text = driver.find_element("tag name", "body").text
            rows = [[cell.text for cell in row.find_elements("tag name", "td")]
                    for row in driver.find_elements("css selector", "table#projects tr")[1:]]
            driver.save_screenshot(str(ARTIFACTS / "status-page.png"))
            refresh = driver.find_element("css selector", "meta[http-equiv=refresh]").get_attribute("content")
            first_load = driver.execute_script("return performance.timeOrigin")
            time.sleep(3.5)
            reloaded = driver.execute_script("return performance.timeOrigin") != first_load
        finally:
            driver.quit()
        assert "status-worker" in text and "cpu" in text
        assert len(rows) == 1 and rows[0][:4] == ["1", "1", "1", "1"], rows  # project 1, not "1.1700000000"
        assert "elsewhere.invalid" in rows[0][4], "the project's last failure is not on the page"
        assert "elsewhere.invalid" in text, "the refused task's reason is not on the page"
        assert refresh == "2" and reloaded, "the status page does not reload itself"
    finally:
        stop_all(processes)
        for process in processes:
            if process.poll() is None:
                stop(process)
        redis.stop()
        studio.close()
