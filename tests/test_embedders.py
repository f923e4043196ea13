import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from skimage.feature import local_binary_pattern
from sklearn.cluster import KMeans

from samiam.booster.embedders import (
    DEFAULT_EMBEDDER,
    EMBEDDERS,
    LBP_NEIGHBOURS,
    ResNetEmbedder,
    intensity_features,
    lbp_codes,
    make_embedder,
)
from samiam.errors import CheckpointError, SettingsError
from samiam.settings import MergingSettings

WEIGHT_FREE = [name for name in EMBEDDERS if name != "resnet18"]


def lattice_crops(n, size, period, angle, rng, noise=0.05):
    """``n`` crops of a square cosine lattice at random phases, with Gaussian noise."""
    y, x = np.mgrid[:size, :size].astype(float)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = y * np.cos(angle) - x * np.sin(angle)
    phases = rng.uniform(0, 2 * np.pi, (n, 2, 1, 1))
    clean = (np.cos(2 * np.pi * u / period + phases[:, 0]) + np.cos(2 * np.pi * v / period + phases[:, 1]))
    return (0.5 + clean / 4 + rng.normal(0, noise, (n, size, size))).astype(np.float32)


@pytest.mark.parametrize("name", WEIGHT_FREE)
def test_shapes_dtype_determinism(name):
    embedder = make_embedder(MergingSettings(embedder=name))
    crops = lattice_crops(5, 20, 6, 0.0, np.random.default_rng(0))
    out = embedder.embed(crops)
    assert out.shape == (5, sum(embedder.blocks)) and out.dtype == np.float32
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, embedder.embed(crops.copy()))
    np.testing.assert_array_equal(out[2:3], embedder.embed(crops[2:3]))
    assert embedder.name == name
    assert embedder.embed(np.zeros((0, 20, 20), np.float32)).shape == (0, sum(embedder.blocks))


@pytest.mark.parametrize("name", WEIGHT_FREE)
def test_two_lattices_separate(name):
    rng = np.random.default_rng(1)
    crops = np.concatenate([lattice_crops(20, 30, 5, 0.0, rng), lattice_crops(20, 30, 9, 0.4, rng) + 0.1])
    truth = np.repeat([0, 1], 20)
    features = make_embedder(MergingSettings(embedder=name)).embed(crops)
    features = (features - features.mean(0)) / np.where(features.std(0) > 0, features.std(0), 1)
    labels = KMeans(2, n_init=10, random_state=0).fit_predict(features)
    confusion = np.zeros((2, 2), int)
    np.add.at(confusion, (truth, labels), 1)
    rows, cols = linear_sum_assignment(-confusion)
    assert confusion[rows, cols].sum() == len(truth)


def test_intensity_block_is_brightness_sensitive_lbp_and_fft_are_not():
    crops = lattice_crops(3, 24, 6, 0.2, np.random.default_rng(2))
    for name, invariant in (("intensity", False), ("lbp", True), ("fft", True)):
        embedder = make_embedder(MergingSettings(embedder=name))
        first = embedder.embed(crops)[:, :embedder.blocks[0]]
        shifted = embedder.embed(crops + 0.2)[:, :embedder.blocks[0]]
        assert np.allclose(first, shifted, atol=1e-4) == invariant, name


@pytest.mark.parametrize("period", [4.0, 8.0])
def test_intensity_mean_and_std_do_not_follow_the_lattice_phase(period):
    # one lattice in 30 px crops at 1x (7.5 fringes) and at 2x magnification (3.75 fringes): a plain
    # crop mean moves by 0.7 % and 2.5 % of itself with where the fringes fall, the windowed one by 0.02-0.1 %
    crops = lattice_crops(200, 30, period, 0.1, np.random.default_rng(0), noise=0.0)
    mean, std = intensity_features(crops)[:, :2].T
    assert mean.std() < 0.0025 * mean.mean()
    assert std.std() < 0.0025 * std.mean()
    assert mean.mean() == pytest.approx(0.5, rel=0.0025)


@pytest.mark.filterwarnings("ignore:Applying `local_binary_pattern` to floating-point")
def test_lbp_codes_equal_skimage():
    crops = np.random.default_rng(3).random((3, 20, 20))
    for radius in (1.0, 2.5, 3.0):
        margin = int(np.ceil(radius)) + 1
        expected = np.stack([local_binary_pattern(c, LBP_NEIGHBOURS, radius, method="uniform")
                             for c in crops])[:, margin:-margin, margin:-margin]
        np.testing.assert_array_equal(lbp_codes(crops, radius), expected)


def test_fft_block_ignores_rotation_but_sees_period():
    rng = np.random.default_rng(4)
    fft = make_embedder(MergingSettings(embedder="fft"))
    width = fft.blocks[0]
    base = fft.embed(lattice_crops(8, 48, 8, 0.0, rng))[:, :width].mean(0)
    rotated = fft.embed(lattice_crops(8, 48, 8, 0.5, rng))[:, :width].mean(0)
    other = fft.embed(lattice_crops(8, 48, 5, 0.0, rng))[:, :width].mean(0)
    assert np.linalg.norm(base - rotated) < np.linalg.norm(base - other) / 2


def test_default_and_unknown_names():
    assert make_embedder(MergingSettings()).name == DEFAULT_EMBEDDER
    with pytest.raises(SettingsError, match="merging.embedder"):
        make_embedder(MergingSettings(embedder="nope"))


@pytest.fixture(scope="module")
def resnet_checkpoint(tmp_path_factory):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None, num_classes=47).state_dict(), path)
    return str(path)


def test_resnet18_from_checkpoint(resnet_checkpoint):
    embedder = make_embedder(MergingSettings(embedder="resnet18", embedder_checkpoint=resnet_checkpoint))
    crops = lattice_crops(3, 16, 5, 0.0, np.random.default_rng(5))
    out = embedder.embed(crops)
    assert out.shape == (3, 512) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out, embedder.embed(crops), rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[0], out[1])


def test_resnet18_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="merging.embedder_checkpoint"):
        ResNetEmbedder(None)
    with pytest.raises(CheckpointError, match="merging.embedder_checkpoint"):
        ResNetEmbedder(str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="merging.embedder_checkpoint"):
        ResNetEmbedder(str(bad))
