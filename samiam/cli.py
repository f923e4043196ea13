"""``samiam`` command line: one sub-command per module in :mod:`samiam.commands`.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int``. Command modules import heavy libraries inside ``func`` so that
``samiam --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys

from samiam.errors import SamiamError

COMMANDS = ("segment", "import_", "synth", "evaluate", "weights", "serve", "worker", "prototypes")

DESCRIPTION = ("Zero-shot material segmentation of electron micrographs (SAM + semantic booster), "
               "from the command line or as a Label Studio ML backend.")
_RST_ROLE = re.compile(r":[a-z]+:`(~?)([^`]+)`")
_RST_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(text: str) -> str:
    """Help text without the reStructuredText markup of docstrings: ````literal```` and
    ``:role:`target``` become `literal` and `target` (the quotes help texts use), with
    ``:role:`~a.b``` shortened to `b` as Sphinx shows it."""
    text = _RST_ROLE.sub(lambda m: f"`{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}`", text)
    return _RST_LITERAL.sub(r"`\1`", text)


class PlainHelpFormatter(argparse.HelpFormatter):
    """Formats descriptions and argument help through :func:`plain_text`, since several come
    from module docstrings."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_text(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return plain_text(super()._expand_help(action))


class Parser(argparse.ArgumentParser):
    """An ArgumentParser with :class:`PlainHelpFormatter`; its sub-command parsers are Parsers too."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", PlainHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="samiam", description=DESCRIPTION)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"samiam.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except SamiamError as error:
        print(f"samiam {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
