"""Layering you can check: every import counts, deferred (function-level) ones included.

The direction rule (docs/architecture.md, "Layers"): a module imports only from its own layer or
the layers below it, never upward, and no two modules import each other, however lazily; and one
command module (``tfadvq/cli/<command>.py``) never imports another.

    cli  ->  stages (recipe engine + stage types)  ->  converters  ->  library  ->  core

``core`` loads no TensorFlow (tested below); ``library`` is the data path and the quantizers;
``converters`` turns the library's quantized models into ``.tflite`` files; the recipe stages
compose both; the command line parses arguments into a stage or a library call.  Library
modules import the module that owns a name, not the public facade ``tfadvq`` (that is for
users; importing it inside the package hides which module a name really comes from).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tfadvq", "converters")

# module-name prefixes by layer, lowest first; the longest matching prefix decides
LAYERS: dict[str, int] = {
    # core: no TensorFlow
    "tfadvq.errors": 0, "tfadvq.config": 0, "tfadvq.fbank_config": 0, "tfadvq.train_config": 0,
    "tfadvq.windows": 0, "tfadvq.metrics": 0, "tfadvq.rundir": 0, "tfadvq.report": 0,
    "tfadvq.voxceleb": 0, "tfadvq.compat": 0, "tfadvq.quant.cost": 0,
    "tfadvq.audio_limits": 0, "tfadvq.quant.bits": 0, "tfadvq.frontend": 0,
    # library: everything else in tfadvq not named below
    "tfadvq": 1,
    "converters": 2,
    "tfadvq.stages": 3, "tfadvq.recipe": 3,
    "tfadvq.cli": 4,
}
LAYER_NAMES = ("core", "library", "converters", "stages", "cli")
COMMANDS = "tfadvq.cli."  # prefix of the command modules (the package tfadvq.cli itself is not one)
FACADES = {"tfadvq"}  # the public API package: users import it, the package's own modules do not


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def _imports(path: Path, modules: set[str], root: Path = ROOT) -> dict[str, int]:
    """``{project module: line}`` of every import in the file, at any depth (deferred ones too)."""
    found: dict[str, int] = {}
    own = _module_name(path, root)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] or [base]
            if not any(n in modules for n in names):
                names.append(base)
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.setdefault(name, node.lineno)
    return found


def _graph() -> tuple[dict[str, Path], dict[str, dict[str, int]]]:
    files = {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    return files, {m: {d: line for d, line in _imports(p, set(files)).items() if d != m} for m, p in files.items()}


def test_imports_point_down_the_layers():
    files, graph = _graph()
    upward = [f"{files[m].relative_to(ROOT)}:{line}: {m} ({LAYER_NAMES[_layer(m)]}) imports "
              f"{d} ({LAYER_NAMES[_layer(d)]})"
              for m, deps in graph.items() for d, line in deps.items() if _layer(d) > _layer(m)]
    assert not upward, "imports against the layer direction:\n" + "\n".join(sorted(upward))


def _command_imports(graph: dict[str, dict[str, int]]) -> list[tuple[str, str, int]]:
    """``(command, other command, line)``: a ``tfadvq.cli.<command>`` module importing another one."""
    return [(m, d, line) for m, deps in graph.items() if m.startswith(COMMANDS)
            for d, line in deps.items() if d.startswith(COMMANDS)]


def test_commands_do_not_import_each_other():
    """A command module parses its flags and calls library or stage code; what two commands share lives
    in the library or in the ``tfadvq.cli`` package itself (``main`` and the flag helpers), never in a
    third command module one imports from another (deferred imports count)."""
    files, graph = _graph()
    found = [f"{files[m].relative_to(ROOT)}:{line}: {m} imports the command module {d}"
             for m, d, line in _command_imports(graph)]
    assert not found, "\n".join(sorted(found))


def test_package_modules_do_not_import_the_public_facade():
    files, graph = _graph()
    facade = [f"{files[m].relative_to(ROOT)}:{line}: {m} imports the facade {d}; import the owning module"
              for m, deps in graph.items() for d, line in deps.items() if d in FACADES]
    assert not facade, "\n".join(sorted(facade))


def test_no_import_cycles_even_deferred():
    files, graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles (deferred imports count):\n" + "\n".join(cycles)


def test_the_checker_sees_deferred_and_relative_imports(tmp_path):
    """The rule would be toothless if a function-level or relative import slipped past the parser."""
    module = tmp_path / "tfadvq" / "quant" / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text("def f():\n    from tfadvq.cli import main\n    from . import api\n    import converters.tflm\n")
    found = _imports(module, {"tfadvq.cli", "tfadvq.quant.api", "converters.tflm", "tfadvq.quant"}, tmp_path)
    assert set(found) == {"tfadvq.cli", "tfadvq.quant.api", "converters.tflm"}
    assert _layer("tfadvq.cli") > _layer("tfadvq.quant.x") < _layer("converters.tflm")
    command = tmp_path / "tfadvq" / "cli" / "a.py"
    command.parent.mkdir()
    command.write_text("from tfadvq.cli import main\ndef run():\n    from tfadvq.cli.b import helper\n")
    graph = {"tfadvq.cli.a": _imports(command, {"tfadvq.cli", "tfadvq.cli.a", "tfadvq.cli.b"}, tmp_path)}
    assert [(m, d) for m, d, _ in _command_imports(graph)] == [("tfadvq.cli.a", "tfadvq.cli.b")]


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
