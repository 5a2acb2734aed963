"""Execute notebooks top to bottom, with parameters injected after the ``parameters`` cell.

``make notebooks`` runs every notebook on its default (tiny) settings into
``build/notebooks/`` with outputs, for reading; ``tests/test_notebooks.py``
runs them the same way with ``WORKDIR`` (and the data) pointed at its fixtures.
Parameters are injected the way papermill does it -- a cell tagged
``injected-parameters`` right after the one tagged ``parameters`` -- so a
notebook needs nothing but plain assignments in its parameter cell.
The kernel runs in the notebook's own folder, as Jupyter runs it.

    .venv/bin/python notebooks/execute.py --out build/notebooks notebooks/*.ipynb
    .venv/bin/python notebooks/execute.py --out /tmp/nb notebooks/01_quickstart.ipynb -p FULL=True
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

from tfadvq.errors import ConfigError

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def parameter_cell(notebook: nbformat.NotebookNode) -> int:
    """Index of the one code cell tagged ``parameters``; a notebook without exactly one is refused."""
    tagged = [i for i, cell in enumerate(notebook.cells)
              if cell.cell_type == "code" and PARAMETERS_TAG in cell.metadata.get("tags", [])]
    if len(tagged) != 1:
        raise ConfigError(f"{len(tagged)} code cells tagged {PARAMETERS_TAG!r}; a notebook needs exactly one")
    return tagged[0]


def inject(notebook: nbformat.NotebookNode, parameters: Mapping[str, Any]) -> nbformat.NotebookNode:
    """``notebook`` with a cell assigning ``parameters`` (as Python literals) after its parameter cell."""
    if parameters:
        source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
        cell = nbformat.v4.new_code_cell(f"# Injected parameters\n{source}")
        cell.metadata["tags"] = [INJECTED_TAG]
        notebook.cells.insert(parameter_cell(notebook) + 1, cell)
    return notebook


def execute(path: str | Path, out: str | Path | None = None, parameters: Mapping[str, Any] | None = None,
            timeout: int = 600) -> nbformat.NotebookNode:
    """Run the notebook at ``path`` in its own folder; write it with its outputs to ``out`` (also on error).

    ``timeout`` bounds each cell (seconds).  A failing cell raises
    :class:`nbclient.exceptions.CellExecutionError` with the cell's traceback.
    """
    path = Path(path).resolve()
    notebook = inject(nbformat.read(path, as_version=4), parameters or {})
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    finally:
        if out is not None:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, out)
    return notebook


def _parameter(text: str) -> tuple[str, Any]:
    name, _, value = text.partition("=")
    try:
        if not name.isidentifier():
            raise ValueError(name)
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        raise argparse.ArgumentTypeError(f"-p {text!r}: expected NAME=PYTHON_LITERAL, e.g. FULL=True or "
                                         "WORKDIR=\"'runs/x'\"") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True, help="folder for the executed notebooks")
    parser.add_argument("-p", dest="parameters", type=_parameter, action="append", default=[],
                        help="NAME=VALUE injected after the parameter cell (a Python literal)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    missing = [str(path) for path in args.notebooks if not path.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    for path in args.notebooks:
        start = time.perf_counter()
        execute(path, args.out / path.name, dict(args.parameters), args.timeout)
        print(f"{path} -> {args.out / path.name} ({time.perf_counter() - start:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
