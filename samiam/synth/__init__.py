"""Labelled synthetic micrographs and a simulation of SAM's failure modes, for tests and benchmarks.

* :func:`generate_scene` -> :class:`Scene` (image + ground-truth material masks + defects placed);
* :func:`simulate_sam_proposals` -> SAM-like proposal masks *simulated* from the ground truth;
* :mod:`samiam.synth.dataset` writes and reads the on-disk benchmark layout.
"""

from samiam.synth.failures import FailureRates, simulate_sam_proposals
from samiam.synth.scenes import DIFFICULTIES, Scene, generate_scene

__all__ = ["DIFFICULTIES", "FailureRates", "Scene", "generate_scene", "simulate_sam_proposals"]
