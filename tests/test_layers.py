"""The core never imports a method: bench/ knows baselines/ and proposed/ only through entry points, as it
knows an outside plugin."""
from __future__ import annotations

import ast
import subprocess
import sys

from helpers import ROOT

METHOD_PACKAGES = ("baselines", "proposed")


def _imports(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            yield str(node.args[0].value)


def test_no_core_module_imports_a_method_package():
    offenders = [f"{p.relative_to(ROOT)} imports {name}" for p in sorted((ROOT / "bench").rglob("*.py"))
                 for name in _imports(p) if name.split(".")[0] in METHOD_PACKAGES]
    assert not offenders, "\n".join(offenders)


def test_importing_every_core_module_loads_no_method_module():
    code = (
        "import importlib, pkgutil, sys, bench\n"
        "for m in pkgutil.walk_packages(bench.__path__, 'bench.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {METHOD_PACKAGES!r})\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
