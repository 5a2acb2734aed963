"""Summary tables that every CLI command ends with.

Kept dependency-free (no rich/tabulate) so the same rows can be printed,
written to JSON by benchmarks and asserted on in tests.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], title: str = "") -> str:
    """Render ``rows`` (dicts sharing keys) as an aligned plain-text table."""
    if not rows:
        return f"{title}\n(nothing)" if title else "(nothing)"
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    cells = [[_fmt(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(([title] if title else []) + [line, rule] + body)


def print_table(rows: Sequence[Mapping[str, Any]], title: str = "") -> None:
    """Print :func:`format_table` output; the CLI's closing summary."""
    print(format_table(rows, title), flush=True)


def machine_description() -> str:
    """``"<cores> cores, <CPU model>"``: the ``machine`` field of benchmark results."""
    import os
    import platform
    from pathlib import Path

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}"
