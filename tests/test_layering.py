"""Layering: no import cycles between modules, and the config/metrics layer loads without TensorFlow."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tfadvq", "converters")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path, modules: set[str]) -> set[str]:
    """Project modules imported at module level (imports inside functions are deferred by design)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def test_no_import_cycles():
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    graph = {m: _top_level_imports(p, set(files)) - {m} for m, p in files.items()}
    # a package's __init__ importing its submodules is not a cycle with them
    graph = {m: {d for d in deps if not (m.startswith(d + ".") and files[d].name == "__init__.py")}
             for m, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_config_and_metrics_modules_do_not_load_tensorflow_or_matplotlib():
    code = ("import sys\n"
            "import tfadvq, tfadvq.metrics, tfadvq.config, tfadvq.train_config, tfadvq.fbank_config\n"
            "import tfadvq.windows, tfadvq.recipe, tfadvq.rundir, tfadvq.quant.cost\n"
            "import tfadvq.frontend, tfadvq.audio_limits, tfadvq.quant.bits\n"
            "print(sorted(m for m in ('tensorflow', 'tf_keras', 'matplotlib') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_plotting_does_not_choose_a_global_backend():
    code = ("import matplotlib\n"
            "before = matplotlib.get_backend()\n"
            "import tfadvq.plots\n"
            "assert matplotlib.rcParams['backend'] == before or "
            "matplotlib.rcParams._get_backend_or_none() is None, matplotlib.get_backend()\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"MPLBACKEND": "svg", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
