"""``python -m tiny_sam_worker worker --name N`` (with ``tests`` on ``PYTHONPATH``): samiam's CLI
in a process where the SAM registry builds the tiny SAM of :mod:`tiny_sam`, whose checkpoint is
``$SAMIAM_TINY_SAM_CHECKPOINT`` (set ``SAMIAM_PROPOSALS_PROPOSER=sam``,
``SAMIAM_PROPOSALS_MODEL_DIR`` to its folder and ``SAMIAM_PROPOSALS_DEVICE=cpu``)."""

import os
import sys

import pytest
from tiny_sam import install_tiny_sam

from samiam.cli import main

if __name__ == "__main__":
    install_tiny_sam(pytest.MonkeyPatch(), os.environ["SAMIAM_TINY_SAM_CHECKPOINT"])
    sys.exit(main(sys.argv[1:]))
