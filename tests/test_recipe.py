"""Recipes: parsing and type checks, a stage type registered outside the package, reuse by hash,
re-running what depends on a change, --from/--to, records, and a user's own recipe."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

import tfadvq

from tfadvq.errors import ConfigError
from tfadvq.recipe import (
    StageBase,
    StageContext,
    StageResult,
    load_recipe,
    parse_recipe,
    register_stage,
    run_recipe,
)

CALLS: list[str] = []


@register_stage("test_write")
@dataclasses.dataclass
class WriteStage(StageBase):
    """A stage type defined in a test module: writes ``text`` (and what its input stage wrote)."""

    text: str = "a"
    after: str | None = None
    times: int = 1

    def uses(self) -> dict[str, str]:
        return {"after": self.after} if self.after else {}

    def run(self, ctx: StageContext) -> StageResult:
        CALLS.append(ctx.name)
        before = ctx.output(self.after, "file").read_text() if self.after else ""
        path = ctx.out / "out.txt"
        path.write_text(before + self.text * self.times)
        return StageResult(outputs={"file": str(path)}, metrics={"length": len(path.read_text())},
                           summary=path.read_text())


def _recipe(**changes):
    stages = [{"type": "test_write", "name": "one", "text": "x"},
              {"type": "test_write", "name": "two", "text": "y", "after": "one"},
              {"type": "test_write", "name": "side", "text": "z"}]
    for name, fields in changes.items():
        next(s for s in stages if s["name"] == name).update(fields)
    return parse_recipe({"stages": stages}, "test")


def test_stages_run_in_order_record_themselves_and_are_reused(tmp_path):
    CALLS.clear()
    rows = run_recipe(_recipe(), tmp_path)
    assert CALLS == ["one", "two", "side"] and [r["reused"] for r in rows] == [False] * 3
    assert (tmp_path / "two" / "out.txt").read_text() == "xy"
    record = json.loads((tmp_path / "two" / "record.json").read_text())
    assert record["type"] == "test_write" and record["inputs"] == {"after": "one"}
    assert record["metrics"] == {"length": 2} and record["config"]["text"] == "y"

    CALLS.clear()
    rows = run_recipe(_recipe(), tmp_path)
    assert CALLS == [] and all(r["reused"] for r in rows)

    # a changed stage re-runs, and so does what uses it; an independent stage is reused
    CALLS.clear()
    run_recipe(_recipe(one={"times": 2}), tmp_path)
    assert CALLS == ["one", "two"]
    assert (tmp_path / "two" / "out.txt").read_text() == "xxy"


def test_from_and_to_choose_the_stages(tmp_path):
    CALLS.clear()
    with pytest.raises(ConfigError, match="'one' has no up-to-date result"):
        run_recipe(_recipe(), tmp_path, from_stage="two")
    run_recipe(_recipe(), tmp_path, to_stage="one")
    assert CALLS == ["one"] and not (tmp_path / "two").exists()
    CALLS.clear()
    run_recipe(_recipe(), tmp_path, from_stage="two")
    assert CALLS == ["two", "side"]
    CALLS.clear()
    run_recipe(_recipe(), tmp_path, from_stage="one", to_stage="one")
    assert CALLS == ["one"]
    with pytest.raises(ConfigError, match="no stage named 'three'"):
        run_recipe(_recipe(), tmp_path, to_stage="three")


def test_an_interrupted_stage_leaves_no_record_and_is_run_again(tmp_path, monkeypatch):
    run_recipe(_recipe(), tmp_path)

    def fail(self, ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(WriteStage, "run", fail)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(_recipe(two={"text": "w"}), tmp_path)
    assert not (tmp_path / "two" / "record.json").exists()
    monkeypatch.undo()
    CALLS.clear()
    run_recipe(_recipe(two={"text": "w"}), tmp_path)
    assert CALLS == ["two"] and (tmp_path / "two" / "out.txt").read_text() == "xw"


@pytest.mark.parametrize("data, message", [
    ({"stages": [{"type": "nope"}]}, "unknown stage type 'nope'; registered: .*'train'"),
    ({"stages": [{"text": "x"}]}, "each stage is a mapping with a 'type'"),
    ({"stages": [{"type": "test_write", "txt": "x"}]}, r"unknown key\(s\) \['txt'\]"),
    ({"stages": [{"type": "test_write", "times": "two"}]}, r"stages\[0\] \(test_write\).times: expected an integer"),
    ({"stages": [{"type": "test_write", "after": "later"}]}, "'later' is not an earlier stage"),
    ({"stages": [{"type": "test_write"}, {"type": "test_write"}]}, "a stage named 'test_write' comes earlier"),
    ({"stages": []}, "non-empty list"),
    ({"stages": [{"type": "test_write"}], "scoring": {"window_frames": 0}}, "window_frames"),
    ({"stages": [{"type": "test_write"}], "plugins": ["no.such.module"]}, "cannot be imported"),
    ({"stages": [{"type": "train", "epochs": "many"}]}, "epochs: expected an integer"),
    ({"stages": [{"type": "evaluate", "model": "x"}]}, "give either corpus"),
])
def test_bad_recipes_name_what_is_wrong(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_recipe(data, "r.yaml")


def test_every_packaged_recipe_parses_and_a_missing_one_is_named():
    names = sorted(p.stem for p in (Path(tfadvq.__file__).parent / "recipes").glob("*.yaml"))
    assert "demo" in names
    for name in names:
        assert load_recipe(name).stages, name
    assert [e.name for e in load_recipe("demo").stages][:2] == ["corpus", "train"]
    with pytest.raises(ConfigError, match=re.escape(f"packaged: {names}")):
        load_recipe("nothing_like_it")


def test_cli_runs_a_users_own_recipe_with_a_plugin_stage(tmp_path, capsys, monkeypatch):
    from tfadvq.cli import main

    plugin = tmp_path / "my_stages.py"
    plugin.write_text(
        "import dataclasses\n"
        "from tfadvq.recipe import StageBase, StageResult, register_stage\n"
        "@register_stage('count_words')\n"
        "@dataclasses.dataclass\n"
        "class CountWords(StageBase):\n"
        "    text: str = ''\n"
        "    def run(self, ctx):\n"
        "        (ctx.out / 'n.txt').write_text(str(len(self.text.split())))\n"
        "        return StageResult({'n': str(ctx.out / 'n.txt')}, {}, 'counted')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("plugins: [my_stages]\nstages:\n  - {type: count_words, text: 'one two three'}\n")
    assert main(["run", str(recipe), "--workdir", str(tmp_path / "w")]) == 0
    assert "count_words" in capsys.readouterr().out
    assert (tmp_path / "w" / "count_words" / "n.txt").read_text() == "3"
    assert main(["run", str(tmp_path / "missing.yaml"), "--workdir", str(tmp_path / "w")]) == 2
    assert "tfadvq: error: recipe" in capsys.readouterr().err


def test_two_runs_cannot_write_one_workdir(tmp_path):
    from tfadvq import rundir

    with rundir.locked(tmp_path):
        with pytest.raises(rundir.OutputError, match="another tfadvq run is writing"):
            run_recipe(_recipe(), tmp_path)


def test_atomic_writes_leave_the_old_file_when_interrupted(tmp_path):
    from tfadvq import rundir

    target = tmp_path / "model.keras"
    target.write_text("old")

    class Boom:
        def save(self, path):
            Path(path).write_text("partial")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rundir.atomic_save_model(Boom(), target)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.keras"]
