"""1-D k-means: optimality against brute force, parity with sklearn, rows, fallbacks and errors."""
import itertools

import numpy as np
import pytest
from sklearn.cluster import KMeans

from tfadvq.errors import QuantizationError
from tfadvq.quant import kmeans1d


def brute_force_sse(values: np.ndarray, k: int) -> float:
    """Optimal SSE by trying every contiguous partition of the sorted values."""
    x = np.sort(values.astype(np.float64))
    best = np.inf
    for cuts in itertools.combinations(range(1, x.size), k - 1):
        parts = np.split(x, cuts)
        best = min(best, sum(float(((p - p.mean()) ** 2).sum()) for p in parts))
    return best


@pytest.mark.parametrize("k", [2, 3, 4])
def test_matches_brute_force_optimum(k):
    rng = np.random.default_rng(k)
    values = np.concatenate([rng.normal(0, 1, 6), rng.normal(5, 0.3, 5), rng.exponential(2, 3)])
    codebook = kmeans1d.fit(values, k)
    assert kmeans1d.squared_error(values, codebook) == pytest.approx(brute_force_sse(values, k), rel=1e-5)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_not_worse_than_sklearn_on_heavy_tailed_weights(bits):
    rng = np.random.default_rng(bits)
    values = (rng.standard_t(4, 20000) * 0.05).astype(np.float32)
    ours = kmeans1d.squared_error(values, kmeans1d.fit(values, 2 ** bits))
    km = KMeans(2 ** bits, n_init=1, random_state=0).fit(values.reshape(-1, 1))
    theirs = kmeans1d.squared_error(values, np.sort(km.cluster_centers_.ravel()))
    assert ours <= theirs * (1 + 1e-6)


def test_codebook_is_sorted_float32_and_assign_picks_nearest():
    rng = np.random.default_rng(0)
    values = rng.normal(size=1000).astype(np.float32)
    codebook = kmeans1d.fit(values, 8)
    assert codebook.dtype == np.float32 and np.all(np.diff(codebook) > 0)
    nearest = np.argmin(np.abs(values[:, None] - codebook[None, :]), axis=1)
    np.testing.assert_array_equal(kmeans1d.assign(values, codebook), nearest)


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


@pytest.mark.parametrize("bits", [0, 9, 2.5, True, "4"])
def test_check_bits_rejects_out_of_range(bits):
    with pytest.raises(QuantizationError, match="accepted: integers 1..8"):
        kmeans1d.check_bits(bits)
