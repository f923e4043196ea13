"""The Label Studio ML backend service: Flask web tier, RQ jobs and workers, embedded mode.

``create_app(ServiceConfig.from_env())`` is the WSGI app (see ``_wsgi.py``); ``samiam worker``
runs :func:`samiam.service.worker.run_worker`. Importing this package never imports torch.
"""

from samiam.service.app import create_app
from samiam.service.config import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]
