"""Label Studio adapter: labeling config, brush results (RLE), image fetching and write-back.

Knows the engine's outputs and label-studio-sdk; never Flask, Redis or RQ.
"""

from samiam.labelstudio.config import BrushConfig, parse_label_config
from samiam.labelstudio.results import mask_to_rle, materials_from_results, predictions_from_segmentation

__all__ = ["BrushConfig", "mask_to_rle", "materials_from_results", "parse_label_config",
           "predictions_from_segmentation"]
