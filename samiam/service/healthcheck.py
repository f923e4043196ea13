"""``python -m samiam.service.healthcheck``: exit 0 when the local web tier answers ``/health``.

Docker's HEALTHCHECK runs it (the CUDA image has no curl); it sends the basic-auth credentials
of the environment when they are set. ``SAMIAM_HEALTH_URL`` overrides the URL.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import urllib.request

DEFAULT_URL = "http://127.0.0.1:9090/health"
TIMEOUT_S = 3.0


def main() -> int:
    request = urllib.request.Request(os.environ.get("SAMIAM_HEALTH_URL", DEFAULT_URL))
    user, password = os.environ.get("BASIC_AUTH_USER"), os.environ.get("BASIC_AUTH_PASS")
    if user and password:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            body = json.load(response)
    except (OSError, ValueError) as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    print(json.dumps(body))
    return 0 if body.get("status") == "UP" else 1


if __name__ == "__main__":
    sys.exit(main())
