"""Settings of a benchmark run: samiam's defaults, never ``SAMIAM_*`` environment variables (a
published number must not depend on a stray one), changed only by explicit ``--set
section.field=value`` options, and printed where they differ from the defaults."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from samiam.errors import SettingsError
from samiam.settings import Settings


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """``--set section.field=value`` (repeatable) on ``parser``; read it with :func:`overrides`."""
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="change one setting from samiam's default (repeatable); SAMIAM_* "
                             "environment variables are ignored")


def overrides(items: Sequence[str], parser: argparse.ArgumentParser) -> dict[str, str]:
    """``["merging.materials=3", ...]`` -> ``{"merging.materials": "3"}``; checked against the
    settings now, so that a misspelt name stops the run before any work (``parser.error``)."""
    pairs = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            parser.error(f"--set wants section.field=value; got {item!r}")
        pairs[name.strip()] = value
    try:
        Settings().replace(pairs)
    except SettingsError as error:
        parser.error(str(error))
    return pairs


def bench_settings(changes: Mapping[str, Any]) -> Settings:
    """samiam's default settings with ``changes`` (dotted names) applied; the environment is not read."""
    return Settings().replace(changes)


def differences(settings: Settings) -> dict[str, Any]:
    """``{"section.field": value}`` for every setting of ``settings`` that differs from the defaults."""
    defaults = Settings().to_dict()
    return {f"{section}.{name}": value for section, fields in settings.to_dict().items()
            for name, value in fields.items() if defaults[section][name] != value}


def describe(settings: Settings) -> str:
    """One line naming the settings that differ from samiam's defaults (printed by each bench)."""
    changed = differences(settings)
    if not changed:
        return "settings: samiam's defaults (SAMIAM_* environment variables ignored)"
    return ("settings: samiam's defaults (SAMIAM_* environment variables ignored) except "
            + ", ".join(f"{name}={value!r}" for name, value in changed.items()))
