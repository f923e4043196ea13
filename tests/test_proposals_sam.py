"""SamProposer through the real registry path, on tiny randomly initialised SAM checkpoints."""

from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np
import pytest
import torch
from segment_anything import sam_model_registry
from segment_anything.build_sam import _build_sam
from tiny_sam import TINY_SIZES, install_tiny_sam, save_tiny_checkpoint

from samiam.errors import CheckpointError, SettingsError
from samiam.io import Micrograph
from samiam.proposals import ClassicalProposer, SamProposer, checkpoints, make_proposer
from samiam.proposals.sam import resolve_device
from samiam.settings import ProposalSettings

SIDE = 64


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """Tiny SAM checkpoints from seeds 0 and 1, each in its own model dir: {seed: path}."""
    return {seed: save_tiny_checkpoint(tmp_path_factory.mktemp(f"seed{seed}"), seed=seed) for seed in (0, 1)}


def tiny_settings(path, **overrides) -> ProposalSettings:
    """Settings that make a randomly initialised SAM keep its masks, on a small, fast grid."""
    return ProposalSettings(**{
        "proposer": "sam", "model_type": "vit_b", "model_dir": str(path.parent), "device": "cpu",
        "points_per_side": 4, "crop_n_layers": 0, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
        **overrides})


def micrograph(seed: int = 0) -> Micrograph:
    grey = np.random.default_rng(seed).random((SIDE, SIDE), dtype=np.float32)
    rgb = np.repeat(np.round(grey * 255).astype(np.uint8)[..., None], 3, axis=-1)
    return Micrograph(name="noise", raw=grey, grey=grey, rgb=rgb, bit_depth=32)


@pytest.mark.slow
def test_masks_come_from_the_checkpoint(tiny_checkpoints, monkeypatch):
    image = micrograph()
    results = {}
    for seed, path in tiny_checkpoints.items():
        install_tiny_sam(monkeypatch, path)
        proposer = SamProposer(tiny_settings(path))
        assert proposer.name == "sam-vit_b"
        assert proposer.checkpoint == path
        assert checkpoints.is_verified(path, "vit_b")  # the real SHA-256 check ran on it
        results[seed] = proposer.propose(image)
    for proposals in results.values():
        n = len(proposals.masks)
        assert n > 0
        assert proposals.masks.shape == (n, SIDE, SIDE) and proposals.masks.dtype == bool
        assert proposals.scores.shape == (n,) and proposals.scores.dtype == np.float32
        assert ((proposals.scores >= 0) & (proposals.scores <= 1)).all()
        assert proposals.masks.any(axis=(1, 2)).all()
    a, b = results[0], results[1]
    assert a.masks.shape != b.masks.shape or not np.array_equal(a.masks, b.masks) \
        or not np.allclose(a.scores, b.scores)


@pytest.mark.parametrize("crop_n_layers", [0, 1])
def test_no_surviving_mask_gives_empty_arrays_of_the_image_shape(tiny_checkpoints, monkeypatch, crop_n_layers):
    path = tiny_checkpoints[0]
    install_tiny_sam(monkeypatch, path)
    # Stability scores are intersection / union <= 1, so a threshold above 1 keeps nothing.
    # With crop layers on, upstream SamAutomaticMaskGenerator raised IndexError here.
    proposer = SamProposer(tiny_settings(path, points_per_side=2, stability_score_thresh=1.01,
                                         crop_n_layers=crop_n_layers))
    proposals = proposer.propose(micrograph())
    assert proposals.masks.shape == (0, SIDE, SIDE) and proposals.masks.dtype == bool
    assert proposals.scores.shape == (0,)


def test_a_crop_layer_without_prompts_is_a_settings_error(tiny_checkpoints, monkeypatch):
    path = tiny_checkpoints[0]
    install_tiny_sam(monkeypatch, path)
    with pytest.raises(SettingsError, match="points_per_side"):
        SamProposer(tiny_settings(path, points_per_side=3, crop_n_layers=2, crop_n_points_downscale_factor=2))


def test_missing_checkpoint_names_the_download_command(tmp_path):
    settings = ProposalSettings(proposer="sam", model_type="vit_l", model_dir=str(tmp_path))
    with pytest.raises(CheckpointError, match=f"samiam weights download vit_l --model-dir {tmp_path}"):
        make_proposer(settings)


def test_wrong_hash_is_refused_before_loading(tiny_checkpoints, monkeypatch):
    path = tiny_checkpoints[0]
    install_tiny_sam(monkeypatch, path)
    official = dataclasses.replace(checkpoints.OFFICIAL_CHECKPOINTS["vit_b"], sha256="ab" * 32)
    monkeypatch.setitem(checkpoints.OFFICIAL_CHECKPOINTS, "vit_b", official)
    with pytest.raises(CheckpointError, match="ab" * 32):
        SamProposer(tiny_settings(path))


@pytest.mark.parametrize("content", ["garbage", "truncated"])
def test_unreadable_checkpoint_is_a_checkpoint_error(tiny_checkpoints, tmp_path, monkeypatch, content):
    good = tiny_checkpoints[0]
    install_tiny_sam(monkeypatch, good)
    path = tmp_path / good.name
    data = good.read_bytes()
    path.write_bytes(b"\x00\x01 this is not a checkpoint" * 100 if content == "garbage" else data[:len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read .* as a PyTorch SAM checkpoint"):
        SamProposer(tiny_settings(path, verify_checksum=False))


def test_wrong_model_type_is_a_checkpoint_error(tiny_checkpoints, monkeypatch):
    path = tiny_checkpoints[0]
    install_tiny_sam(monkeypatch, path)
    wider = functools.partial(_build_sam, **{**TINY_SIZES, "encoder_embed_dim": 48})
    monkeypatch.setitem(sam_model_registry, "vit_b", wider)
    with pytest.raises(CheckpointError, match="does not fit SAM model type 'vit_b'"):
        SamProposer(tiny_settings(path))


def test_device_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(SettingsError, match="no CUDA"):
        resolve_device("cuda:0")
    with pytest.raises(SettingsError, match="not a torch device"):
        resolve_device("gpu please")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda:1") == "cuda:1"


def test_auto_uses_sam_when_the_checkpoint_is_there(tiny_checkpoints, monkeypatch):
    path = tiny_checkpoints[0]
    install_tiny_sam(monkeypatch, path)
    proposer = make_proposer(tiny_settings(path, proposer="auto"))
    assert isinstance(proposer, SamProposer)


def test_auto_falls_back_to_classical_loudly(tmp_path, caplog):
    settings = ProposalSettings(proposer="auto", model_type="vit_h", model_dir=str(tmp_path))
    with caplog.at_level(logging.WARNING):
        proposer = make_proposer(settings)
    assert isinstance(proposer, ClassicalProposer) and proposer.name == "classical"
    assert str(tmp_path / "sam_vit_h_4b8939.pth") in caplog.text
    assert f"samiam weights download vit_h --model-dir {tmp_path}" in caplog.text
    assert "weaker" in caplog.text


def test_unknown_proposer_is_a_settings_error():
    with pytest.raises(SettingsError, match="'sam', 'classical' or 'auto'"):
        make_proposer(ProposalSettings(proposer="sam2"))
