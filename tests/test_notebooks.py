"""The notebooks: committed without outputs, and each one runs top to bottom on its tiny settings.

Every notebook defaults to tiny settings (``FULL = False`` in its cell tagged
``parameters``); the test only injects, papermill-style, where to write
(``WORKDIR``) and the session's tiny corpus (``CORPUS``), so no notebook but
the quickstart generates one.  05 lays that corpus out as the VoxCeleb
download (``voxceleb2/dev/wav``, ``voxceleb1/test/wav``, ``veri_test2.txt``)
and runs the real commands on it.  A failing cell fails the test with its traceback
(nbclient), and the executed notebook is kept beside the work directory.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = ["01_quickstart", "02_mixed_precision", "03_binary", "04_your_pretrained_model",
            "05_voxceleb_recipe"]
PNG = b"\x89PNG\r\n\x1a\n"


def _runner():
    spec = importlib.util.spec_from_file_location("notebook_execute", NOTEBOOKS / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _committed() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def test_the_notebooks_are_committed_without_outputs_and_with_one_parameter_cell():
    assert [p.stem for p in _committed()][:len(EXPECTED)] == EXPECTED
    runner = _runner()
    for path in _committed():
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert all(cell.outputs == [] and cell.execution_count is None for cell in code), path.name
        parameters = notebook.cells[runner.parameter_cell(notebook)].source
        assert "FULL = False" in parameters and "WORKDIR = " in parameters, path.name
        # every picture comes from tfadvq.plots, none is drawn in the notebook itself
        sources = "\n".join(cell.source for cell in code)
        assert "matplotlib" not in sources and "plt." not in sources, path.name
        assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")


def test_parameters_are_injected_after_the_parameter_cell_and_a_notebook_needs_one():
    from tfadvq.errors import ConfigError

    runner = _runner()
    notebook = nbformat.read(NOTEBOOKS / "01_quickstart.ipynb", as_version=4)
    at = runner.parameter_cell(notebook)
    injected = runner.inject(notebook, {"WORKDIR": "/tmp/x", "FULL": False})
    assert injected.cells[at + 1].source.splitlines()[1:] == ["WORKDIR = '/tmp/x'", "FULL = False"]
    assert injected.cells[at + 1].metadata["tags"] == [runner.INJECTED_TAG]
    del notebook.cells[at]
    with pytest.raises(ConfigError, match="0 code cells tagged 'parameters'"):
        runner.parameter_cell(notebook)


def _pngs(notebook: nbformat.NotebookNode) -> list[bytes]:
    """The PNG images the executed notebook displayed (base64-decoded)."""
    import base64

    return [base64.b64decode(out.data["image/png"]) for cell in notebook.cells if cell.cell_type == "code"
            for out in cell.outputs if "image/png" in out.get("data", {})]


def _text(notebook: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for out in cell.outputs)


def _run(name: str, tmp_path: Path, **parameters):
    work = tmp_path / name
    notebook = _runner().execute(NOTEBOOKS / f"{name}.ipynb", tmp_path / f"{name}.ipynb",
                                 {"WORKDIR": str(work), **parameters}, timeout=600)
    return notebook, work


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quickstart_runs_from_speech_to_a_4bit_model_verified_under_tflm(tmp_path):
    notebook, work = _run("01_quickstart", tmp_path)  # generates its own corpus, as a user's run does
    images = _pngs(notebook)
    assert len(images) >= 2 and all(image.startswith(PNG) for image in images)  # codebook, DET
    assert (work / "plots" / "det_fp32_vs_4bit.png").read_bytes() == images[-1]
    lut, plain = (work / "device" / "model.tflite").stat().st_size, (work / "device" / "model.float.tflite").stat().st_size
    assert lut < plain / 4  # 4-bit indices + value tables against float32 weights
    printed = _text(notebook)
    assert "KMQAT 4-bit (TFLM)" in printed and f"{lut}" in printed
    assert "genuine test" in printed and "impostor test" in printed


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_voxceleb_recipe_runs_the_real_commands_on_a_tiny_voxceleb_tree(tiny_corpus, tmp_path):
    notebook, work = _run("05_voxceleb_recipe", tmp_path, CORPUS=str(tiny_corpus))
    vox = work / "VoxCeleb"  # the tiny corpus laid out as the VoxCeleb download
    assert (vox / "voxceleb1" / "veri_test2.txt").read_text() == (tiny_corpus / "trials" / "test.txt").read_text()
    trials = (work / "data" / "vox1_o" / "trials.txt").read_text().splitlines()
    assert len(trials) == len((tiny_corpus / "trials" / "test.txt").read_text().splitlines())  # none dropped
    assert len((work / "data" / "vox2_dev" / "wav.scp").read_text().splitlines()) == \
        len(list((tiny_corpus / "dev" / "wav").rglob("*.wav")))
    run = work / "run"
    stages = ["train", "evaluate", "quantize", "finetune", "evaluate_4bit", "convert", "calibrate"]
    assert all((run / stage / "record.json").is_file() for stage in stages)
    metadata = json.loads((run / "calibrate" / "model.json").read_text())
    assert set(metadata["bits_per_layer"].values()) == {4} and metadata["thresholds"] is not None
    assert metadata["calibration"]["num_trials"] == len(trials)
    images = _pngs(notebook)
    assert images and images[-1] == (work / "plots" / "det_fp32_vs_4bit.png").read_bytes()
    assert "ResNet34 converted" in _text(notebook)  # the expected figures, read from benchmarks/results


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_mixed_precision_notebook_allocates_bits_and_compares_msft_with_one_shot(tiny_corpus, tmp_path):
    from tfadvq.config import load_yaml
    from tfadvq.quant.spec import BitsSpec

    notebook, work = _run("02_mixed_precision", tmp_path, CORPUS=str(tiny_corpus))
    names = ["sensitivity.png", "convergence.png", "eer_vs_size.png", "det_msft.png"]
    assert _pngs(notebook) == [(work / "plots" / name).read_bytes() for name in names]
    bits = load_yaml(BitsSpec, work / "mixed" / "bits.yaml")  # what tfadvq quantize --bits-per-layer takes
    plan = json.loads((work / "mixed" / "mixed.json").read_text())
    assert set(bits.layers.values()) <= {2, 3, 4, 5, 6, 8} and bits.layers == plan["allocation"]["bits"]
    assert plan["allocation"]["avg_bits"] <= 6.0 + 1e-9  # the notebook's AVG_BITS budget
    printed = _text(notebook)
    for method in ("uniform PTQ", "mixed PTQ", "mixed one-shot QAT", "mixed MSFT", "MSFT stages"):
        assert method in printed
    assert (work / "msft" / "msft.json").is_file()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_binary_notebook_compares_static_and_adaptive_1bit_weights(tiny_corpus, tmp_path):
    notebook, work = _run("03_binary", tmp_path, CORPUS=str(tiny_corpus))
    images = _pngs(notebook)
    assert len(images) == 2 and all(image.startswith(PNG) for image in images)
    assert images == [(work / "plots" / n).read_bytes() for n in ("binary_weights.png", "det_binary.png")]
    printed = _text(notebook)
    for row in ("FP32", "static PTQ", "adaptive PTQ", "adaptive 1-bit model, converted"):
        assert row in printed
    assert (work / "train" / "record.json").is_file()  # the demo recipe's FP32 stages, reusable


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pretrained_notebook_quantizes_and_distills_a_foreign_encoder(tiny_corpus, tmp_path):
    notebook, work = _run("04_your_pretrained_model", tmp_path, CORPUS=str(tiny_corpus))
    printed = _text(notebook)
    for row in ("3-bit PTQ", "3-bit PTQ, Fisher-weighted", "3-bit weighted + distilled", "min cosine",
                "benchmarks/results/ptq.json"):
        assert row in printed
    images = _pngs(notebook)
    assert len(images) == 1 and images[0] == (work / "plots" / "det_pretrained.png").read_bytes()
