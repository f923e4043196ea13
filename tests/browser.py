"""Headless Chromium (Debian's chromium + chromedriver) for the browser checks, and the rule for
prerequisites of end-to-end tests: skipped locally, a failure under CI (SAMIAM_REQUIRE_E2E=1)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
"""Screenshots kept for people to look at (gitignored)."""


def require_e2e(condition: bool, what: str) -> None:
    if not condition:
        if os.environ.get("SAMIAM_REQUIRE_E2E"):
            pytest.fail(f"end-to-end prerequisite missing: {what}")
        pytest.skip(f"end-to-end prerequisite missing: {what}")


def headless_chromium(window_size: str = "1400,1000", profile_dir: Path | None = None):
    """A selenium Chrome driver on headless Chromium, with the flags a closed network needs.
    The caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    require_e2e(chromium is not None and driver_path is not None, "chromium and chromedriver")
    options = Options()
    options.binary_location = chromium
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--force-device-scale-factor=1", f"--window-size={window_size}"]
    if profile_dir is not None:
        flags.append(f"--user-data-dir={profile_dir}")
    for flag in flags:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver_path), options=options)
