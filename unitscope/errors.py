"""The errors unitscope raises on purpose, with a message for the user.

    from unitscope.errors import UnitscopeError, UsageError, RunError
    raise UsageError("--data runs/x is not a Broden folder: it has no index.csv")
    try: ...
    except UnitscopeError as exc:   # any deliberate error: print str(exc) as one line
        ...

Every class here and every deliberate error elsewhere in the package (``LayerNotFoundError``,
``TallyKeyError``, ``ImageReadError``, ``MissingSources``, ...) derives from
:class:`UnitscopeError`; the command line prints those as one line and exits with code 2 (the
traceback only with ``--debug``). They keep a builtin base too (``UsageError`` is a
``ValueError``, ``LayerNotFoundError`` too, ``MissingSources`` a ``FileNotFoundError``), so
``except ValueError`` around older call sites still catches them. ``RunError`` has no builtin
base: nothing that catches ``RuntimeError`` (torch's errors) should swallow it.

This module imports nothing from unitscope (it is the bottom layer of the package).
"""

from __future__ import annotations

__all__ = ["UnitscopeError", "UsageError", "RunError"]


class UnitscopeError(Exception):
    """Base of every error unitscope raises on purpose; its message is meant for the user."""


class UsageError(UnitscopeError, ValueError):
    """Bad input the user can fix (a name, a path, an option): one clear line, exit code 2."""


class RunError(UnitscopeError):
    """A run that cannot go on (e.g. a torchrun process died): one clear line, exit code 2."""
