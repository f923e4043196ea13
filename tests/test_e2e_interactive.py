"""End to end with the real Label Studio 1.23.2: a smart keypoint through
``POST /api/ml/{id}/interactive-annotating`` reaches samiam (gunicorn + Redis + an RQ worker with
the weight-free engine, the stack of test_e2e_label_studio) and comes back as a brush region
containing the point, with the label the annotator chose; Label Studio stores nothing."""

from __future__ import annotations

import numpy as np
import pytest
from test_e2e_label_studio import stack  # noqa: F401 - the module's Label Studio + samiam fixture
from test_interactive import BAND, SIDE
from test_service_interactive import bands_png, point

from samiam.labelstudio.results import materials_from_results

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="tag" toName="image">
    <Label value="SrTiO3" background="#ff00ff"/><Label value="Ge" background="#00ffff"/>
  </BrushLabels>
  <KeyPointLabels name="click" toName="image" smart="true">
    <Label value="SrTiO3" smart="true"/><Label value="Ge" smart="true"/>
  </KeyPointLabels>
</View>"""

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _interactive_project(studio, backend: str) -> tuple[int, int]:
    """A project with smart keypoints, one task (the three-band image) and ``backend`` connected
    as an interactive backend; (ML backend id, task id)."""
    project = studio.api("POST", "/api/projects/", json={"title": "samiam clicks", "label_config": CONFIG}).json()["id"]
    studio.api("POST", f"/api/projects/{project}/import", files={"file1": ("bands.png", bands_png(), "image/png")})
    (task,) = studio.api("GET", f"/api/tasks?project={project}").json()["tasks"]
    backend_id = studio.api("POST", "/api/ml", json={
        "url": backend, "project": project, "title": "samiam", "is_interactive": True,
        "extra_params": {"merging.materials": 2}}).json()["id"]
    return backend_id, task["id"]


def _keypoint(x: float, y: float) -> dict:
    """A smart keypoint as Label Studio's labeling page sends it."""
    return {**point(x, y), "id": "kp1", "from_name": "click", "to_name": "image", "image_rotation": 0,
            "origin": "manual"}


def test_a_smart_keypoint_comes_back_as_a_brush_region_containing_it(stack):  # noqa: F811
    studio = stack["studio"]
    backend_id, task_id = _interactive_project(studio, stack["backend"])
    answer = studio.api("POST", f"/api/ml/{backend_id}/interactive-annotating",
                        json={"task": task_id, "context": {"result": [_keypoint(100, 20)]}}).json()
    assert "errors" not in answer, answer
    masks, labels = materials_from_results(answer["data"]["result"])
    assert masks.shape == (1, SIDE, SIDE) and labels == ["Ge"]
    assert masks[0][20, 100] and masks[0][:BAND].mean() > 0.9 and masks[0][BAND:2 * BAND].mean() < 0.25
    assert answer["data"]["model_version"].endswith("/weight-free")
    assert studio.api("GET", f"/api/predictions?task={task_id}").json() == []  # nothing stored

    outside = studio.api("POST", f"/api/ml/{backend_id}/interactive-annotating",
                         json={"task": task_id, "context": {"result": [{**_keypoint(100, 20),
                                                                        "value": {"x": 150, "y": 10}}]}}).json()
    # Label Studio shows only the status of a refused click (samiam's reason is in its answer body)
    assert any(error.startswith("400 Client Error") for error in outside["errors"]), outside
    assert np.isfinite(answer["data"]["score"])
