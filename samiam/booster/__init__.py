"""The semantic booster: geometric mask removal, then texture-based mask merging."""

from samiam.booster.merging import MergeResult, merge_masks
from samiam.booster.removal import RemovalResult, remove_masks

__all__ = ["MergeResult", "RemovalResult", "merge_masks", "remove_masks"]
