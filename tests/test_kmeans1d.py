"""1-D k-means: optimality against brute force, not worse than sklearn on real-looking weights
(heavy tails, outliers, duplicates), weighted k-means, rows, fallbacks and errors."""
import itertools

import numpy as np
import pytest
from sklearn.cluster import KMeans

from tfadvq.errors import QuantizationError
from tfadvq.quant import kmeans1d

N = 40960  # the size the issue measured on
KS = [2, 3, 4, 8, 16, 64, 256]
REL = 1e-9  # ours <= sklearn * (1 + REL): both are float sums of the same squares


def tensor(kind: str, n: int = N, seed: int = 0) -> np.ndarray:
    """float32 weight-like tensors: the issue's heavy-tailed ones, and exact duplicates."""
    rng = np.random.default_rng(seed)
    if kind == "normal":
        v = rng.normal(0, 0.05, n)
    elif kind == "student_t2":
        v = rng.standard_t(2, n) * 0.05
    elif kind == "outliers":  # a layer fed unnormalised inputs: a few values far out
        v = np.concatenate([rng.normal(0, 0.02, n - 60), rng.normal(0, 2, 60)])
    elif kind == "pruned":  # many exact duplicates: half the weights exactly zero
        v = np.where(rng.random(n) < 0.5, 0.0, rng.normal(0, 0.05, n))
    elif kind == "rounded":  # ~400 distinct values, each repeated ~100 times
        v = np.round(rng.normal(0, 0.05, n) * 1024) / 1024
    elif kind == "few_distinct":  # 12 distinct values: fewer than k from k = 16 on
        v = rng.choice(rng.normal(0, 0.05, 12), n)
    else:
        raise ValueError(kind)
    return v.astype(np.float32)


def fisher_like(n: int = N, seed: int = 1) -> np.ndarray:
    """Non-negative, heavy-tailed importances with exact zeros (squared gradients of dead units)."""
    rng = np.random.default_rng(seed)
    f = rng.normal(size=n) ** 2 * rng.lognormal(0, 1, n)
    f[rng.random(n) < 0.2] = 0.0
    return f


def sse(values: np.ndarray, codebook: np.ndarray, weights: np.ndarray | None = None) -> float:
    """(Weighted) squared error to the nearest centroid, independent of kmeans1d, in float64."""
    c = np.sort(np.asarray(codebook, dtype=np.float64))
    x = np.asarray(values, dtype=np.float64)
    i = np.clip(np.searchsorted(c, x), 1, c.size - 1)
    err = np.minimum((x - c[i - 1]) ** 2, (x - c[i]) ** 2)
    return float(np.sum(err if weights is None else err * weights))


def sklearn_codebook(values: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """sklearn KMeans (k-means++, n_init=1), as a stored float32 codebook like ours."""
    km = KMeans(k, n_init=1, random_state=0).fit(values.reshape(-1, 1).astype(np.float64), sample_weight=weights)
    return np.sort(km.cluster_centers_.ravel()).astype(np.float32)


def brute_force_sse(values: np.ndarray, k: int, weights: np.ndarray | None = None) -> float:
    """Optimal (weighted) SSE by trying every contiguous partition of the sorted values."""
    order = np.argsort(values)
    x = values[order].astype(np.float64)
    f = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)[order]
    best = np.inf
    for cuts in itertools.combinations(range(1, x.size), k - 1):
        total = 0.0
        for p, q in zip(np.split(x, cuts), np.split(f, cuts)):
            mean = np.sum(p * q) / np.sum(q) if np.sum(q) > 0 else 0.0
            total += float(np.sum(q * (p - mean) ** 2))
        best = min(best, total)
    return best


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_brute_force_optimum(k, weighted):
    rng = np.random.default_rng(k)
    values = np.concatenate([rng.normal(0, 1, 6), rng.normal(5, 0.3, 5), rng.exponential(2, 3)])
    weights = rng.exponential(size=values.size) if weighted else None
    codebook = kmeans1d.fit(values, k, weights=weights)
    assert sse(values, codebook, weights) == pytest.approx(brute_force_sse(values, k, weights), rel=1e-5)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # few_distinct, k > 12
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("kind", ["normal", "student_t2", "outliers", "pruned", "rounded", "few_distinct"])
def test_not_worse_than_sklearn(kind, k):
    values = tensor(kind)
    ours = sse(values, kmeans1d.fit(values, k))
    theirs = sse(values, sklearn_codebook(values, k))
    assert ours <= theirs * (1 + REL), f"{kind} k={k}: ours/sklearn = {ours / theirs:.6g}"


@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("kind", ["normal", "student_t2", "outliers", "pruned"])
def test_weighted_not_worse_than_sklearn_sample_weight(kind, k):
    values, weights = tensor(kind), fisher_like()
    ours = sse(values, kmeans1d.fit(values, k, weights=weights), weights)
    theirs = sse(values, sklearn_codebook(values, k, weights), weights)
    assert ours <= theirs * (1 + REL), f"{kind} k={k}: ours/sklearn = {ours / theirs:.6g}"


@pytest.mark.parametrize("kind", ["student_t2", "outliers"])
def test_grid_is_near_the_exact_optimum_on_heavy_tails(kind):
    """The companded grid vs the exact DP on every value (bins >= distinct values)."""
    values = tensor(kind, n=3000)
    grid = sse(values, kmeans1d.fit(values, 16))
    exact = sse(values, kmeans1d.fit(values, 16, bins=values.size))
    assert exact <= grid <= exact * 1.01


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_uniform_weights_give_the_unweighted_result(scale):
    values = tensor("outliers")
    for k in (4, 64):
        plain = kmeans1d.fit(values, k)
        weighted = kmeans1d.fit(values, k, weights=np.full(values.shape, scale))
        np.testing.assert_allclose(weighted, plain, rtol=1e-6, atol=1e-9)
        assert sse(values, weighted) == pytest.approx(sse(values, plain), rel=REL)


def test_integer_weights_equal_repeated_values():
    rng = np.random.default_rng(3)
    values = rng.standard_t(2, 300)
    counts = rng.integers(1, 6, values.size)
    weighted = kmeans1d.fit(values, 8, weights=counts)
    repeated = kmeans1d.fit(np.repeat(values, counts), 8)
    assert sse(values, weighted, counts) == pytest.approx(sse(values, repeated, counts), rel=REL)


def test_zero_importance_values_do_not_matter():
    rng = np.random.default_rng(4)
    values = rng.normal(size=400)
    weights = rng.exponential(size=400)
    weights[::3] = 0.0
    kept = weights > 0
    ours = kmeans1d.fit(values, 8, weights=weights)
    without = kmeans1d.fit(values[kept], 8, weights=weights[kept])
    assert sse(values, ours, weights) == pytest.approx(sse(values, without, weights), rel=REL)


def test_all_zero_importances_fit_unweighted():
    values = tensor("normal", n=2000)
    np.testing.assert_array_equal(kmeans1d.fit(values, 8, weights=np.zeros(values.shape)),
                                  kmeans1d.fit(values, 8))


def test_weighted_rows_equal_independent_weighted_fits():
    rng = np.random.default_rng(5)
    rows = rng.standard_t(3, size=(4, 900)) * np.arange(1, 5)[:, None]
    weights = rng.exponential(size=rows.shape)
    joint = kmeans1d.fit_rows(rows, 8, weights=weights, bins=1024)
    for r in range(4):
        alone = kmeans1d.fit(rows[r], 8, weights=weights[r], bins=1024)
        assert sse(rows[r], joint[r], weights[r]) == pytest.approx(sse(rows[r], alone, weights[r]), rel=1e-9)


@pytest.mark.parametrize("kind", ["outliers", "pruned", "few_distinct"])
def test_no_floating_point_warnings(kind):
    """Empty cells, zero importances and masked lattice pairs divide by nothing."""
    values, weights = tensor(kind, n=5000), fisher_like(5000)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for k in (2, 16, 64):
            kmeans1d.fit(values, k)
            kmeans1d.fit(values, k, weights=weights)
            kmeans1d.fit_rows(values.reshape(5, -1), k, weights=weights.reshape(5, -1))


def test_codebook_is_sorted_float32_and_assign_picks_nearest():
    rng = np.random.default_rng(0)
    values = rng.normal(size=1000).astype(np.float32)
    codebook = kmeans1d.fit(values, 8)
    assert codebook.dtype == np.float32 and np.all(np.diff(codebook) > 0)
    nearest = np.argmin(np.abs(values[:, None] - codebook[None, :]), axis=1)
    np.testing.assert_array_equal(kmeans1d.assign(values, codebook), nearest)


def test_squared_error_matches_the_independent_one():
    values, weights = tensor("student_t2", n=5000), fisher_like(5000)
    codebook = kmeans1d.fit(values, 16)
    assert kmeans1d.squared_error(values, codebook) == pytest.approx(sse(values, codebook), rel=1e-9)
    assert kmeans1d.squared_error(values, codebook, weights) == pytest.approx(sse(values, codebook, weights),
                                                                             rel=1e-9)


def test_rows_equal_independent_fits():
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(5, 300)) * np.arange(1, 6)[:, None] + np.arange(5)[:, None]
    joint = kmeans1d.fit_rows(rows, 4, bins=4096)
    for r in range(5):
        alone = kmeans1d.fit(rows[r], 4, bins=4096)
        assert kmeans1d.squared_error(rows[r], joint[r]) == pytest.approx(
            kmeans1d.squared_error(rows[r], alone), rel=1e-6)
    indices = kmeans1d.assign_rows(rows, joint)
    for r in range(5):
        np.testing.assert_array_equal(indices[r], kmeans1d.assign(rows[r], joint[r]))


def test_rows_with_heavy_tails_and_duplicates_mixed():
    """Per-channel: an exact (few distinct values) row beside grid rows, each as good as alone."""
    rows = np.stack([tensor("outliers", 3000, 1), tensor("few_distinct", 3000, 2), tensor("rounded", 3000, 3)])
    joint = kmeans1d.fit_rows(rows, 16, bins=256)
    assert sse(rows[1], joint[1]) == 0.0
    for r in (0, 2):
        alone = kmeans1d.fit(rows[r], 16, bins=256)
        assert sse(rows[r], joint[r]) == pytest.approx(sse(rows[r], alone), rel=1e-6)


def test_warm_start_never_worse_than_its_start():
    rng = np.random.default_rng(2)
    values = rng.laplace(size=5000)
    start = np.linspace(-3, 3, 16)
    refit = kmeans1d.fit(values, 16, init=start)
    assert kmeans1d.squared_error(values, refit) <= kmeans1d.squared_error(values, start)


def test_fewer_distinct_values_than_k_gives_those_values_padded():
    values = np.array([0.5, -1.0, 0.5, 2.0, -1.0], dtype=np.float32)
    codebook = kmeans1d.fit(values, 8)
    np.testing.assert_array_equal(codebook, [-1.0, 0.5, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    assert kmeans1d.squared_error(values, codebook) == 0.0


@pytest.mark.parametrize("bad, message", [
    (np.array([1.0, np.nan, 2.0]), "NaN/inf"),
    (np.array([1.0, np.inf, 2.0]), "NaN/inf"),
    (np.full(10, 0.25), "all 10 values equal"),
])
def test_bad_values_raise_naming_the_tensor(bad, message):
    with pytest.raises(QuantizationError, match=f"conv7/kernel.*{message}"):
        kmeans1d.fit(bad, 4, name="conv7/kernel")


@pytest.mark.parametrize("weights, message", [
    (np.array([1.0, -0.5, 2.0, 1.0]), "1 importance.*negative.*accepted: finite values >= 0"),
    (np.array([1.0, np.nan, 2.0, 1.0]), "1 importance.*NaN"),
    (np.ones(5), r"shape \(5,\).*accepted: the values' shape \(4,\)"),
])
def test_bad_importances_raise_naming_the_tensor(weights, message):
    with pytest.raises(QuantizationError, match=f"conv7/kernel.*{message}"):
        kmeans1d.fit(np.array([0.0, 0.1, 1.0, 1.1]), 2, name="conv7/kernel", weights=weights)


def test_too_few_bins_raise():
    with pytest.raises(QuantizationError, match="bins=8 .* k=16.*accepted: bins >= k"):
        kmeans1d.fit(np.arange(100.0), 16, bins=8)


@pytest.mark.parametrize("bits", [0, 9, 2.5, True, "4"])
def test_check_bits_rejects_out_of_range(bits):
    from tfadvq.quant.bits import check_bits

    with pytest.raises(QuantizationError, match="accepted: integers 1..8"):
        check_bits(bits)
