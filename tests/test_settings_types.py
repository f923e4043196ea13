"""Setting overrides arrive as text (environment) or JSON values (requests): each must end up with
its field's type, or be refused by name."""

import math

import numpy as np
import pytest

from samiam.errors import SettingsError
from samiam.settings import Settings


def test_text_is_read_as_the_fields_type():
    settings = Settings.from_env({"SAMIAM_MERGING_MATERIALS": "3", "SAMIAM_PROPOSALS_CHECKPOINT": "3",
                                  "SAMIAM_PROPOSALS_VERIFY_CHECKSUM": "off", "SAMIAM_REMOVAL_CHILD_INSIDE": "0.8",
                                  "SAMIAM_IMAGE_STRETCH_PERCENTILES": "1, 99", "SAMIAM_MERGING_EMBEDDER_CHECKPOINT": ""})
    assert settings.merging.materials == 3 and settings.proposals.checkpoint == "3"
    assert settings.proposals.verify_checksum is False and settings.removal.child_inside == 0.8
    assert settings.image.stretch_percentiles == (1.0, 99.0) and settings.merging.embedder_checkpoint is None


def test_json_and_numpy_values_keep_or_get_the_fields_type():
    settings = Settings().replace({"removal.child_inside": 1, "image.stretch_percentiles": [2, 98],
                                   "merging.materials": None, "merging.crop_size": np.int64(48)})
    assert settings.removal.child_inside == 1.0 and isinstance(settings.removal.child_inside, float)
    assert settings.image.stretch_percentiles == (2.0, 98.0) and settings.merging.materials is None
    assert settings.merging.crop_size == 48 and type(settings.merging.crop_size) is int


@pytest.mark.parametrize("name, value", [
    ("merging.materials", "three"), ("merging.materials", [3]), ("merging.materials", True),
    ("merging.materials", 2.5), ("merging.crop_size", {"px": 60}), ("removal.child_inside", math.nan),
    ("removal.child_inside", math.inf), ("removal.child_inside", False), ("image.stretch_percentiles", [1]),
    ("image.stretch_percentiles", [1, "x"]), ("proposals.verify_checksum", 1), ("proposals.device", ["cpu"]),
])
def test_values_of_the_wrong_type_are_refused_by_name(name, value):
    with pytest.raises(SettingsError, match=f"setting '{name}'.* is not "):
        Settings().replace({name: value})


def test_only_settings_sections_are_settings():
    for name in ("__class__.image", "replace.x", "merging.__dict__"):
        with pytest.raises(SettingsError, match="unknown setting"):
            Settings().replace({name: 1})
