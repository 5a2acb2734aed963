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


# --------------------------------------------------------------------------- verified reuse (issue 25)


def test_a_damaged_output_is_re_run_and_the_reason_given(tmp_path):
    run_recipe(_recipe(), tmp_path)
    (tmp_path / "one" / "out.txt").write_text("garbage of another size")
    CALLS.clear()
    why: dict[str, str] = {}
    rows = run_recipe(_recipe(), tmp_path, on_stage=lambda name, reason: why.setdefault(name, reason))
    # "one" re-made the very output "two" was made from: "two" stays valid
    assert CALLS == ["one"] and (tmp_path / "one" / "out.txt").read_text() == "x"
    assert "out.txt) changed since it finished" in why["one"]
    assert {r["stage"]: r["reused"] for r in rows} == {"one": False, "two": True, "side": True}
    assert "changed since it finished" in rows[0]["ran_because"]
    (tmp_path / "two" / "out.txt").write_bytes(b"\x00" * 100)
    CALLS.clear()
    run_recipe(_recipe(), tmp_path)
    assert CALLS == ["two"] and (tmp_path / "two" / "out.txt").read_text() == "xy"


def test_same_size_damage_is_found_by_the_digest_and_a_touch_alone_reuses(tmp_path):
    import os

    run_recipe(_recipe(), tmp_path)
    out = tmp_path / "one" / "out.txt"
    os.utime(out, ns=(1, 10**18))  # only the time changes: the digest says it is the same file
    CALLS.clear()
    run_recipe(_recipe(), tmp_path)
    assert CALLS == []
    out.write_text("q")  # same size, new content
    CALLS.clear()
    run_recipe(_recipe(), tmp_path)
    assert CALLS == ["one"] and out.read_text() == "x"
    out.unlink()
    why = {}
    run_recipe(_recipe(), tmp_path, on_stage=lambda name, reason: why.setdefault(name, reason))
    assert "is missing" in why["one"]


def test_content_mode_notices_a_change_that_keeps_size_and_time(tmp_path):
    import os

    def recipe(reuse_check):
        return parse_recipe({"reuse_check": reuse_check,
                             "stages": [{"type": "test_write", "name": "one", "text": "x"}]}, "t")

    run_recipe(recipe("content"), tmp_path)
    out = tmp_path / "one" / "out.txt"
    before = out.stat()
    big = "y" * (17 << 20)  # past tree_digest's content limit: size + time are all the stat mode sees
    out.write_text(big)
    os.utime(out, ns=(before.st_atime_ns, before.st_mtime_ns))
    record = json.loads((tmp_path / "one" / "record.json").read_text())
    record["outputs"]["file"] = str(out)
    CALLS.clear()
    # the record is for the small file; make it describe the big one as written, then change its content
    from tfadvq import rundir
    record["files"]["file"] = {"stat": rundir.stat_digest(out), "digest": rundir.tree_digest(out),
                               "content": rundir.tree_digest(out, content_limit=None)}
    (tmp_path / "one" / "record.json").write_text(json.dumps(record))
    with open(out, "r+b") as handle:
        handle.write(b"z")
    os.utime(out, ns=(before.st_atime_ns, before.st_mtime_ns))
    run_recipe(recipe("stat"), tmp_path)  # stat mode: size and time match, the large file is trusted
    assert CALLS == []
    run_recipe(recipe("content"), tmp_path)
    assert CALLS == ["one"]
    with pytest.raises(ConfigError, match=r"reuse_check 'sometimes'; accepted: \['stat', 'content'\]"):
        recipe("sometimes")
    # "verify" is the speaker decision; the old key is refused naming the new one
    with pytest.raises(ConfigError, match=r"t: 'verify' is now 'reuse_check' \(renamed; write reuse_check: content\)"):
        parse_recipe({"verify": "content", "stages": [{"type": "test_write"}]}, "t")


def test_a_record_from_before_per_output_digests_is_checked_by_its_combined_digest(tmp_path):
    run_recipe(_recipe(), tmp_path)
    path = tmp_path / "one" / "record.json"
    record = json.loads(path.read_text())
    del record["files"]
    path.write_text(json.dumps(record))
    CALLS.clear()
    run_recipe(_recipe(), tmp_path)
    assert CALLS == [] and "files" in json.loads(path.read_text())


@pytest.mark.parametrize("stage, message", [
    ({"type": "quantize", "end_bits": 9}, r"stages\[1\] \(quantize\)\.end_bits: 9 is out of range; accepted: >= 1 and <= 8"),
    ({"type": "quantize", "binary": "static", "binary_clip": -1},
     r"stages\[1\] \(quantize\)\.binary_clip: -1.0 is out of range; accepted: > 0.0"),
    ({"type": "finetune", "model": "train", "lr_scale": "nan"}, r"\(finetune\)\.lr_scale: nan is not a finite number"),
    ({"type": "mixed", "avg_bits": 33}, r"\(mixed\)\.avg_bits: 33.0 is out of range"),
    ({"type": "convert", "model": "train"}, r"\(convert\)\.model: 'train' is a train stage, which produces no 'wrapped'"),
])
def test_every_field_is_checked_before_the_first_stage_runs(stage, message):
    with pytest.raises(ConfigError, match=message):
        parse_recipe({"stages": [{"type": "train", "corpus": None}, stage]}, "r.yaml")


def test_a_convert_pointed_at_an_evaluate_stage_is_refused_when_the_recipe_is_read(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n"
                      "  - {type: corpus}\n"
                      "  - {type: train, corpus: corpus}\n"
                      "  - {type: evaluate, model: train, corpus: corpus}\n"
                      "  - {type: convert, model: evaluate}\n")
    with pytest.raises(ConfigError, match=r"\(convert\)\.model: 'evaluate' is a evaluate stage.*"
                                          r"name a stage of type \['finetune', 'mixed', 'msft', 'quantize'\]"):
        load_recipe(recipe)
    assert not any(tmp_path.iterdir()) or [p.name for p in tmp_path.iterdir()] == ["r.yaml"]


def test_a_key_given_twice_in_a_recipe_is_an_error(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - type: test_write\n    text: a\n    text: b\n")
    with pytest.raises(ConfigError, match=r"key 'text' is given twice \(lines 3 and 4\)"):
        load_recipe(recipe)


def test_a_config_field_added_with_its_default_keeps_finished_stages_reusable():
    """Fingerprints hash configs without their default-valued fields (config.identity): a field a later
    version adds, defaulting to the old behaviour, must not re-run a user's finished stages."""
    import dataclasses

    from tfadvq.config import identity
    from tfadvq.fbank_config import FbankConfig

    @dataclasses.dataclass
    class Before:
        bits: int = 4
        fbank: FbankConfig = dataclasses.field(default_factory=FbankConfig)

    @dataclasses.dataclass
    class After(Before):
        rounding: str = "nearest"  # added later, default = the old behaviour

    assert identity(Before()) == identity(After()) == {}
    assert identity(After(rounding="adaptive")) == {"rounding": "adaptive"}
    changed = identity(After(bits=2, fbank=FbankConfig(num_mel_bins=40)))
    assert changed == {"bits": 2, "fbank": {"num_mel_bins": 40}}  # a changed nested field still counts


def test_a_recipe_written_before_a_field_was_renamed_fails_naming_the_new_field(tmp_path, capsys):
    """The convert stage's int8 data was ``calibration``/``calibration_crops``; "calibrate" now means the
    decision thresholds only, and an old recipe is told the new keys, not "unknown key"."""
    from tfadvq.cli import main

    recipe = tmp_path / "old.yaml"
    recipe.write_text("stages:\n"
                      "  - {type: corpus}\n"
                      "  - {type: train, corpus: corpus}\n"
                      "  - {type: quantize, model: train}\n"
                      "  - {type: convert, model: quantize, calibration: corpus, calibration_crops: 8}\n")
    assert main(["run", str(recipe), "--workdir", str(tmp_path / "work")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfadvq: error: ")
    assert "stages[3] (convert): 'calibration' is now 'corpus'; 'calibration_crops' is now 'corpus_crops'" in err
    assert not (tmp_path / "work").exists()
    new = recipe.read_text().replace("calibration: corpus, calibration_crops: 8", "corpus: corpus, corpus_crops: 8")
    recipe.write_text(new)
    convert = load_recipe(recipe).stages[-1].stage
    assert (convert.corpus, convert.corpus_crops, convert.activations_int8) == ("corpus", 8, True)


def test_a_renamed_field_is_hashed_under_its_old_name_so_finished_stages_stay_reusable():
    """A run finished before the rename (``calibration: corpus``) keeps its fingerprint: same config,
    same upstream field, only a new spelling."""
    from tfadvq.config import identity
    from tfadvq.recipe import hashed_names
    from tfadvq.stages.device import ConvertStage

    stage = ConvertStage(model="quantize", corpus="corpus", corpus_crops=8)
    assert hashed_names(stage, identity(stage)) == {"model": "quantize", "calibration": "corpus",
                                                    "calibration_crops": 8}
    assert hashed_names(stage, stage.uses()) == {"model": "quantize", "calibration": "corpus"}
