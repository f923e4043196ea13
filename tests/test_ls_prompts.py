"""Label Studio's interactive context -> prompts, and the clicked region as a brush prediction."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samiam.errors import PromptError
from samiam.interactive import ClickAnswer
from samiam.labelstudio.config import parse_label_config
from samiam.labelstudio.prompts import click_prediction, is_interactive, prompt_from_context
from samiam.labelstudio.results import materials_from_results

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <BrushLabels name="tag" toName="image"><Label value="SrTiO3"/><Label value="Ge"/></BrushLabels>
  <KeyPointLabels name="kp" toName="image" smart="true"><Label value="SrTiO3"/><Label value="Ge"/></KeyPointLabels>
</View>"""


def keypoint(x, y, positive=True, label="Ge", width=200, height=100):
    return {"type": "keypointlabels", "original_width": width, "original_height": height,
            "value": {"x": x, "y": y, "keypointlabels": [label]}, "is_positive": positive}


def test_keypoints_and_a_box_in_pixels():
    box = {"type": "rectanglelabels", "original_width": 200, "original_height": 100,
           "value": {"x": 10, "y": 20, "width": 50, "height": 30, "rectanglelabels": ["SrTiO3"]}}
    request = prompt_from_context({"result": [keypoint(50, 50), keypoint(25, 10, positive=False), box]})
    np.testing.assert_allclose(request.prompt.points, [[100, 50], [50, 10]])
    assert request.prompt.labels.tolist() == [1, 0]
    np.testing.assert_allclose(request.prompt.box, [20, 20, 120, 50])
    assert request.label == "SrTiO3" and request.size == (100, 200)


@pytest.mark.parametrize("context, problem", [
    (None, "non-empty 'result'"),
    ({"result": []}, "non-empty 'result'"),
    ({"result": "x"}, "non-empty 'result'"),
    ({"result": [1]}, "must be an object"),
    ({"result": [{**keypoint(1, 1), "type": "polygonlabels"}]}, "keypointlabels or rectanglelabels"),
    ({"result": [{**keypoint(1, 1), "original_width": True}]}, "positive integer"),
    ({"result": [{**keypoint(1, 1), "original_height": 0}]}, "positive integer"),
    ({"result": [keypoint("1", 1)]}, "value.x must be a finite number"),
    ({"result": [keypoint(float("nan"), 1)]}, "value.x must be a finite number"),
    ({"result": [keypoint(150, 1)]}, "outside the 200x100 image"),
    ({"result": [keypoint(1, 1), keypoint(2, 2, width=300)]}, "disagree on the image size"),
    ({"result": [keypoint(1, 1, positive=False)]}, "foreground point or a box"),
    ({"result": [keypoint(1, 1)] * 65}, "at most 64"),
])
def test_malformed_contexts_are_named(context, problem):
    with pytest.raises(PromptError, match=problem):
        prompt_from_context(context)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_json_is_a_prompt_or_a_named_error(context):
    try:
        prompt_from_context(context)
    except PromptError:
        pass


def test_is_interactive():
    assert is_interactive({"context": {"result": [keypoint(1, 1)]}})
    assert not is_interactive({"context": None}) and not is_interactive(None) and not is_interactive({"context": []})


def test_the_region_comes_back_with_the_chosen_label():
    mask = np.zeros((100, 200), bool)
    mask[10:40, 30:90] = True
    brush = parse_label_config(CONFIG)
    answer = ClickAnswer(mask=mask, score=0.7, path="sam", encoder_ran=False)
    prediction = click_prediction(answer, brush, "Ge", "v1")
    masks, names = materials_from_results(prediction["result"])
    np.testing.assert_array_equal(masks[0], mask)
    assert names == ["Ge"] and prediction["model_version"] == "v1" and prediction["score"] == pytest.approx(0.7)
    assert materials_from_results(click_prediction(answer, brush, "unknown", "v1")["result"])[1] == ["SrTiO3"]
