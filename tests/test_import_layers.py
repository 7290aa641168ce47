"""The package's layers: no module imports from a layer above its own, and no import cycle runs at
import time. Read from the source with ``ast`` (nothing is imported).

Every ``import`` counts, also those inside functions (a deferred import is still a dependency; it
only moves the cost to the first call). Imports under ``if TYPE_CHECKING:`` count for the layers
but not for cycles (they never run). Registries that other modules fill (models, segmenters,
report parts) name those modules as strings and load them on first need (``unitscope.plugins``):
that is how a lower layer reaches a higher one without importing it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "unitscope"

#: from the bottom up; a module may import from its own layer and the ones below
LAYERS: list[tuple[str, set[str]]] = [
    ("base", {"errors", "plugins", "faults", "edits", "runs", "stats"}),
    ("machinery", {"tally", "hooks", "layers", "catalog", "facts", "results", "efficientnet", "resnet"}),
    ("models and data", {"models", "model_loaders", "data", "world", "classify", "edited"}),
    (
        "analyses",
        {
            "dissect",
            "ablate",
            "featvis",
            "attribution",
            "organisms",
            "segment",
            "gan",
            "describe",
            "compare",
            "export",
            "bases",
            "audit",
        },
    ),
    ("presentation", {"report", "serve"}),
    ("entry points", {"config", "commands", "cli", "__main__"}),
]
#: allowed upward imports, each with its reason (none today)
EXCEPTIONS: dict[tuple[str, str], str] = {}


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in PACKAGE.rglob("*.py")}


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The unitscope modules an import statement loads (a submodule where it names one)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "unitscope"]
    base = node.module or ""
    if node.level:
        package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join(package + ([node.module] if node.module else []))
    if base.split(".")[0] != "unitscope":
        return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str) -> list[tuple[str, bool, bool]]:
    """(target, at import time, only for type checkers) for every import in ``module``."""
    out: list[tuple[str, bool, bool]] = []

    def visit(node: ast.AST, top: bool, typing_only: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.extend((t, top, typing_only) for t in _targets(module, node))
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            top = False
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.body:
                visit(child, top, True)
            for child in node.orelse:
                visit(child, top, typing_only)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, top, typing_only)

    visit(ast.parse(MODULES[module].read_text(encoding="utf-8")), True, False)
    return out


def _layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    for i, (_, names) in enumerate(LAYERS):
        if part in names:
            return i
    raise AssertionError(f"{module} is in no layer: add unitscope.{part} to LAYERS in {Path(__file__).name}")


def test_every_module_has_a_layer():
    for module in MODULES:
        if module != "unitscope":  # the package itself: its __getattr__ hands out open_run
            _layer(module)


def test_no_module_imports_from_a_higher_layer():
    upward = []
    for module in sorted(MODULES):
        if module == "unitscope":
            continue
        for target, top, _ in _imports(module):
            if target in MODULES and _layer(target) > _layer(module) and (module, target) not in EXCEPTIONS:
                upward.append(
                    f"{module} ({LAYERS[_layer(module)][0]}) imports {target} "
                    f"({LAYERS[_layer(target)][0]}){'' if top else ' in a function'}"
                )
    assert upward == []


def test_no_import_cycle_at_import_time():
    graph = {
        m: sorted({t for t, top, typing_only in _imports(m) if top and not typing_only and t in MODULES} - {m})
        for m in MODULES
    }
    cycles, state = [], {}

    def walk(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert cycles == []


@pytest.mark.parametrize(
    "module, forbidden",
    [
        ("unitscope.models", "unitscope.organisms"),  # organisms register through unitscope.plugins
        ("unitscope.segment", "unitscope.organisms"),  # likewise world_segmenter
        ("unitscope.dissect.sources", "unitscope.dissect.engine"),
        ("unitscope.dissect.distributed", "unitscope.cli"),
        ("unitscope.organisms.recipes", "unitscope.organisms.gan"),  # the nets, not the training loop
        ("unitscope.organisms.registry", "unitscope.organisms.train"),
    ],
)
def test_named_circles_stay_broken(module, forbidden):
    """The circles issue 23 named, checked one by one (also in functions)."""
    assert [t for t, _, typing_only in _imports(module) if t.startswith(forbidden) and not typing_only] == []


def test_the_check_sees_imports():
    """The walker finds module-level, function-level, relative and type-checking imports."""
    found = set(_imports("unitscope.dissect.distributed"))
    assert ("unitscope.tally", True, False) in found
    assert ("unitscope.errors", False, False) in found and ("unitscope.errors", True, False) not in found
    assert ("unitscope.dissect.engine", True, True) in found
    assert ("unitscope.commands", True, False) in _imports("unitscope.cli")
