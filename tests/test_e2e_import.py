"""End to end: ``samiam import --label-studio URL --labels ... --backend URL --predict`` against
Label Studio 1.23.2 and a running samiam (gunicorn + Redis + RQ worker), all on loopback.

The lab's folder holds every microscope fixture of ``shared/data/formats`` (the Velox zip
extracted) and the repository's ``samples/``. Label Studio serves local files from a document
root that holds ``--out`` (``LOCAL_FILES_SERVING_ENABLED``), as when Label Studio and samiam share
a folder. After the one command, Label Studio's API must show the project with samiam's
BrushLabels (and the smart tools), one task per image with every field of ``tasks.json``, and one
stored prediction per task whose regions have the PNG's size (except the 2x2 and 3x3 fixtures,
which hold no region: their tasks fail with the named reason and nothing is stored); headless Chromium must show the
16-bit sample's PNG on its labeling page (the ``<img>`` decoded at the PNG's size, and the screen
region showing the micrograph, not a blank or an error).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, unquote

import cv2
import numpy as np
import pytest
import requests
from browser import ARTIFACTS, headless_chromium, require_e2e
from label_studio import TOKEN, label_studio_bin, log_in
from PIL import Image
from shared_data import formats_dir, velox_files

from samiam.labelstudio.config import parse_label_config
from samiam.labelstudio.results import materials_from_results

REPO = Path(__file__).resolve().parents[1]
LABELS = "SrTiO3,Ge,Pt/C"
TITLE = "lab import e2e"
SIXTEEN_BIT = "moo3_nanoparticles_16bit"
"""The 16-bit sample whose labeling page is screenshot."""
SCREENSHOT = ARTIFACTS / "label-studio-import-16bit.png"
MIN_CORRELATION = 0.8
"""Correlation of the screen region's grey levels with the PNG resized to it: the micrograph is
what is shown (a blank, an error icon or another image correlates near 0; the brush overlay of
the stored prediction, drawn translucent, lowers it a little)."""

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Redis, Label Studio serving local files below ``work/files``, and samiam (web + worker)."""
    require_e2e(label_studio_bin() is not None, "label-studio (set SAMIAM_LABEL_STUDIO_BIN)")
    require_e2e(shutil.which("redis-server") is not None, "redis-server")
    pytest.importorskip("rsciio", reason="RosettaSciIO (pip install 'samiam[formats]') reads microscope files")
    from service_processes import label_studio_with_backend

    work = tmp_path_factory.mktemp("e2e-import")
    document_root = work / "files"
    document_root.mkdir()
    with label_studio_with_backend(work, "e2e-import-worker", {"SAMIAM_PROPOSALS_PROPOSER": "classical"},
                                   {"LOCAL_FILES_SERVING_ENABLED": "true",
                                    "LOCAL_FILES_DOCUMENT_ROOT": str(document_root)}) as stack:
        yield {"studio": stack["studio"], "backend": stack["backend"], "work": work, "document_root": document_root}


@pytest.fixture(scope="module")
def imported(stack):
    """The one command, run as a lab runs it; (its completed process, the output folder)."""
    lab = stack["work"] / "lab"
    shutil.copytree(formats_dir(), lab)
    velox_files(lab)
    for sample in (REPO / "samples").glob("*.*[fg]"):  # the .jpg and the .tiff
        shutil.copy(sample, lab)
    out = stack["document_root"] / "em"
    command = [sys.executable, "-m", "samiam.cli", "import", str(lab), "--out", str(out),
               "--document-root", str(stack["document_root"]), "--label-studio", stack["studio"].url,
               "--labels", LABELS, "--title", TITLE, "--smart", "--backend", stack["backend"], "--predict"]
    done = subprocess.run(command, check=False, cwd=REPO, env=dict(os.environ, LABEL_STUDIO_API_KEY=TOKEN),
                          capture_output=True, text=True, timeout=600)
    return done, out


def _project(studio) -> dict:
    [project] = [p for p in studio.api("GET", "/api/projects/").json()["results"] if p["title"] == TITLE]
    return project


def _tasks(studio, project: int) -> list[dict]:
    return studio.api("GET", f"/api/tasks?project={project}&page_size=1000").json()["tasks"]


def _outcomes(studio, backend: str, project: int, tasks: list[dict], timeout_s: float = 240) -> tuple[dict, dict]:
    """(task id -> its stored predictions, task id -> the backend's failure reason), polled until
    every task has one or the other (predictions of a batch with a failure are written back)."""
    deadline = time.monotonic() + timeout_s
    while True:
        stored = {t["id"]: studio.api("GET", f"/api/predictions?task={t['id']}").json() for t in tasks}
        records = requests.get(f"{backend}/jobs?project={project}", timeout=5).json()["tasks"]
        failed = {r["task"]: r["reason"] for r in records if r["state"] == "failed"}
        if all(stored[t] or t in failed for t in stored) or time.monotonic() > deadline:
            return stored, failed


def test_one_command_makes_a_project_with_a_prediction_per_image(stack, imported):
    done, out = imported
    # The MRC fixture's frames are constant, the 2x2 DM4 and the EMD stack's 3x3 frames too small to
    # segment: named errors, the other files imported.
    assert done.returncode == 1, done.stdout + done.stderr
    assert "imported 6 of 9 files as 6 tasks" in done.stdout
    assert "3 failed: 20241021_00405_movie.mrc, fei_example_tem_stack.emd, test-1.dm4" in done.stdout
    assert "requested predictions for every task" in done.stdout
    studio = stack["studio"]
    project = _project(studio)
    assert parse_label_config(project["label_config"]).labels == tuple(LABELS.split(","))
    assert 'KeyPointLabels name="point" toName="image" smart="true"' in project["label_config"]
    [backend] = studio.api("GET", f"/api/ml?project={project['id']}").json()
    assert backend["url"].rstrip("/") == stack["backend"] and backend["is_interactive"]

    written = [task["data"] for task in json.loads((out / "tasks.json").read_text())]
    tasks = _tasks(studio, project["id"])
    assert sorted(json.dumps(t["data"], sort_keys=True) for t in tasks) \
        == sorted(json.dumps(d, sort_keys=True) for d in written) and len(tasks) == 6
    stored, failed = _outcomes(studio, stack["backend"], project["id"], tasks)
    counts = {unquote(t["data"]["image"].rsplit("/", 1)[-1]): len(stored[t["id"]]) for t in tasks}
    assert not failed and sorted(counts.values()) == [1] * 6, f"failed: {failed}, stored per task: {counts}"
    for task in tasks:
        for prediction in stored[task["id"]]:
            results = prediction["result"]
            shown = (task["data"]["height"], task["data"]["width"])
            assert results and all((r["original_height"], r["original_width"]) == shown for r in results)
            masks, labels = materials_from_results(results)
            assert masks.shape[1:] == shown and set(labels) <= set(LABELS.split(","))
        # Label Studio serves the PNG the annotators see from the shared folder.
        png = studio.api("GET", task["data"]["image"]).content
        assert png == (out / unquote(task["data"]["image"].rsplit("/", 1)[-1])).read_bytes()


def test_the_16bit_images_labeling_page_shows_it(stack, imported):
    _, out = imported
    studio = stack["studio"]
    project = _project(studio)
    [task] = [t for t in _tasks(studio, project["id"]) if t["data"]["image"].endswith(quote(SIXTEEN_BIT) + ".png")]
    png = cv2.imread(str(out / f"{SIXTEEN_BIT}.png"), cv2.IMREAD_UNCHANGED)  # (H, W) uint8
    natural, crop = _screenshot_image(studio.url, project["id"], task["id"], stack["work"])
    assert natural == (png.shape[1], png.shape[0]), f"<img> decoded at {natural}, the PNG is {png.shape[::-1]}"
    grey = crop.astype(np.float64).mean(axis=-1)
    assert grey.std() > 10, "the image region on screen is flat: nothing was drawn"
    resized = cv2.resize(png, (grey.shape[1], grey.shape[0]), interpolation=cv2.INTER_AREA).astype(np.float64)
    correlation = np.corrcoef(grey.ravel(), resized.ravel())[0, 1]
    assert correlation >= MIN_CORRELATION, f"the screen shows something else than the PNG (r = {correlation:.2f})"


def _screenshot_image(url: str, project: int, task: int, work: Path) -> tuple[tuple[int, int], np.ndarray]:
    """Open the task's labeling page; the shown ``<img>``'s natural (width, height) once it has
    loaded, and the screenshot cropped to where it is drawn: (h, w, 3) uint8. The full page is
    kept as :data:`SCREENSHOT`."""
    from selenium.webdriver.common.by import By

    driver = headless_chromium("1400,1000", work / "chromium-profile")
    ARTIFACTS.mkdir(exist_ok=True)
    natural, rect = None, None
    try:
        log_in(driver, url)
        driver.get(f"{url}/projects/{project}/data?task={task}")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and natural is None:
            time.sleep(1)
            for image in driver.find_elements(By.CSS_SELECTOR, "img[alt='image']"):
                loaded = driver.execute_script(
                    "return arguments[0].complete && arguments[0].naturalWidth > 0 ? "
                    "[arguments[0].naturalWidth, arguments[0].naturalHeight] : null", image)
                if loaded and image.size["width"] > 0:
                    natural, rect = tuple(loaded), image.rect
        time.sleep(3)  # the canvas draws the image (and the prediction) after it loads
        driver.save_screenshot(str(SCREENSHOT))
    finally:
        driver.quit()
    assert natural is not None, "the labeling page never loaded the task's image"
    rgb = np.asarray(Image.open(SCREENSHOT).convert("RGB"))
    top, left = round(rect["y"]), round(rect["x"])
    return natural, rgb[top:top + round(rect["height"]), left:left + round(rect["width"])]
