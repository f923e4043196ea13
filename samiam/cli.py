"""``samiam`` command line: one sub-command per module in :mod:`samiam.commands`.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int``. Command modules import heavy libraries inside ``func`` so that
``samiam --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from samiam.errors import SamiamError

COMMANDS = ("segment", "import_", "synth", "evaluate", "weights", "serve", "worker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samiam", description=__doc__.splitlines()[0])
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
