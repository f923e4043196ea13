"""Label Studio ML-backend entry point: the model class, where Label Studio's backend layout puts it.

The implementation lives in :mod:`samiam.labelstudio.model` so that the service imports it from the
package (imports point downwards) and runs from any working directory.
"""

from samiam.labelstudio.model import SamiamModel

__all__ = ["SamiamModel"]
