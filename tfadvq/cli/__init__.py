"""The ``tfadvq`` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``; modules are discovered, so adding a command never
touches this file.  Command modules never import each other (``tests/test_layering.py``): what two
commands share -- flag helpers, running a recipe with its stage table -- lives here.  A
:class:`~tfadvq.errors.TfadvqError` ends the program with its message and exit code 2 instead of a
traceback: it is the user's input that is wrong, not the program.  So do the faults of the user's environment that
reach us from below -- an ``OSError`` (a path that cannot be read or written, a
full disk) and a TensorFlow ``OpError`` raised while reading their files -- each
reported with the file it names.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import pkgutil
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tfadvq.errors import ConfigError, TfadvqError, describe_os_error

if TYPE_CHECKING:
    from tfadvq.recipe import Recipe

T = TypeVar("T")


def from_flags(cls: type[T], values: dict[str, Any], where: str) -> T:
    """``cls(**values)``: a stage's own settings built from flags, its checks worded with the flags.

    A command and its recipe stage share one typed settings class (one set of
    checks); the stage's messages say ``where: field_name``, the command's user
    typed ``--field-name``, so the names are translated, nothing else.
    """
    try:
        return cls(**values)
    except ConfigError as exc:
        message = str(exc).removeprefix(f"{where}: ")
        for field in dataclasses.fields(cls):
            if "_" in field.name:  # plain words (bits, allowed) are prose as often as names
                message = re.sub(rf"\b{field.name}\b", "--" + field.name.replace("_", "-"), message)
        raise ConfigError(message) from None


def per_channel_flag(value: str) -> bool | str:
    """The argparse ``type=`` of ``--per-channel [auto]`` (``nargs="?"``, ``const=True``): the one value it takes."""
    if value != "auto":
        raise argparse.ArgumentTypeError(f"{value!r}; accepted: no value (every weight) or 'auto'")
    return value


class UsageError(TfadvqError):
    """A command line argparse refused: an unknown, missing or malformed flag (a ``nan``, a value
    out of its range, see :func:`tfadvq.config.number`)."""


class _Parser(argparse.ArgumentParser):
    """argparse whose refusals end like every other user error: ``tfadvq: error: ...``, exit 2."""

    def error(self, message: str):
        raise UsageError(f"{message.removeprefix('argument ')} (see `{self.prog} --help`)")


def renamed_flag(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    """Refuse ``old``, a flag an earlier version accepted, naming the flag that replaced it.

    Hidden from ``--help``; it takes an optional value so that ``old VALUE``
    fails on the rename, not on a stray argument.  Nothing is mapped silently.
    """

    class Renamed(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            raise UsageError(f"{old} is now {new} (renamed; see `{parser.prog} --help`)")

    parser.add_argument(old, nargs="?", action=Renamed, help=argparse.SUPPRESS)


def add_stage_range(parser: argparse.ArgumentParser) -> None:
    """``--from``/``--to``: the stage range of a recipe run (``tfadvq run`` and ``tfadvq demo``)."""
    parser.add_argument("--from", dest="from_stage", metavar="STAGE", help="re-run from this stage on")
    parser.add_argument("--to", dest="to_stage", metavar="STAGE", help="stop after this stage")


def run_and_report(recipe: Recipe | str, workdir: Path, from_stage: str | None = None,
                   to_stage: str | None = None) -> int:
    """Run ``recipe`` (a :class:`~tfadvq.recipe.Recipe` or its name/path) and print the stage table."""
    from tfadvq.recipe import Recipe, load_recipe, run_recipe
    from tfadvq.report import print_table

    parsed = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    rows = run_recipe(parsed, workdir, from_stage, to_stage,
                      on_stage=lambda name, why: print(f"== stage: {name} ({why})", flush=True))
    print_table(rows, title=f"tfadvq run {parsed.source} ({workdir})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tfadvq",
        description="Adaptive weight quantization of speaker-verification models for TFLite Micro.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except TfadvqError as exc:
        print(f"tfadvq: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"tfadvq: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        tf = sys.modules.get("tensorflow")
        if tf is None or not isinstance(exc, tf.errors.OpError):
            raise
        first = str(exc.message).strip().splitlines()[0] if exc.message else type(exc).__name__
        print(f"tfadvq: error: TensorFlow could not process an input ({first})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tfadvq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
