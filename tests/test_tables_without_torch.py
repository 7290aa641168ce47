"""Every analysis' ``tables.py`` and the catalog import without torch (issue 23 item 1): a fresh
process in which importing ``torch`` raises imports them all; the same process shows the block works."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = sorted(f"unitscope.{p.parent.name}.tables" for p in (ROOT / "unitscope").glob("*/tables.py"))
PROBE = """
import importlib, json, sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"blocked: {{name}}")
        return None

sys.meta_path.insert(0, NoTorch())
out = {{}}
for name in {modules!r}:
    try:
        module = importlib.import_module(name)
        out[name] = sorted(getattr(module, "TABLES", ()))
    except ImportError as exc:
        out[name] = "error: " + str(exc)
print(json.dumps(out))
"""


def test_every_tables_module_and_the_catalog_import_without_torch():
    assert len(TABLES) >= 8 and "unitscope.ablate.tables" in TABLES
    canary = "unitscope.dissect.engine"  # needs torch: the block must stop it
    code = PROBE.format(modules=["unitscope.catalog", *TABLES, canary])
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out.pop(canary) == "error: blocked: torch"
    errors = {name: v for name, v in out.items() if isinstance(v, str)}
    assert errors == {}
    assert all(out[name] for name in TABLES)  # each declares its tables
