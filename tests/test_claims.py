"""benchmarks/claims.py and its test bed: the trial design, the data order every method shares, and the
``--quick`` run end to end (cells reused on a re-run, paired deltas in claims.json)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import testbed  # noqa: E402


def test_trials_hold_every_target_pair_and_all_pairs_of_speakers_sharing_a_voice():
    speakers = [f"s{i}" for i in range(6) for _ in range(4)]
    keys = [f"{s}/u{j}.wav" for j, s in enumerate(speakers)]
    traits = {"s0": ("espeak-ng", "espeak-ng:en-us", "en"), "s1": ("espeak-ng", "espeak-ng:en-us", "en"),
              "s2": ("espeak-ng", "espeak-ng:en-gb", "en"), "s3": ("flite", "flite:slt", "en"),
              "s4": ("espeak-ng", "espeak-ng:de", "de"), "s5": ("festival", "festival:czech_krb", "cs")}
    t = testbed.make_trials(keys, speakers, traits, per_pair=3, seed=0)
    spk = np.array([int(s[1:]) for s in speakers])
    same = spk[t.enroll] == spk[t.test]
    assert np.array_equal(same, t.labels == 1)
    assert int(same.sum()) == 6 * 6  # 6 speakers x C(4, 2)
    assert np.array_equal(t.groups, spk[t.test])
    pairs = {tuple(sorted(p)) for p in zip(t.enroll, t.test)}
    assert len(pairs) == len(t)  # no trial twice, in either orientation
    kind = {k: np.flatnonzero(t.kinds == testbed.KINDS.index(k)) for k in testbed.KINDS}
    assert len(kind["same_voice"]) == 16  # s0-s1: every one of the 4 x 4 utterance pairs
    assert {frozenset(spk[[t.enroll[i], t.test[i]]]) for i in kind["same_voice"]} == {frozenset({0, 1})}
    # 15 speaker pairs, 14 of them with 3 utterance pairs; en speakers of other voices are same_language
    assert len(t) - 36 == 16 + 14 * 3
    assert {frozenset(spk[[t.enroll[i], t.test[i]]]) for i in kind["same_engine"]} == {
        frozenset(p) for p in ({0, 4}, {1, 4}, {2, 4})}
    scores = t.scores(np.eye(len(keys))[:, :len(keys)])
    assert scores.shape == (len(t),) and np.all(scores == 0.0)


def test_each_fit_of_the_shared_batches_starts_where_the_last_stage_ended():
    import claims

    x = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((10, 2, 3), np.float32)
    y = np.zeros((10, 2), np.int32)
    data, fits = claims.continuing(x, y, num_classes=3, per_fit=4)
    first = [int(b[0][0, 0]) for b in data.dataset.take(5).as_numpy_iterator()]
    second = [int(b[0][0, 0]) for b in data.dataset.take(7).as_numpy_iterator()]
    assert first == [0, 1, 2, 3, 4] and second == [4, 5, 6, 7, 8, 9, 0]
    assert next(fits) == 2


def test_quick_run_reports_cut_cells_writes_paired_deltas_and_reuses_finished_cells(tiny_corpus, tmp_path):
    import claims

    argv = ["--quick", "--corpus", str(tiny_corpus), "--workdir", str(tmp_path / "w"), "--claims", "d",
            "--seeds", "0", "--out", str(tmp_path / "claims.json")]
    cut = claims.main([*argv, "--max-cells", "0"])  # an interrupted run: nothing finished yet
    width = cut["claims"]["d"]["widths"][0]
    assert {m["status"] for m in width["methods"]} | {d["status"] for d in width["deltas"]} == {"not run"}
    assert cut["config"]["partial"] and len(cut["config"]["cells_not_run"]) == 7

    result = claims.main(argv)
    assert json.loads((tmp_path / "claims.json").read_text())["claims"].keys() == {"d"}
    width = result["claims"]["d"]["widths"][0]
    assert {m["method"] for m in width["methods"]} == {"binary_adaptive", "binary_static", "sign",
                                                       "binary_adaptive_ptq", "binary_static_ptq", "sign_ptq"}
    tuned = next(m for m in width["methods"] if m["method"] == "binary_adaptive")
    assert tuned["loss"][0]["steps"] == 2 and tuned["loss"][0]["fits"] == 1
    assert tuned["per_seed"][0]["eer"]["low"] <= tuned["eer"] <= tuned["per_seed"][0]["eer"]["high"]
    delta = next(d for d in width["deltas"] if d["stage"] == "finetuned" and d["b"] == "sign")
    assert delta["delta_eer"]["low"] <= delta["delta_eer"]["value"] <= delta["delta_eer"]["high"]
    assert delta["verdict"] in ("holds", "fails", "not resolved") and delta["speakers"] == 4
    assert result["config"]["cells_not_run"] == [] and len(result["config"]["figures"]) == 2
    records = sorted((tmp_path / "w" / "cells").glob("*/record.json"))
    assert len(records) == 7  # fp32, 3 fine-tuned, 3 post-training
    before = [r.stat().st_mtime_ns for r in records]
    again = claims.main(argv)  # every cell is reused: nothing is trained or embedded again
    assert [r.stat().st_mtime_ns for r in records] == before
    assert again["claims"]["d"]["widths"][0]["deltas"] == width["deltas"]


def test_a_cell_is_taken_by_one_live_worker_and_a_dead_workers_claim_lapses(tmp_path):
    import os

    import claims

    lock = tmp_path / "cell" / ".worker"
    assert claims._hold(lock) and claims._hold(lock)  # taken, then held by this process
    lock.write_text("1")  # pid 1 is alive: another worker has it
    assert not claims._hold(lock)
    lock.write_text(str(2 ** 22 + 12345))  # beyond pid_max: a worker that died
    assert claims._hold(lock) and lock.read_text() == str(os.getpid())


def test_tfmot_keeps_depthwise_kernels_float_and_the_equal_coverage_kmqat_has_its_bytes():
    """tfmot clustering lists no weights for DepthwiseConv2D: its model's bytes count them float, and the
    ``*_tfmot_layers`` KMQAT variants quantize exactly its layers (same bytes), the others every layer."""
    import types

    import claims
    import tensorflow_model_optimization as tfmot

    import tfadvq
    from tfadvq.compat import keras

    inputs = keras.Input((12, 10, 1))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(x)
    x = keras.layers.Dense(6, name="dense")(keras.layers.GlobalAveragePooling2D()(x))
    fp = keras.Model(inputs, x)
    assert claims.tfmot_bits(fp, 2) == {"conv": 2, "depthwise": None, "dense": 2}
    ctx = types.SimpleNamespace(fp=fp)
    clustered = claims.quantized(ctx, claims.Cell("tfmot_cluster", 2, 0))
    plain = tfmot.clustering.keras.strip_clustering(clustered)
    assert np.unique(plain.get_layer("depthwise").get_weights()[0]).size == 72  # untouched, float
    assert np.unique(plain.get_layer("conv").get_weights()[0]).size <= 4
    same = claims.quantized(ctx, claims.Cell("kmqat_trained_tfmot_layers", 2, 0))
    every = claims.quantized(ctx, claims.Cell("kmqat_trained", 2, 0))
    tfmot_bytes = tfadvq.model_size(plain, claims.tfmot_bits(fp, 2)).size_bytes
    assert tfadvq.model_size(same).size_bytes == tfmot_bytes
    assert tfadvq.model_size(every).size_bytes < tfmot_bytes
    assert {q.train_codebook for _, q in tfadvq.quant.api.quantized_weights(every)} == {True}
