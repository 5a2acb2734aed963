"""Nothing a user has is replaced without asking (issue 25): every command claims its outputs through
``rundir.claim`` / ``rundir.claim_dir`` -- existing files need ``--force``, device nodes, fifos and
symbolic links are refused always, the output itself is locked (not its folder), and a failure (a
full disk) leaves none of the files it began; the two former tracebacks end in ``tfadvq: error``."""
from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

import pytest

from tfadvq import rundir
from tfadvq.cli import main


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tfadvq: error: "), err
    return err


@pytest.fixture(scope="module")
def q_model(tmp_path_factory) -> Path:
    """A 2-bit KMQAT model (the tfmot-wrapped ``.h5`` that `tfadvq quantize` writes)."""
    from test_quant_finetune import small_embedding_model

    from tfadvq.quant import api

    path = tmp_path_factory.mktemp("q") / "model.h5"
    rundir.atomic_save_model(api.quantize(small_embedding_model(), 2), path)
    return path


def _convert(q_model: Path, out: Path, *extra: str) -> list[str]:
    return ["convert", "--model", str(q_model), "--out", str(out), "--frames", "40", *extra]


# --------------------------------------------------------------------------- rundir.claim itself


def test_an_existing_file_is_refused_without_force_and_replaced_with_it(tmp_path):
    mine = tmp_path / "keep.tflite"
    mine.write_text("precious")
    with pytest.raises(rundir.OutputError, match=r"keep.tflite already exists and was not written by this "
                                                 r"command; pass --force"):
        with rundir.claim(mine):
            mine.write_text("lost")
    assert mine.read_text() == "precious"
    companion = tmp_path / "keep.json"
    companion.write_text("{}")
    with pytest.raises(rundir.OutputError, match="keep.json already exists"):
        with rundir.claim(tmp_path / "new.tflite", companions=[companion]):
            pass
    assert not (tmp_path / "new.tflite").exists() and companion.read_text() == "{}"
    with rundir.claim(mine, force=True):
        rundir.atomic_write(mine, "replaced")
    assert mine.read_text() == "replaced"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.json", "keep.tflite"]  # no lock left


def test_non_regular_outputs_are_refused_even_with_force_before_anything_is_written(tmp_path):
    fifo = tmp_path / "pipe.tflite"
    os.mkfifo(fifo)
    (tmp_path / "real.tflite").write_text("x")
    link = tmp_path / "link.tflite"
    link.symlink_to(tmp_path / "real.tflite")
    (tmp_path / "folder.tflite").mkdir()
    for target, kind in ((fifo, "a named pipe"), (link, "a symbolic link"),
                         (tmp_path / "folder.tflite", "a directory")):
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(rundir.OutputError, match=f"{target.name} is {kind}, not a regular file"):
            with rundir.claim(target, force=True):
                raise AssertionError("the body must not run")
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # not even a lock file
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_dev_null_is_refused_and_left_a_device(tmp_path):
    """``--out /dev/null`` as root replaced the device node; nothing may be written under /dev."""
    null = Path("/dev/null")
    before = os.lstat(null)
    assert stat.S_ISCHR(before.st_mode)
    with pytest.raises(rundir.OutputError, match="/dev/null is a device node, not a regular file"):
        with rundir.claim(null, force=True, companions=[Path("/dev/null.json")]):
            raise AssertionError("the body must not run")
    after = os.lstat(null)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert not Path("/dev/null.json").exists() and not Path("/dev/.null.lock").exists()


def test_a_failure_removes_what_the_claim_created_and_keeps_what_was_there(tmp_path):
    out = tmp_path / "new" / "deeper" / "m.tflite"
    with pytest.raises(OSError):
        with rundir.claim(out, companions=[out.with_suffix(".json")]):
            rundir.atomic_write(out, b"half of it")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not (tmp_path / "new").exists()  # the folders it made, too
    old = tmp_path / "old.tflite"
    old.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with rundir.claim(old, force=True, companions=[tmp_path / "old.json"]):
            (tmp_path / "old.json").write_text("{}")
            raise KeyboardInterrupt
    assert old.read_text() == "old" and not (tmp_path / "old.json").exists()


def test_the_output_is_locked_not_its_folder(tmp_path):
    entered, release = threading.Event(), threading.Event()

    def hold():
        with rundir.claim(tmp_path / "a.tflite"):
            entered.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(10)
        with pytest.raises(rundir.OutputError, match="another tfadvq command is writing it"):
            with rundir.claim(tmp_path / "a.tflite", force=True):
                pass
        with rundir.claim(tmp_path / "b.tflite"):  # a second output in the same folder: at the same time
            rundir.atomic_write(tmp_path / "b.tflite", b"b")
    finally:
        release.set()
        holder.join()
    assert (tmp_path / "b.tflite").read_bytes() == b"b"


def test_a_directory_of_other_files_is_refused_unless_forced(tmp_path):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_text("x")
    with pytest.raises(rundir.OutputError, match=r"--out .*photos: holds files tfadvq quantize does not write "
                                                 r"\(holiday.jpg\)"):
        with rundir.claim_dir(mine, rundir.QuantDir, command="tfadvq quantize"):
            pass
    with rundir.claim_dir(mine, rundir.QuantDir, force=True):
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(rundir.OutputError, match="is not a regular file, not a directory|not a directory"):
        with rundir.claim_dir(tmp_path / "file", rundir.QuantDir):
            pass
    made = tmp_path / "made"
    with pytest.raises(RuntimeError):
        with rundir.claim_dir(made, rundir.QuantDir):
            (made / "model.h5").write_text("partial")
            raise RuntimeError("died")
    assert not made.exists()


# --------------------------------------------------------------------------- the commands


def test_convert_onto_an_unrelated_file_or_a_device_is_refused(q_model, tmp_path, capsys):
    keep = tmp_path / "keep.tflite"
    keep.write_text("precious")
    assert main(_convert(q_model, keep)) == 2
    assert f"--out {keep}: {keep} already exists" in _error(capsys)
    assert keep.read_text() == "precious" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.tflite"]
    assert main(_convert(q_model, Path("/dev/null"), "--force")) == 2
    assert "/dev/null is a device node" in _error(capsys)
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode) and not Path("/dev/null.json").exists()
    fifo = tmp_path / "pipe.tflite"
    os.mkfifo(fifo)
    assert main(_convert(q_model, fifo, "--force")) == 2
    assert "is a named pipe" in _error(capsys)


def test_convert_writes_its_files_and_refuses_to_replace_them_without_force(q_model, tmp_path, capsys):
    out = tmp_path / "m.tflite"
    assert main(_convert(q_model, out, "--c-array", str(tmp_path / "fw"))) == 0
    written = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert sorted(written) == ["m.float.tflite", "m.json", "m.tflite"]
    assert sorted(p.name for p in (tmp_path / "fw").iterdir()) == ["model_config.h", "model_data.cc",
                                                                  "model_data.h", "model_ops.h"]
    capsys.readouterr()
    assert main(_convert(q_model, tmp_path / "other.tflite", "--c-array", str(tmp_path / "fw"))) == 2
    assert "model_data.h" in _error(capsys)  # the firmware sources of the first conversion are outputs too
    assert not (tmp_path / "other.tflite").exists()
    assert main(_convert(q_model, out, "--force")) == 0


def test_convert_onto_a_full_disk_leaves_nothing_behind(q_model, tmp_path, capsys, monkeypatch):
    """The second file hits ENOSPC: the error names it, and the first one (written) is removed again."""
    real = rundir._fsync
    calls = []

    def fsync(path):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path)

    monkeypatch.setattr(rundir, "_fsync", fsync)
    out = tmp_path / "sub" / "c.tflite"
    assert main(_convert(q_model, out)) == 2
    assert "the disk is full" in _error(capsys)
    assert not (tmp_path / "sub").exists()


def test_quantize_onto_a_full_disk_is_a_clean_error(tmp_path, capsys, monkeypatch):
    """libhdf5 writing onto a full disk raised 'Slist already enabled?' then crashed: the model is
    built in memory and written once, so the full disk is an ordinary ENOSPC."""
    from test_quant_finetune import small_embedding_model

    fp = tmp_path / "fp.keras"
    small_embedding_model().save(fp)
    real = Path.write_bytes

    def write_bytes(self, data):
        if self.name == "model.h5":
            real(self, data[:100])
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    out = tmp_path / "q"
    assert main(["quantize", "--model", str(fp), "--bits", "2", "--out", str(out)]) == 2
    assert f"cannot write {out / 'model.h5'}: the disk is full" in _error(capsys)
    assert not out.exists()


def _tmpfs(path: Path, size: str) -> bool:
    import subprocess

    path.mkdir()
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                                capture_output=True).returncode == 0


def test_quantize_and_convert_onto_a_real_full_disk(q_model, tmp_path, capsys):
    """On a real (tiny tmpfs) full disk, when this machine lets the test mount one."""
    import subprocess

    from test_quant_finetune import small_embedding_model

    disk = tmp_path / "disk"
    if not _tmpfs(disk, "300k"):
        pytest.skip("cannot mount a tmpfs here (not root or no mount)")
    try:
        fp = tmp_path / "fp.keras"
        small_embedding_model().save(fp)
        (disk / "filler").write_bytes(b"\0" * (280 << 10))
        assert main(["quantize", "--model", str(fp), "--bits", "2", "--out", str(disk / "q")]) == 2
        assert "the disk is full" in _error(capsys)
        assert main(_convert(q_model, disk / "c.tflite", "--c-array", str(disk / "fw"))) == 2
        assert "the disk is full" in _error(capsys)
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]  # no temp file, no partial output
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_model_with_two_outputs_is_refused_by_name(tmp_path, capsys):
    from tfadvq.compat import keras
    from tfadvq.quant import api

    inputs = keras.Input((40, 80))
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(8, 3, name="c1")(inputs))
    model = keras.Model(inputs, [keras.layers.Dense(16, name="embed")(x), keras.layers.Dense(4, name="logits")(x)])
    path = tmp_path / "two.h5"
    rundir.atomic_save_model(api.quantize(model, 4), path)
    assert main(_convert(path, tmp_path / "two.tflite")) == 2
    assert "it has 2 outputs ('embed', 'logits')" in _error(capsys)
    assert not (tmp_path / "two.tflite").exists()


def test_quantize_into_a_folder_of_other_files_and_run_over_a_users_folder_are_refused(tmp_path, capsys):
    from test_quant_finetune import small_embedding_model

    fp = tmp_path / "fp.keras"
    small_embedding_model().save(fp)
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert main(["quantize", "--model", str(fp), "--bits", "2", "--out", str(folder)]) == 2
    assert "holds files tfadvq quantize does not write (notes.txt)" in _error(capsys)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    work = tmp_path / "work"
    work.mkdir()
    (work / "budget.xlsx").write_text("mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"stages:\n  - {{type: model, path: {fp}}}\n")
    assert main(["run", str(recipe), "--workdir", str(work)]) == 2
    assert "holds files no recipe wrote (budget.xlsx)" in _error(capsys)
    (work / "budget.xlsx").unlink()
    (work / "model").mkdir()  # a folder named like a stage: re-running the stage would empty it
    (work / "model" / "thesis.tex").write_text("years of work")
    assert main(["run", str(recipe), "--workdir", str(work)]) == 2
    assert "was not written by a recipe stage" in _error(capsys)
    assert (work / "model" / "thesis.tex").read_text() == "years of work"


def test_train_into_a_folder_of_other_files_is_refused(tiny_corpus, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "eval_test").mkdir()  # what `tfadvq eval` writes beside a model is not foreign
    assert main(["train", "--config", "demo", "--corpus", str(tiny_corpus), "--out", str(folder)]) == 2
    assert "holds files tfadvq train does not write (notes.txt)" in _error(capsys)
    assert sorted(p.name for p in folder.iterdir()) == ["eval_test", "notes.txt"]
