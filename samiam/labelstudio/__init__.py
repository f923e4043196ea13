"""Label Studio adapter: labeling config, checked task requests, brush results (RLE), image
fetching and write-back. One task -> one prediction: :class:`TaskRequest` (built by
:func:`read_predict`) and :func:`samiam.labelstudio.model.predict_task`.

Knows the engine's outputs and label-studio-sdk; never Flask, Redis or RQ.
"""

from samiam.labelstudio.config import BrushConfig, parse_label_config
from samiam.labelstudio.request import TaskRequest, read_predict
from samiam.labelstudio.results import mask_to_rle, materials_from_results, predictions_from_segmentation

__all__ = ["BrushConfig", "TaskRequest", "mask_to_rle", "materials_from_results", "parse_label_config",
           "predictions_from_segmentation", "read_predict"]
