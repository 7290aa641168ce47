"""The ``unitscope`` command line.

    unitscope models                      # registered model names
    unitscope layers efficientnet_lite0   # layer names, output shapes, channels
    unitscope classify efficientnet_lite0 cat.jpg
    unitscope <command> --help

Each module in :mod:`unitscope.commands` adds its sub-commands through ``register(subparsers)``;
a command's handler receives the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

import unitscope.commands


class UsageError(Exception):
    """Bad input from the user: printed as one clear line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unitscope",
        description="Explain what every unit of a vision network has learned.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(unitscope.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"unitscope.commands.{info.name}")
        module.register(sub)
    return parser


def _log_notes() -> None:
    """Notes on the ``unitscope`` logger (e.g. which library a bare model name resolved to) go to
    stderr as ``unitscope: ...`` lines."""
    logger = logging.getLogger("unitscope")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("unitscope: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    _log_notes()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, FileNotFoundError, ValueError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"unitscope {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unitscope {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
