"""EER and minDCF against an independent computation from sklearn's ROC, edge cases, DET plots."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq
from sklearn.metrics import roc_curve

from tfadvq.errors import DataError
from tfadvq.metrics import accept, compute_eer, compute_min_dcf, error_rates, false_accept_rate


def reference_eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """The classic recipe: root of ``1 - x - tpr(x)`` on the linearly interpolated ROC."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return brentq(lambda x: 1.0 - x - np.interp(x, fpr, tpr), 0.0, 1.0, xtol=1e-12)


def reference_min_dcf(scores, labels, p_target, c_miss=1.0, c_fa=1.0) -> float:
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    cost = c_miss * p_target * (1 - tpr) + c_fa * (1 - p_target) * fpr
    return cost.min() / min(c_miss * p_target, c_fa * (1 - p_target))


def random_trials(seed: int, n: int, separation: float, rounding: int | None = None):
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < rng.uniform(0.05, 0.5)
    labels[:2] = [True, False]
    scores = rng.normal(size=n) + separation * labels
    return (np.round(scores, rounding) if rounding is not None else scores), labels.astype(int)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("rounding", [None, 1])  # rounding to 0.1 makes many ties across classes
def test_eer_and_min_dcf_match_sklearn_roc(seed, rounding):
    scores, labels = random_trials(seed, 50 + 97 * seed, separation=seed % 4, rounding=rounding)
    eer, threshold = compute_eer(scores, labels)
    assert eer == pytest.approx(100 * reference_eer(scores, labels), abs=1e-7)  # percent
    for p in (0.01, 0.05):
        assert compute_min_dcf(scores, labels, p) == pytest.approx(reference_min_dcf(scores, labels, p))
    assert compute_min_dcf(scores, labels, 0.05, c_miss=10, c_fa=1) == pytest.approx(
        reference_min_dcf(scores, labels, 0.05, 10, 1))
    # The threshold is a real operating point whose error rates bracket the EER.
    accepted = scores >= threshold
    far, frr = accepted[labels == 0].mean(), (~accepted[labels == 1]).mean()
    assert min(far, frr) <= eer / 100 + 1e-12 and max(far, frr) >= eer / 100 - 1e-12


def test_error_rates_are_monotone_and_end_at_reject_all():
    scores, labels = random_trials(0, 300, 1.0, rounding=1)
    far, frr, thresholds = error_rates(scores, labels)
    assert far[0] == 1.0 and frr[0] == 0.0 and far[-1] == 0.0 and frr[-1] == 1.0
    assert np.all(np.diff(far) <= 0) and np.all(np.diff(frr) >= 0) and np.all(np.diff(thresholds) > 0)
    assert thresholds.size == np.unique(scores).size + 1


def test_every_rate_counts_by_the_one_accept_rule():
    """FAR/FRR of error_rates, false_accept_rate and accept agree at every operating point (ties accepted)."""
    scores, labels = random_trials(3, 200, 1.0, rounding=1)
    far, frr, thresholds = error_rates(scores, labels)
    for t, expected_far, expected_frr in zip(thresholds, far, frr):
        accepted = accept(scores, t)
        assert false_accept_rate(scores, labels, t) == pytest.approx(expected_far)
        assert np.mean(~accepted[labels == 1]) == pytest.approx(expected_frr)
    assert accept(0.5, 0.5) and not accept(0.4999, 0.5)


def test_perfect_separation_has_zero_error_and_a_separating_threshold():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    labels = np.array([0, 0, 0, 1, 1])
    eer, threshold = compute_eer(scores, labels)
    assert eer == 0.0 and 0.3 < threshold <= 0.7
    assert compute_min_dcf(scores, labels, 0.01) == 0.0


def test_reversed_scores_are_all_wrong():
    assert compute_eer([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1])[0] == 100.0


def test_all_equal_scores_are_chance():
    labels = np.array([1, 0, 0, 1, 0, 0, 0])
    assert compute_eer(np.full(7, 0.5), labels)[0] == pytest.approx(50.0)
    assert compute_min_dcf(np.full(7, 0.5), labels, 0.01) == pytest.approx(1.0)


def test_ties_across_classes_move_together():
    # target and non-target tied at 0.5: either both accepted or both rejected -> EER 0.5
    assert compute_eer([0.5, 0.5], [1, 0])[0] == pytest.approx(50.0)
    eer, _ = compute_eer([0.1, 0.5, 0.5, 0.9], [0, 1, 0, 1])
    assert eer == pytest.approx(100 * reference_eer(np.array([0.1, 0.5, 0.5, 0.9]), np.array([0, 1, 0, 1])))
    assert eer == pytest.approx(100 * 0.5 * 0.5)  # crossing halfway between (FAR .5, FRR 0) and (0, .5)


def test_one_trial_per_class():
    assert compute_eer([0.9, 0.1], [1, 0]) == (0.0, 0.9)
    assert compute_eer([0.1, 0.9], [1, 0])[0] == 100.0


@pytest.mark.parametrize("scores, labels, message", [
    ([], [], "empty"),
    ([0.1, 0.2], [1], "length"),
    ([0.1, np.nan, 0.3], [1, 0, 1], "NaN"),
    ([0.1, np.inf], [1, 0], "NaN or infinite"),
    ([0.1, 0.2], [1, 1], "only targets"),
    ([0.1, 0.2], [0, 0], "only non-targets"),
    ([0.1, 0.2], [1, 2], "labels must be 0"),
])
def test_bad_input_raises_data_error(scores, labels, message):
    with pytest.raises(DataError, match=message):
        compute_eer(scores, labels)
    with pytest.raises(DataError, match=message):
        compute_min_dcf(scores, labels, 0.05)


def test_bad_cost_parameters_raise():
    with pytest.raises(DataError, match="p_target"):
        compute_min_dcf([0.1, 0.2], [0, 1], 1.5)


def test_min_dcf_point_is_a_real_operating_point():
    from tfadvq.metrics import min_dcf_point

    scores, labels = random_trials(5, 400, 2.0)
    cost, far, frr, threshold = min_dcf_point(scores, labels, 0.05)
    accepted = scores >= threshold
    assert far == pytest.approx(accepted[labels == 0].mean())
    assert frr == pytest.approx((~accepted[labels == 1]).mean())
    assert cost == pytest.approx((0.05 * frr + 0.95 * far) / 0.05)


def test_det_plot_is_a_png(tmp_path):
    from tfadvq.plots import plot_det

    scores, labels = random_trials(2, 500, 2.0)
    path = plot_det(scores, labels, tmp_path / "sub" / "det.png", title="random")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_det_plot_of_several_systems_draws_each_in_its_own_colour(tmp_path):
    from matplotlib.image import imread
    from matplotlib.colors import to_rgb

    from tfadvq.plots import plot_dets

    curves = {"fp32": random_trials(3, 400, 3.0), "2-bit": random_trials(4, 400, 1.0)}
    both = imread(plot_dets(curves, tmp_path / "both.png", title="fp32 vs 2-bit"))[..., :3]
    one = imread(plot_dets({"fp32": curves["fp32"]}, tmp_path / "one.png"))[..., :3]

    def pixels_of(image, color):
        return int(np.sum(np.all(np.abs(image - np.array(to_rgb(color))) < 0.02, axis=-1)))

    assert pixels_of(both, "C0") > 20 and pixels_of(both, "C1") > 20  # anti-aliased lines
    assert pixels_of(one, "C1") == 0
    with pytest.raises(DataError, match="no curves"):
        plot_dets({}, tmp_path / "none.png")


def test_speaker_bootstrap_resamples_whole_groups():
    """Two speakers, each perfectly separated on its own, at different score levels: a draw of one
    speaker twice has EER 0, a draw of both has the pooled EER 0.5 (by hand: at threshold 0.5 one
    of two targets is missed and one of two non-targets accepted) -- nothing else can occur."""
    from tfadvq.metrics import eer_ci95

    scores = np.array([0.9, 0.5, 0.4, 0.0])
    labels = np.array([1, 0, 1, 0])
    speakers = np.array(["a", "a", "b", "b"])
    assert compute_eer(scores, labels)[0] == pytest.approx(50.0)  # percent
    assert eer_ci95(scores, labels, resamples=400, groups=speakers) == (0.0, 50.0)
    # Resampling trials instead breaks the speakers apart: draws such as {0.4 target, 0.5 non-target}
    # (EER 100 %) appear, so the trial-level interval reaches past 50 %.
    assert eer_ci95(scores, labels, resamples=400)[1] > 50.0
    with pytest.raises(DataError, match="one group per trial"):
        eer_ci95(scores, labels, groups=speakers[:3])


def speaker_trials(seed: int, speakers: int = 60, per_speaker: int = 120, separation: float = 2.0):
    """Trials grouped by speaker, with a per-speaker offset so the trials of one speaker are correlated."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(speakers), per_speaker)
    labels = (rng.random(groups.size) < 0.2).astype(int)
    shared = rng.normal(size=(speakers,))[groups]  # the speaker's difficulty, common to every system
    return groups, labels, shared


def test_bootstrap_draws_equal_explicit_resampling_of_speakers():
    """A draw's EER/minDCF equal compute_eer/compute_min_dcf on the trials it repeats (ties included)."""
    from tfadvq.metrics import _draws, _System

    groups, labels, shared = speaker_trials(3, speakers=30, per_speaker=40)
    scores = np.round(np.random.default_rng(4).normal(size=labels.size) + 1.5 * labels + 0.5 * shared, 1)
    (_, counts), = _draws(groups, 25, seed=5)
    eer, dcf = _System(scores, labels.astype(bool), groups, 30).metrics(counts, 0.01)
    for r in range(25):
        repeated = np.repeat(np.arange(labels.size), counts[r, groups])
        assert eer[r] == pytest.approx(compute_eer(scores[repeated], labels[repeated])[0], abs=1e-9)
        assert dcf[r] == pytest.approx(compute_min_dcf(scores[repeated], labels[repeated]), abs=1e-9)


def test_paired_bootstrap_resolves_a_clearly_better_system():
    from tfadvq.metrics import paired_bootstrap

    groups, labels, shared = speaker_trials(0)
    rng = np.random.default_rng(1)
    better = rng.normal(size=labels.size) + 2.5 * labels + shared
    worse = rng.normal(size=labels.size) + 1.5 * labels + shared
    diff = paired_bootstrap(better, worse, labels, groups, resamples=300)
    assert diff.eer.value == pytest.approx(compute_eer(better, labels)[0] - compute_eer(worse, labels)[0])
    assert diff.eer.high < 0 and diff.eer.excludes_zero
    assert diff.min_dcf.high < 0
    assert diff.groups == 60 and diff.resamples == 300


def test_paired_bootstrap_of_equally_good_systems_contains_zero_and_is_narrower_than_unpaired():
    from tfadvq.metrics import bootstrap, paired_bootstrap

    groups, labels, shared = speaker_trials(2)
    rng = np.random.default_rng(3)
    clean = 2.0 * labels + 2.0 * shared
    a = clean + 0.5 * rng.normal(size=labels.size)
    b = clean + 0.5 * rng.normal(size=labels.size)
    diff = paired_bootstrap(a, b, labels, groups, resamples=300)
    assert diff.eer.low < 0 < diff.eer.high and not diff.eer.excludes_zero
    # the speakers that are hard for A are hard for B: pairing removes that shared part
    single = bootstrap(a, labels, groups, resamples=300).eer
    assert diff.eer.high - diff.eer.low < 0.5 * (single.high - single.low)
    same = paired_bootstrap(a, a, labels, groups, resamples=50)
    assert (same.eer.low, same.eer.value, same.eer.high) == (0.0, 0.0, 0.0)


def test_paired_bootstrap_over_seed_rows_averages_them_and_widens_with_seed_noise():
    from tfadvq.metrics import paired_bootstrap

    groups, labels, shared = speaker_trials(4)
    rng = np.random.default_rng(5)
    base = 2.0 * labels + shared
    a = np.stack([base + rng.normal(scale=s, size=labels.size) for s in (0.6, 1.0, 1.4)])  # seeds that differ
    b = np.stack([base + rng.normal(scale=1.0, size=labels.size) for _ in range(3)])
    diff = paired_bootstrap(a, b, labels, groups, resamples=300)
    assert diff.systems == (3, 3)
    mean = np.mean([compute_eer(r, labels)[0] for r in a]) - np.mean([compute_eer(r, labels)[0] for r in b])
    assert diff.eer.value == pytest.approx(mean)
    first = paired_bootstrap(a[:1], b[:1], labels, groups, resamples=300)
    assert diff.eer.high - diff.eer.low > first.eer.high - first.eer.low  # seed resampling adds its spread
    with pytest.raises(DataError, match=r"scores_b has shape \(3, 10\)"):
        paired_bootstrap(a, b[:, :10], labels, groups)


def test_bootstrap_reports_min_dcf_and_refuses_a_trial_table_too_large():
    from tfadvq import metrics

    groups, labels, shared = speaker_trials(6)
    scores = np.random.default_rng(7).normal(size=labels.size) + 2 * labels + shared
    result = metrics.bootstrap(scores, labels, groups, resamples=200)
    assert result.eer.low <= result.eer.value <= result.eer.high
    assert result.min_dcf.value == pytest.approx(compute_min_dcf(scores, labels))
    assert result.min_dcf.low <= result.min_dcf.value <= result.min_dcf.high
    assert metrics.eer_ci95(scores, labels, 200, groups=groups) == (result.eer.low, result.eer.high)
    with pytest.raises(DataError, match="resample groups"):
        metrics.bootstrap(np.arange(20000.0), np.arange(20000) % 2, resamples=10)
