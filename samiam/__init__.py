"""samiam: zero-shot material segmentation of atomic-resolution electron micrographs.

>>> import samiam
>>> seg = samiam.segment("micrograph.tif")            # doctest: +SKIP
>>> seg.label_map().shape                              # doctest: +SKIP
(1024, 1024)
"""

from samiam.errors import SamiamError
from samiam.settings import Settings

__all__ = ["Engine", "SamiamError", "Segmentation", "Settings", "boost", "segment"]


def __getattr__(name):
    # The pipeline pulls in torch and OpenCV; import it only when it is used.
    if name in ("segment", "boost", "Segmentation", "Engine"):
        from samiam import pipeline
        return getattr(pipeline, name)
    raise AttributeError(name)
