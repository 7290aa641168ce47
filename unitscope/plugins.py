"""Registries that other modules fill: built-in registering functions and an entry-point group,
loaded once, on first need (never on import, so ``import unitscope.models`` stays cheap).

    from unitscope.plugins import Plugins
    PLUGINS = Plugins("unitscope.models", builtin=("unitscope.organisms.registry:register_models",))
    PLUGINS.load()      # calls each built-in function, then each entry point's, once

A third-party package registers its own models (or segmenters) with an entry point naming a
function that registers them, in its ``pyproject.toml``::

    [project.entry-points."unitscope.models"]
    mynets = "mypackage.nets:register"

``builtin`` lists this package's own registering functions as ``module:function`` strings, so
they load without an installed entry point (a source checkout, an editable install made before
they existed) and the registry module never imports them: the organisms sit above
:mod:`unitscope.models` in the package's layers (``tests/test_import_layers.py``).

``lazy_exports`` is the same idea for a package's own names (PEP 562): the package lists which of
its modules defines each name it exports, and a module (and torch with it) loads when one of its
names is first used, so importing the package, or its torch-free ``tables``, stays cheap::

    _FROM = {"ablation_curves": "curves", "unit_importance": "importance"}
    __getattr__ = lazy_exports(__name__, _FROM)
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Plugins", "file_factory", "lazy_exports"]


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that imports name ``n`` from ``package.<where[n]>`` on
    first use and keeps it in the package (later lookups never reach ``__getattr__`` again)."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__


def file_factory(path: str, name: str, prefix: str = "unitscope_user") -> Callable[..., object]:
    """The callable ``name`` of the Python file ``path`` (a user's ``file.py:factory``), the file
    loaded as module ``{prefix}_{stem}``; a missing name is a UsageError listing the file's callables."""
    import importlib.util
    from pathlib import Path

    from unitscope.errors import UsageError

    spec = importlib.util.spec_from_file_location(f"{prefix}_{Path(path).stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    factory = getattr(module, name, None)
    if not callable(factory):
        names = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise UsageError(f"{path} has no callable {name!r}; callables there: {', '.join(names) or 'none'}")
    return factory


def _resolve(spec: str) -> Callable[[], object]:
    module, _, name = spec.partition(":")
    target = importlib.import_module(module)
    return getattr(target, name) if name else (lambda: None)  # a bare module registers on import


class Plugins:
    """The registering functions of one registry: ``builtin`` (``module:function`` strings) and
    those the installed packages name in the entry-point ``group``."""

    def __init__(self, group: str, builtin: tuple[str, ...] = ()):
        self.group, self.builtin = group, builtin
        self._state = "unloaded"  # -> "loading" -> "loaded"
        self._done: set[str] = set()  # the functions already called (a retry after a failure skips them)

    @property
    def loaded(self) -> bool:
        return self._state == "loaded"

    def load(self) -> None:
        """Call every registering function once. A lookup made while they run (a plug-in that lists
        models) sees what is registered so far instead of recursing; a plug-in that fails to load
        raises an ImportError naming it, and the next call tries the ones not yet done."""
        if self._state != "unloaded":
            return
        self._state = "loading"
        try:
            for spec in self.builtin:
                if spec not in self._done:
                    _resolve(spec)()
                    self._done.add(spec)
            from importlib.metadata import entry_points  # only now: scanning installed packages costs

            for ep in entry_points(group=self.group):
                if ep.value in self.builtin or ep.value in self._done:
                    continue  # ours (also named by the installed package's metadata), or done before
                try:
                    register = ep.load()
                except Exception as exc:
                    raise ImportError(
                        f"{self.group} entry point {ep.name!r} ({ep.value}) failed to load: {exc}"
                    ) from exc
                if callable(register):
                    register()
                self._done.add(ep.value)
        except BaseException:
            self._state = "unloaded"
            raise
        self._state = "loaded"
