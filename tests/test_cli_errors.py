"""Every error a user's environment causes ends in ``tfadvq: error: ...`` naming the path, exit 2,
and nothing is lost: unwritable outputs, a file where a directory belongs, a full disk, two runs on
one directory, and a finished result that would be overwritten."""
from __future__ import annotations

import errno
import re
from pathlib import Path

import numpy as np
import pytest

from tfadvq.cli import main

UNWRITABLE = "/proc/tfadvq-cannot-write-here"  # refused even to root


@pytest.fixture(scope="module")
def fp_model(tmp_path_factory) -> Path:
    from test_quant_finetune import small_embedding_model

    path = tmp_path_factory.mktemp("fp") / "fp.keras"
    small_embedding_model().save(path)
    return path


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tfadvq: error: "), err
    return err


@pytest.mark.parametrize("out", [UNWRITABLE + "/q", "{file}/q"])
def test_quantize_into_an_unwritable_place(fp_model, tmp_path, capsys, out):
    (tmp_path / "file").write_text("a file, not a directory")
    out = out.replace("{file}", str(tmp_path / "file"))
    assert main(["quantize", "--model", str(fp_model), "--bits", "2", "--out", out]) == 2
    assert str(Path(out).parent) in _error(capsys)


def test_run_and_eval_and_train_into_an_unwritable_place(fp_model, tiny_corpus, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"stages:\n  - {{type: model, path: {fp_model}}}\n")
    assert main(["run", str(recipe), "--workdir", UNWRITABLE]) == 2
    assert UNWRITABLE in _error(capsys)
    assert main(["eval", "--model", str(fp_model), "--corpus", str(tiny_corpus), "--out", UNWRITABLE]) == 2
    assert UNWRITABLE in _error(capsys)
    assert main(["train", "--config", "demo", "--corpus", str(tiny_corpus), "--out", UNWRITABLE]) == 2
    assert UNWRITABLE in _error(capsys)


def test_a_full_disk_is_reported_and_leaves_no_partial_result(fp_model, tmp_path, capsys, monkeypatch):
    from tfadvq.quant.records import QuantizedWeights

    out = tmp_path / "q"
    assert main(["quantize", "--model", str(fp_model), "--bits", "2", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def full(self, path):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(QuantizedWeights, "save", full)
    assert main(["quantize", "--model", str(fp_model), "--bits", "3", "--out", str(out), "--force"]) == 2
    err = _error(capsys)
    assert "the disk is full" in err and "quantized_weights.npz" in err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after["quantized_weights.npz"] == before["quantized_weights.npz"]  # the old file, whole
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_a_finished_result_is_not_overwritten_and_two_runs_do_not_share_a_directory(fp_model, tmp_path, capsys):
    from tfadvq import rundir

    out = tmp_path / "q"
    assert main(["quantize", "--model", str(fp_model), "--bits", "2", "--out", str(out)]) == 0
    summary = (out / "summary.json").read_bytes()
    capsys.readouterr()
    assert main(["quantize", "--model", str(fp_model), "--bits", "3", "--out", str(out)]) == 2
    assert "--force" in _error(capsys)
    assert (out / "summary.json").read_bytes() == summary
    with rundir.locked(out):
        assert main(["quantize", "--model", str(fp_model), "--bits", "3", "--out", str(out), "--force"]) == 2
        assert "another tfadvq run is writing" in _error(capsys)


def test_unreadable_inputs_name_the_file(tmp_path, capsys):
    bad = tmp_path / "model.keras"
    bad.write_bytes(np.random.default_rng(0).bytes(64))
    assert main(["eval", "--model", str(bad), "--corpus", str(tmp_path)]) == 2
    assert str(tmp_path) in _error(capsys)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages: [{type: model, path: " + str(bad) + "}]\n")
    assert main(["run", str(recipe), "--workdir", str(tmp_path / "w")]) == 2
    assert str(bad) in _error(capsys)
    recipe.write_bytes(b"\xff\xfe not yaml: [")
    assert main(["run", str(recipe), "--workdir", str(tmp_path / "w")]) == 2
    assert str(recipe) in _error(capsys)


@pytest.mark.parametrize("avg_bits", ["0", "-1", "nan", "inf", "1.5", "33"])
def test_an_unreachable_average_is_refused_before_the_hessian(fp_model, tmp_path, capsys, avg_bits):
    """Below the narrowest allowed width no model reaches it (the tables only add bits); above 32 bits per
    weight the float model is smaller."""
    out = tmp_path / "m"
    argv = ["mixed", "--model", str(fp_model), "--inputs", str(tmp_path / "never-read.npy"),
            "--avg-bits", avg_bits, "--allowed", "2,4,8", "--out", str(out)]
    assert main(argv) == 2
    err = _error(capsys)
    assert "--avg-bits" in err or "average bits" in err and "from 2 (the narrowest allowed width" in err
    assert not (out / "summary.json").exists()
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"stages:\n  - {{type: model, path: {fp_model}}}\n"
                      f"  - {{type: mixed, model: model, avg_bits: {avg_bits}, allowed: [2, 4, 8]}}\n")
    assert main(["run", str(recipe), "--workdir", str(tmp_path / "w")]) == 2
    err = _error(capsys)
    assert "(mixed).avg_bits" in err or "average bits" in err
    assert not (tmp_path / "w" / "model").exists()  # refused before the recipe's first stage


def test_an_average_the_tables_of_this_model_put_out_of_reach_is_refused_before_the_hessian(
        fp_model, tmp_path, capsys, monkeypatch):
    """Within the accepted range, but below this model's every-tensor-narrowest size with its value tables: 2
    bits per weight with 2 bits the narrowest width leaves nothing for the tables, whatever their layout."""
    from tfadvq.quant import sensitivity

    def traced(*args, **kwargs):
        raise AssertionError("the Hessian traces ran")

    monkeypatch.setattr(sensitivity, "hessian_traces", traced)
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.random.default_rng(0).standard_normal((8, 40, 80)).astype(np.float32))
    out = tmp_path / "m"
    assert main(["mixed", "--model", str(fp_model), "--inputs", str(inputs), "--avg-bits", "2", "--frames", "40",
                 "--allowed", "2,4,8", "--out", str(out)]) == 2
    err = _error(capsys)
    assert re.search(r"average bits 2.0 is unreachable: the smallest reachable is \d+\.\d{3} bits per weight "
                     r"including the value tables", err)
    assert not (out / "summary.json").exists()


@pytest.mark.parametrize("prefix", ["len", "Bad-P", "verify"])
def test_a_symbol_prefix_that_would_not_compile_or_collide_is_refused_before_converting(fp_model, tmp_path,
                                                                                       capsys, prefix):
    out = tmp_path / "m.tflite"
    argv = ["convert", "--model", str(fp_model), "--out", str(out), "--c-array", str(tmp_path / "c"),
            "--symbol-prefix", prefix]
    assert main(argv) == 2
    assert f"--symbol-prefix {prefix!r}" in _error(capsys)
    assert not out.exists() and not (tmp_path / "c").exists()


def test_a_forced_mixed_run_that_dies_leaves_no_finished_looking_mixture(fp_model, tmp_path, capsys, monkeypatch):
    """Killed after writing the new bits.yaml, the old summary must not vouch for the new files."""
    from tfadvq.quant import outputs

    inputs = tmp_path / "x.npy"
    np.save(inputs, np.random.default_rng(0).standard_normal((8, 40, 80)).astype(np.float32))
    out = tmp_path / "m"
    argv = ["mixed", "--model", str(fp_model), "--inputs", str(inputs), "--batches", "1", "--probes", "1",
            "--frames", "40", "--allowed", "2,4,8", "--out", str(out)]
    assert main([*argv, "--avg-bits", "14"]) == 0  # bits per weight with the tables: the tiny model's are big
    assert (out / "summary.json").is_file()

    def killed(*args, **kwargs):
        from tfadvq.rundir import OutputError

        raise OutputError(f"cannot write {out / 'model.h5'} (the run died here)")

    monkeypatch.setattr(outputs, "save", killed)
    assert main([*argv, "--avg-bits", "20", "--force"]) == 2
    _error(capsys)
    assert (out / "bits.yaml").is_file() and not (out / "summary.json").exists()
    monkeypatch.undo()
    assert main([*argv, "--avg-bits", "20"]) == 0  # not "holds a finished result": nothing finished remains
    assert (out / "summary.json").is_file()


def test_weighted_with_no_fisher_batches_names_the_flag(fp_model, tmp_path, capsys):
    argv = ["quantize", "--model", str(fp_model), "--weighted", "--fisher-batches", "0",
            "--inputs", str(tmp_path / "never-read.npy"), "--objective", "distill", "--out", str(tmp_path / "q")]
    assert main(argv) == 2
    assert "tfadvq: error: --fisher-batches: 0 is out of range; accepted: >= 1" in _error(capsys)


def test_a_c_array_directory_that_is_a_file_is_refused_before_converting(fp_model, tmp_path, capsys):
    (tmp_path / "file").write_text("a file, not a directory")
    out = tmp_path / "m.tflite"
    argv = ["convert", "--model", str(fp_model), "--out", str(out), "--c-array", str(tmp_path / "file")]
    assert main(argv) == 2
    assert f"--c-array {tmp_path / 'file'}: is a file" in _error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("flags, message", [
    (["quantize", "--lr-scale", "nan"], "--lr-scale: nan is not a finite number (see `tfadvq quantize --help`)"),
    (["quantize", "--lr-scale", "0"], "--lr-scale: 0.0 is out of range; accepted: > 0.0"),
    (["quantize", "--bits", "9"], "--bits: 9 is out of range; accepted: >= 1 and <= 8"),
    (["quantize", "--bits", "4.5"], "--bits: '4.5' is not an integer"),
    (["mixed", "--avg-bits", "33"], "--avg-bits: 33.0 is out of range; accepted: >= 1.0 and <= 32.0"),
    (["convert", "--target-far", "inf"], "--target-far: inf is not a finite number"),
    (["convert", "--frames", "0"], "--frames: 0 is out of range"),
    (["verify", "--threshold", "1.5"], "--threshold: 1.5 is out of range; accepted: >= -1.0 and <= 1.0"),
    (["data", "synth", "--utts", "-3"], "--utts: -3 is out of range"),
])
def test_a_bad_number_is_refused_by_name_before_any_work(tmp_path, capsys, flags, message):
    out = tmp_path / "never"
    argv = [*flags, "--model", str(tmp_path / "never.keras"), "--out", str(out)]
    if flags[0] == "data":
        argv = [*flags, "--out", str(out)]
    elif flags[0] == "verify":
        argv = [*flags, "--model", str(tmp_path / "m.keras")]
    assert main(argv) == 2
    assert message in _error(capsys)
    assert not out.exists()


def test_a_bits_spec_with_a_key_given_twice_is_refused(fp_model, tmp_path, capsys):
    spec = tmp_path / "bits.yaml"
    spec.write_text("default: 4\nlayers: {}\ndefault: 8\n")
    argv = ["quantize", "--model", str(fp_model), "--bits-per-layer", str(spec), "--out", str(tmp_path / "q")]
    assert main(argv) == 2
    assert f"{spec}: key 'default' is given twice (lines 1 and 3)" in _error(capsys)
    assert not (tmp_path / "q").exists()


@pytest.mark.parametrize("command", ["convert", "demo"])
def test_a_renamed_flag_is_refused_naming_its_new_form(command, tmp_path, capsys):
    """``--calibration-crops`` (int8 ranges) became ``--corpus-crops``: "calibrate" means the thresholds."""
    argv = [command, "--calibration-crops", "8"]
    argv += ["--model", str(tmp_path / "m.keras"), "--out", str(tmp_path / "m.tflite")] if command == "convert" \
        else ["--workdir", str(tmp_path / "w")]
    assert main(argv) == 2
    assert "--calibration-crops is now --corpus-crops (renamed" in _error(capsys)
    assert not any(tmp_path.iterdir())
