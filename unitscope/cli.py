"""The ``unitscope`` command line.

    unitscope models                      # registered model names
    unitscope layers efficientnet_lite0   # layer names, output shapes, channels
    unitscope classify efficientnet_lite0 cat.jpg
    unitscope <command> --help
    unitscope dissect ... --debug         # full tracebacks (also UNITSCOPE_DEBUG=1)

Each module in :mod:`unitscope.commands` adds its sub-commands through ``register(subparsers)``;
a command's handler receives the parsed arguments and returns an exit code. A
:class:`~unitscope.errors.UnitscopeError` (raised on purpose, with a message for the user) is printed
as one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
import traceback
from pathlib import Path

import unitscope.commands
from unitscope import faults
from unitscope.errors import RunError, UnitscopeError, UsageError

__all__ = ["build_parser", "main", "RunError", "UsageError"]  # the errors live in unitscope.errors


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unitscope",
        description="Explain what every unit of a vision network has learned. "
        "Add --debug anywhere for full tracebacks.",
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
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("UNITSCOPE_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        faults.load()  # a bad UNITSCOPE_FAULT fails here, before any work
        return int(args.func(args) or 0)
    except (UnitscopeError, FileNotFoundError, ValueError, KeyError) as exc:
        if debug or not _deliberate(exc):
            traceback.print_exc()
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        hint = "" if debug else " (--debug: full traceback)"
        print(f"unitscope {args.command}: error: {message}{hint}", file=sys.stderr)  # one line
        return 2
    except KeyboardInterrupt:
        print(f"unitscope {args.command}: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def _deliberate(exc: BaseException) -> bool:
    """An error unitscope raised on purpose, with a message for the user: a
    :class:`~unitscope.errors.UnitscopeError`, or (raise sites not yet moved to the error classes) a
    builtin ``ValueError``/``FileNotFoundError``/``KeyError`` raised by our own code (not deep inside
    torch or PIL) that says something. Anything else keeps its traceback."""
    if isinstance(exc, UnitscopeError):
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    ours = tb is not None and Path(tb.tb_frame.f_code.co_filename).resolve().is_relative_to(_PACKAGE)
    text = str(exc.args[0]) if exc.args else ""
    return ours and " " in text.strip()


_PACKAGE = Path(__file__).resolve().parent


if __name__ == "__main__":
    sys.exit(main())
