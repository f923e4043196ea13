"""WSGI entry point: ``gunicorn _wsgi:app`` (the settings come from the environment)."""

import logging
import os

from samiam.service import ServiceConfig, create_app

logging.basicConfig(level=os.environ.get("SAMIAM_LOG_LEVEL", "INFO"),
                    format="%(asctime)s %(levelname)s %(name)s: %(message)s")

app = create_app(ServiceConfig.from_env())
