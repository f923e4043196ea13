"""End to end with the real client: Label Studio 1.23.2 -> samiam (gunicorn + Redis + RQ worker).

The tests start every part themselves on loopback: redis-server, one `samiam worker`, two web
tiers under gunicorn (one with the default deadline, one with ``PREDICT_DEADLINE_S=1`` so that
its answers are late), and Label Studio. They upload images, connect a backend, ask Label
Studio for predictions through its API ("Retrieve predictions"), and check that the stored brush
masks decode to exactly the engine's masks for each image under the backend's settings:

* answered in time: a sample micrograph and a synthetic scene with several materials; then headless
  Chromium opens the scene in Label Studio's labeling page, and the screenshot (kept under
  ``test-artifacts/``) must show each label's colour where the engine put that material;
* late: 3 tasks whose ``/predict`` answer comes empty; every prediction must still reach Label
  Studio, written back by the jobs through its API.
"""

from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from browser import ARTIFACTS, headless_chromium, require_e2e
from label_studio import label_studio_bin, log_in, wait_for
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "samples" / "lsfo_lattice_haadf.jpg"
SCREENSHOT = ARTIFACTS / "label-studio-labeling-page.png"
LABELS = {"Material A": "#ff00ff", "Material B": "#00ffff", "Material C": "#ffff00"}
CONFIG = ("<View><Image name=\"image\" value=\"$image\"/><BrushLabels name=\"tag\" toName=\"image\">"
          + "".join(f"<Label value=\"{name}\" background=\"{color}\"/>" for name, color in LABELS.items())
          + "</BrushLabels></View>")
ENGINE_ENV = {"SAMIAM_PROPOSALS_PROPOSER": "classical"}
LATE_DEADLINE_S = 1
TINT_MARGIN = 60
"""A screen pixel shows a label colour when the colour's channels exceed the others by this much
(a grey micrograph has no such pixel of its own)."""
MIN_AGREEMENT = 0.8
"""Share of a material's pixels that must show its colour on screen, and of the pixels showing a
colour that must belong to its material (the rest: edges, rescaling, the brush's anti-aliasing)."""

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_e2e(label_studio_bin() is not None, "label-studio (set SAMIAM_LABEL_STUDIO_BIN)")
    require_e2e(shutil.which("redis-server") is not None, "redis-server")
    from service_processes import label_studio_with_backend, start_web

    work = tmp_path_factory.mktemp("e2e")
    with label_studio_with_backend(work, "e2e-worker", ENGINE_ENV) as stack:
        late, late_web = start_web({**stack["env"], "PREDICT_DEADLINE_S": str(LATE_DEADLINE_S)}, work, "web-late")
        checked, checked_web = start_web({**stack["env"], "SAMIAM_ANSWER_CHECK_S": "1"}, work, "web-checked")
        stack["processes"] += [late_web, checked_web]
        wait_for(late + "/health", 60, late_web)
        wait_for(checked + "/health", 60, checked_web)
        yield {"studio": stack["studio"], "backend": stack["backend"], "late_backend": late,
               "checked_backend": checked, "work": work, "env": stack["env"]}


def _png(image: np.ndarray) -> bytes:
    """(H, W) float image in [0, 1] -> 8-bit PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _scene_png(seed: int, size: int) -> bytes:
    from samiam.synth import generate_scene
    return _png(generate_scene(seed, 1, size=size).image)


def _scene_with_materials(env: dict, size: int, seeds: range = range(1, 9)) -> bytes:
    """A synthetic scene (PNG) in which the engine finds at least 2 materials, so that the
    screenshot can show that each colour lands where its material is."""
    for seed in seeds:
        image = _scene_png(seed, size)
        if len(_engine_materials(image, env)) >= 2:
            return image
    raise AssertionError(f"the engine finds one material in every {size} px scene of seeds {seeds}")


def _project_with_tasks(studio, backend: str, title: str, images: dict[str, bytes]) -> tuple[int, dict[str, int]]:
    """A project with one task per image and ``backend`` connected; (project id, name -> task id)."""
    project = studio.api("POST", "/api/projects/", json={"title": title, "label_config": CONFIG}).json()["id"]
    files = {f"file{i}": (name, data, "image/png" if name.endswith(".png") else "image/jpeg")
             for i, (name, data) in enumerate(images.items(), 1)}
    studio.api("POST", f"/api/projects/{project}/import", files=files)
    tasks = studio.api("GET", f"/api/tasks?project={project}").json()["tasks"]
    by_name = {name: next(t["id"] for t in tasks if t["data"]["image"].endswith("-" + name)) for name in images}
    studio.api("POST", "/api/ml", json={"url": backend, "project": project, "title": "samiam", "is_interactive": False})
    return project, by_name


def _retrieve_predictions(studio, project: int, task_ids: list[int], timeout_s: float = 120) -> dict[int, dict]:
    """Label Studio's "Retrieve predictions" action on ``task_ids``, then each task's one stored
    prediction (polled: late ones arrive by write-back)."""
    studio.api("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
               json={"selectedItems": {"all": False, "included": task_ids}})
    stored: dict[int, list] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stored = {t: studio.api("GET", f"/api/predictions?task={t}").json() for t in task_ids}
        if all(stored.values()):
            break
        time.sleep(0.5)
    assert all(len(p) == 1 for p in stored.values()), f"predictions per task: { {t: len(p) for t, p in stored.items()} }"
    return {t: p[0] for t, p in stored.items()}


def _engine_materials(image_bytes: bytes, env: dict) -> np.ndarray:
    """What the engine itself gives for this image under the backend's settings: (K, H, W) bool."""
    from samiam.labelstudio.model import SamiamModel
    from samiam.pipeline import Engine
    from samiam.settings import Settings

    settings = Settings.from_env(env)
    model = SamiamModel(settings, model_version="reference")
    return Engine(settings).segment(image_bytes, model.settings_for(CONFIG)).materials


def _check_stored(prediction: dict, image_bytes: bytes, env: dict, model_version: str) -> tuple[np.ndarray, list]:
    from samiam.labelstudio.results import materials_from_results

    assert prediction["model_version"] == model_version
    stored, labels = materials_from_results(prediction["result"])
    expected = _engine_materials(image_bytes, env)
    assert len(expected) >= 1 and stored.shape == expected.shape
    assert np.array_equal(stored, expected), "stored brush masks differ from the engine's masks"
    assert set(labels) <= set(LABELS)
    return stored, labels


def _setup_model_version(studio, project: int) -> str:
    return studio.api("GET", f"/api/ml?project={project}").json()[0]["model_version"]


def test_label_studio_stores_the_engines_masks_and_draws_them(stack):
    studio, env = stack["studio"], stack["env"]
    images = {SAMPLE.name: SAMPLE.read_bytes(), "scene.png": _scene_with_materials(env, size=512)}
    project, tasks = _project_with_tasks(studio, stack["backend"], "samiam e2e", images)
    stored = _retrieve_predictions(studio, project, list(tasks.values()))
    version = _setup_model_version(studio, project)
    assert version
    masks = {name: _check_stored(stored[tasks[name]], data, env, version) for name, data in images.items()}
    states = requests.get(f"{stack['backend']}/jobs?project={project}", timeout=5).json()["counts"]
    assert states["answered"] == 2 and states["written"] == 0, states  # answered in time, not written back

    scene_masks, scene_labels = masks["scene.png"]
    screen = _screenshot_labeling_page(studio.url, project, tasks["scene.png"], stack["work"])
    shown = _shown_labels(screen, [LABELS[name] for name in scene_labels], scene_masks.shape[1:])
    for k, label in enumerate(scene_labels):
        expected, on_screen = scene_masks[k], shown == k
        recall = (expected & on_screen).sum() / expected.sum()
        precision = (expected & on_screen).sum() / max(on_screen.sum(), 1)
        assert recall >= MIN_AGREEMENT and precision >= MIN_AGREEMENT, \
            f"{label}: {recall:.0%} of its pixels show its colour, {precision:.0%} of those showing it are its own"


def test_late_predictions_arrive_by_write_back(stack):
    studio, env = stack["studio"], stack["env"]
    images = {f"late{seed}.png": _scene_png(seed=seed, size=1024) for seed in (11, 12, 13)}
    project, tasks = _project_with_tasks(studio, stack["late_backend"], "samiam late", images)
    started = time.monotonic()
    stored = _retrieve_predictions(studio, project, list(tasks.values()))
    version = _setup_model_version(studio, project)
    for name, data in images.items():
        assert stored[tasks[name]]["result"], f"empty prediction stored for {name}"
        _check_stored(stored[tasks[name]], data, env, version)
    states = requests.get(f"{stack['late_backend']}/jobs?project={project}", timeout=5).json()["counts"]
    assert states["written"] == 3, f"not every prediction came by write-back: {states}"
    assert time.monotonic() - started < 120


def test_the_answer_check_finds_what_label_studio_stored_and_posts_nothing(stack):
    studio, backend = stack["studio"], stack["checked_backend"]
    project, tasks = _project_with_tasks(studio, backend, "samiam checked", {"checked.png": _scene_png(21, 256)})
    stored = _retrieve_predictions(studio, project, list(tasks.values()))  # answered; checked 1 s later

    def counter(name: str) -> float:
        lines = requests.get(f"{backend}/metrics", timeout=5).text.splitlines()
        return next(float(line.split()[1]) for line in lines if line.startswith(name + " "))

    deadline = time.monotonic() + 60
    while counter("samiam_answers_checked_total") < 1:
        assert time.monotonic() < deadline, "no answer check ran within 60 s"
        time.sleep(0.5)
    [task_id] = tasks.values()
    assert [p["id"] for p in studio.api("GET", f"/api/predictions?task={task_id}").json()] == [stored[task_id]["id"]]
    assert counter("samiam_answers_lost_total") == 0


def _screenshot_labeling_page(url: str, project_id: int, task_id: int, work: Path) -> np.ndarray:
    """Log in, open the task in the labeling page, and return the screenshot cropped to the
    image as shown: (h, w, 3) uint8. Also saved under test-artifacts/ (full page)."""
    from selenium.webdriver.common.by import By

    driver = headless_chromium("1400,1000", work / "chromium-profile")
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        log_in(driver, url)
        driver.get(f"{url}/projects/{project_id}/data?task={task_id}")
        deadline, rect = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            time.sleep(1)
            # The labeling canvas: Label Studio draws the task's image (an <img alt="image">, clipped
            # out of sight) on a canvas of the same size and the regions on canvases above it.
            images = [i for i in driver.find_elements(By.CSS_SELECTOR, "img[alt='image']") if i.size["width"] > 0]
            if not images:
                continue
            rect = images[0].rect
            driver.save_screenshot(str(SCREENSHOT))
            crop = _crop(np.asarray(Image.open(SCREENSHOT).convert("RGB")), rect)
            if (_tint(crop, list(LABELS.values())).max(axis=-1) > TINT_MARGIN).mean() > 0.5:
                break  # the brush layer is drawn
        (ARTIFACTS / "label-studio-labeling-page.html").write_text(driver.page_source)
    finally:
        driver.quit()
    assert rect is not None, "the labeling page never showed the task's image"
    return _crop(np.asarray(Image.open(SCREENSHOT).convert("RGB")), rect)


def _crop(rgb: np.ndarray, rect: dict) -> np.ndarray:
    top, left = round(rect["y"]), round(rect["x"])
    return rgb[top:top + round(rect["height"]), left:left + round(rect["width"])]


def _tint(rgb: np.ndarray, colors: list[str]) -> np.ndarray:
    """(h, w, len(colors)) int: by how much each pixel's channels that a label colour has exceed
    the channels it lacks (negative: not that colour)."""
    pixels = rgb.astype(np.int32)
    margins = []
    for color in colors:
        strong = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)]) > 128
        margins.append(pixels[..., strong].min(axis=-1) - pixels[..., ~strong].max(axis=-1))
    return np.stack(margins, axis=-1)


def _shown_labels(crop: np.ndarray, colors: list[str], shape: tuple[int, int]) -> np.ndarray:
    """(H, W) int at the image's own size: index of the label colour each pixel shows, -1 none."""
    tint = _tint(crop, colors)
    shown = np.where(tint.max(axis=-1) > TINT_MARGIN, tint.argmax(axis=-1), -1)
    rows = np.minimum(np.arange(shape[0]) * crop.shape[0] // shape[0], crop.shape[0] - 1)
    cols = np.minimum(np.arange(shape[1]) * crop.shape[1] // shape[1], crop.shape[1] - 1)
    return shown[np.ix_(rows, cols)]
