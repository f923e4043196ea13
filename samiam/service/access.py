"""Which Label Studio a project's image downloads and write-backs go to, and what ``/setup`` may
change about it.

Label Studio sends ``hostname`` (its own URL) and ``access_token`` (the project creator's legacy
token) to ``/setup``, without authentication unless the backend has basic auth. Whoever can reach
the backend can send the same, so:

* ``LABEL_STUDIO_URL`` set: it is where Label Studio is, always; ``/setup``'s ``hostname`` is
  ignored. ``LABEL_STUDIO_API_KEY`` set: it is the key, always. Else ``/setup``'s token is kept
  and sent to ``LABEL_STUDIO_URL`` only.
* ``LABEL_STUDIO_URL`` unset: ``/setup``'s ``hostname`` and token are kept for the project. With
  basic auth on, the caller is Label Studio (it knows the password) and may change them. Without
  basic auth, the first ``hostname`` a project registers stays: a ``/setup`` naming another
  origin (scheme, host, port) is refused (403), so nobody can re-point a project's downloads,
  and the token they carry, somewhere else. A token for the same origin may be replaced.
* ``LABEL_STUDIO_API_KEY`` without ``LABEL_STUDIO_URL`` is refused at start-up
  (:class:`ServiceConfig`): the key would go wherever ``/setup`` says.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from samiam.errors import SetupRefusedError, shown
from samiam.service.config import ServiceConfig

_PLAIN_URL = re.compile(r"[!-~]{1,2048}")
"""Printable ASCII without spaces: no backslash tricks hide in what is left for urlsplit."""
_PLAIN_TOKEN = re.compile(r"[!-~]{0,4096}")


def origin(url: Any) -> str:
    """``scheme://host:port`` of an http(s) ``url`` (lower case, explicit port); raises
    :class:`SetupRefusedError` for anything else or anything ambiguous (userinfo, backslashes,
    whitespace, non-ASCII)."""
    if not isinstance(url, str) or not _PLAIN_URL.fullmatch(url) or "\\" in url:
        raise SetupRefusedError(f"hostname {shown(url)} is not a plain http(s) URL")
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        port = None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "@" in parts.netloc or port is None:
        raise SetupRefusedError(f"hostname {shown(url)} is not a plain http(s) URL (scheme://host[:port])")
    return f"{parts.scheme.lower()}://{parts.hostname.lower()}:{port}"


def setup_record(config: ServiceConfig, registered: dict | None, hostname: Any, token: Any,
                 authenticated: bool) -> dict[str, str | None]:
    """``{"hostname", "access_token"}`` to keep for a project after a ``/setup`` sending
    ``hostname`` and ``token``, given what the project ``registered`` before (None: nothing).

    Raises :class:`SetupRefusedError` when an unauthenticated ``/setup`` would re-point the
    project to another origin, or gives a hostname or token that is not plain text.
    """
    registered = registered or {}
    if token is not None and not (isinstance(token, str) and _PLAIN_TOKEN.fullmatch(token)):
        raise SetupRefusedError("access_token must be a token: up to 4096 printable ASCII characters")
    token = None if config.label_studio_api_key else token or registered.get("access_token")
    if config.label_studio_url:
        return {"hostname": None, "access_token": token}
    if hostname is None:  # nothing to (re-)register
        return {"hostname": registered.get("hostname"), "access_token": registered.get("access_token")}
    new = origin(hostname)
    before = registered.get("hostname")
    if before and not authenticated and origin(before) != new:
        raise SetupRefusedError(
            f"this project's Label Studio is {origin(before)}; an unauthenticated /setup may not move it "
            f"to {new}. Set LABEL_STUDIO_URL, or turn on basic auth (BASIC_AUTH_USER/BASIC_AUTH_PASS) "
            f"so that Label Studio may change it")
    return {"hostname": hostname, "access_token": token}


def label_studio_for(config: ServiceConfig, registered: dict | None) -> tuple[str | None, str | None]:
    """Label Studio's URL and API key for a project that ``registered`` this at ``/setup``."""
    registered = registered or {}
    if config.label_studio_url:
        return config.label_studio_url, config.label_studio_api_key or registered.get("access_token")
    return registered.get("hostname"), registered.get("access_token")
