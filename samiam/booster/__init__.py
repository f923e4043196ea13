"""The semantic booster: geometric mask removal, then texture-based mask merging."""

from samiam.booster.merging import MergeResult, k_estimator_for, merge_masks
from samiam.booster.removal import RemovalResult, remove_masks

__all__ = ["MergeResult", "RemovalResult", "k_estimator_for", "merge_masks", "remove_masks"]
