"""Click-to-fix (samiam.interactive): prompts, the SAM path on a tiny SAM through the real
loading path (embedding cached per image), the weight-free path, and semantic growth."""

from __future__ import annotations

import numpy as np
import pytest
from segment_anything import SamPredictor
from tiny_sam import install_tiny_sam, save_tiny_checkpoint, tiny_sam_settings

from samiam.errors import PromptError
from samiam.interactive import Clicker, Prompt, image_key
from samiam.io import Micrograph
from samiam.pipeline import Engine
from samiam.settings import Settings

SIDE = 192
BAND = SIDE // 3


def three_bands(seed: int = 0) -> Micrograph:
    """Lattice A on the top and bottom thirds, a different lattice B in the middle third."""
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    a = np.sin(2 * np.pi * x / 6) * np.sin(2 * np.pi * y / 6)
    b = 0.3 * np.sin(2 * np.pi * (x + y) / 11) + 0.8
    grey = np.where((y < BAND) | (y >= 2 * BAND), a, b)
    grey = grey + np.random.default_rng(seed).normal(0, 0.2, grey.shape)
    grey = ((grey - grey.min()) / np.ptp(grey)).astype(np.float32)
    rgb = np.repeat(np.round(grey * 255).astype(np.uint8)[..., None], 3, axis=-1)
    return Micrograph(name="bands", raw=grey, grey=grey, rgb=rgb, bit_depth=32)


@pytest.fixture(scope="module")
def weight_free_clicker():
    settings = Settings().replace({"proposals.proposer": "classical", "merging.materials": 2})
    return Clicker(Engine(settings))


def test_prompts_are_checked():
    with pytest.raises(PromptError, match="foreground point or a box"):
        Prompt.from_points([(3, 4)], [0])
    with pytest.raises(PromptError, match="point labels"):
        Prompt.from_points([(3, 4)], [2])
    with pytest.raises(PromptError, match="2 points but 1"):
        Prompt(np.array([[1, 2], [3, 4]]), np.array([1]))
    with pytest.raises(PromptError, match="x0 < x1"):
        Prompt.from_points([], [], box=[10, 10, 5, 20])
    with pytest.raises(PromptError, match="finite"):
        Prompt.from_points([(np.nan, 4)], [1])
    with pytest.raises(PromptError, match="outside the 192x192 image"):
        Prompt.from_points([(500, 4)], [1]).check_inside((SIDE, SIDE))
    assert Prompt.from_points([], [], box=[0, 10, 20, 30]).anchor == (20, 10)


def test_weight_free_click_selects_the_connected_region_under_it(weight_free_clicker):
    image = three_bands()
    answer = weight_free_clicker.click(image, Prompt.from_points([(100, 20)], [1]))
    assert answer.path == "weight-free" and not answer.encoder_ran
    assert answer.mask.shape == image.shape
    assert answer.mask[:BAND].mean() > 0.95          # the top band ...
    assert not answer.mask[2 * BAND:].any()           # ... not the other band of the same material
    assert answer.mask[BAND:2 * BAND].mean() < 0.25   # ... and little of the middle lattice
    assert 0 <= answer.score <= 1


def test_semantic_click_grows_to_every_region_of_the_material(weight_free_clicker):
    image = three_bands()
    answer = weight_free_clicker.click(image, Prompt.from_points([(100, 20)], [1]), semantic=True)
    assert answer.path == "weight-free+semantic"
    assert answer.mask[:BAND].mean() > 0.95 and answer.mask[2 * BAND:].mean() > 0.95
    assert answer.mask[BAND:2 * BAND].mean() < 0.25
    assert "segmentation_s" not in answer.timings  # the segmentation of the first click was reused


def test_weight_free_box_and_background_points(weight_free_clicker):
    image = three_bands()
    box = weight_free_clicker.click(image, Prompt.from_points([], [], box=[10, BAND + 10, 120, 2 * BAND - 10]))
    rows, cols = np.nonzero(box.mask)
    assert box.mask.any() and rows.min() >= BAND and rows.max() < 2 * BAND and cols.max() < 120
    with pytest.raises(PromptError, match="cannot be split"):
        weight_free_clicker.click(image, Prompt.from_points([(100, 20), (50, 10)], [1, 0]))


@pytest.mark.slow
def test_sam_click_runs_the_encoder_once_per_image(tmp_path, monkeypatch):
    path = save_tiny_checkpoint(tmp_path)
    install_tiny_sam(monkeypatch, path)
    engine = Engine(tiny_sam_settings(tmp_path)).load()
    encoder_calls = []
    engine.proposer.model.image_encoder.register_forward_hook(lambda *args: encoder_calls.append(1))
    clicker = Clicker(engine)
    image = three_bands()
    prompt = Prompt.from_points([(100, 20), (60, 90)], [1, 0])

    first = clicker.click(image, prompt)
    second = clicker.click(image, prompt)
    assert (first.path, first.encoder_ran, second.encoder_ran) == ("sam", True, False)
    assert len(encoder_calls) == 1 and "encoder_s" not in second.timings
    # The cached embedding gives exactly what a fresh predictor gives for this prompt.
    fresh = SamPredictor(engine.proposer.model)
    fresh.set_image(image.rgb)
    masks, ious, _ = fresh.predict(point_coords=prompt.points, point_labels=prompt.labels, multimask_output=False)
    np.testing.assert_array_equal(second.mask, masks[0])
    assert second.score == pytest.approx(float(np.clip(ious[0], 0, 1)))
    # Another image runs the encoder again (the fresh predictor above ran it once too).
    clicker.click(three_bands(seed=1), prompt)
    assert len(encoder_calls) == 3
    assert image_key(image) != image_key(three_bands(seed=1))
