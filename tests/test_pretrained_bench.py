"""benchmarks/pretrained.py --quick: tiny LSTM encoder trained here, every method at one width, both test sets."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import pretrained
from tfadvq.corpus.real import RealConfig, build_real_corpus
from tfadvq.corpus.real_sources import SOURCES, Source
from tfadvq.evaluation import evaluate
from tfadvq.scoring import keras_embedder

# Two Spanish and two French asterisk voices (installed by scripts/setup.sh), as tests/test_real_corpus.py.
SPANISH_FRENCH = Source("asterisk", SOURCES[0].licence, SOURCES[0].labels,
                        tuple(r for r in SOURCES[0].readers if r.language in ("es", "fr")))


@pytest.fixture(scope="module")
def quick_run(tiny_corpus, tmp_path_factory):
    base = tmp_path_factory.mktemp("pretrained")
    real = base / "real"
    build_real_corpus(real, RealConfig(sources=("asterisk",), max_clips=5, seed=3), sources=[SPANISH_FRENCH],
                      progress=False)
    argv = ["--quick", "--corpus", str(tiny_corpus), "--real", str(real), "--artifacts", str(base / "art"),
            "--models", "lstm40", "--bits", "3", "--out", str(base / "pretrained.json")]
    return argv, pretrained.main(argv), base


def test_every_method_is_a_row_with_both_test_sets_and_the_targets(quick_run):
    _, result, _ = quick_run
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == {"fp32", *(m.name for m in pretrained.METHODS if m.available())}  # refusals are rows
    fp = rows.pop("fp32")
    for method, row in rows.items():
        if "refused" in row:
            continue
        assert row["bits"] == 3 and row["size_bytes"] < fp["size_bytes"], method  # tiny: biases weigh
        for name in ("synthetic", "real"):
            low, high = row[f"eer_{name}_ci95"]
            assert 0 <= low <= row[f"eer_{name}"] <= high <= 100, (method, name)
        assert -1 <= row["mean_cosine_to_fp32"] <= 1
    assert fp["mean_cosine_to_fp32"] == pytest.approx(1.0, abs=1e-4)
    assert rows["kmqat_distill"]["steps"] == 2
    for method in ("mixed", "mixed_plain_cost", "mixed_unweighted", "mixed_channels"):  # per-tensor rows' bytes
        mixed = rows[method]
        assert "refused" not in mixed and mixed["avg_bits"] <= mixed["budget_avg_bits"], method
        assert mixed["size_bytes"] <= rows["kmqat_ptq_weighted"]["size_bytes"], method
    assert rows["mixed"]["codebooks"] == rows["mixed_plain_cost"]["codebooks"] == "weighted"
    assert rows["mixed_unweighted"]["codebooks"] == "plain"
    assert rows["mixed_channels"]["codebooks"] == "weighted" and "channel_pricing_seconds" in rows["mixed_channels"]
    pairs = {(c["a"], c["b"], c["set"]): c for c in result["comparisons"]}
    assert {(a, b, s) for a, b in pretrained.PAIRS for s in ("synthetic", "real")} == set(pairs)
    for (a, b, name), c in pairs.items():  # the paired difference is the difference of the two rows' EERs
        d = c["delta_eer"]
        assert d["value"] == pytest.approx(rows[a][f"eer_{name}"] - rows[b][f"eer_{name}"], abs=2e-3)
        assert d["low"] <= d["value"] <= d["high"] and c["bits"] == 3
    three_bit = [t for t in result["targets"] if t["set"] == "synthetic"]
    assert {t["method"] for t in three_bit} == set(rows) - {m for m, r in rows.items() if "refused" in r}
    assert all(t["limit"] == 1.5 and t["met"] == (t["ratio"] <= 1.5) for t in three_bit)


def test_batched_scoring_is_the_evaluation_schedule(quick_run, tiny_corpus):
    """The benchmark embeds all windows of a test set in batches; the EER is evaluate()'s."""
    _, result, base = quick_run
    enc = pretrained.encoder("lstm40", pretrained.parse_args(quick_run[0]))
    corpus = pretrained.load_corpus(tiny_corpus)
    official = evaluate(keras_embedder(enc.fp, enc.front_end), corpus.trials, corpus.test)
    fp = next(r for r in result["rows"] if r["method"] == "fp32")
    assert fp["eer_synthetic"] == pytest.approx(official.eer, abs=1e-3)


def test_a_rerun_measures_only_missing_cells(quick_run):
    argv, result, base = quick_run
    again = pretrained.main(argv)
    assert again["rows"] == json.loads((base / "pretrained.json").read_text())["rows"] == result["rows"]
    assert np.isfinite([r["eer"] for r in again["rows"] if "eer" in r]).all()
    # a cell whose trial scores are gone is not finished: measured again (its row replaced, not doubled)
    pretrained.scores_path(base / "art" / "bench", "lstm40", "uniform_ptq", 3, "synthetic").unlink()
    third = pretrained.main(argv)
    assert len(third["rows"]) == len(result["rows"])
    redone = next(r for r in third["rows"] if r["method"] == "uniform_ptq")
    assert redone["eer_synthetic"] == next(r for r in result["rows"] if r["method"] == "uniform_ptq")["eer_synthetic"]


def test_a_cells_inputs_and_result_do_not_depend_on_the_cells_before_it(quick_run):
    """Two cells in both orders, each on a fresh encoder: the same crops, the same quantized weights.

    The crops are drawn by the training pipeline, which redraws them on every pass; a cell that read part of
    them (the Fisher's batches) used to change what the next cell read, and the RNG state it left behind.
    """
    args = pretrained.parse_args(quick_run[0])
    cells = ("default_path", "mixed")

    def run(order):
        enc = pretrained.encoder("lstm40", args)
        first = [next(iter(enc.data.dataset.take(1)))[0].numpy() for _ in range(2)]  # a partial read, twice
        np.testing.assert_array_equal(*first)
        built = {name: pretrained.cell(enc, name, 3).model.get_weights() for name in order}
        return first[0], built

    crops, forward = run(cells)
    crops_again, backward = run(cells[::-1])
    np.testing.assert_array_equal(crops, crops_again)
    for name in cells:
        for a, b in zip(forward[name], backward[name], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
