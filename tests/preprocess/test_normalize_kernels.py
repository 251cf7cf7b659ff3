"""The vectorised TMM, CPM and INT kernels equal literal ports of edgeR's and scipy's per-sample
formulas bit for bit (ties, zero counts, trims, weighting), whatever the blocking or threading."""

from __future__ import annotations

import math

import dask
import numpy as np
import pytest
import scipy.special
import scipy.stats

from dqtl.kernels.stats import exact_sum, exact_sums
from dqtl.preprocess import normalize
from dqtl.preprocess.normalize import cpm, tmm_norm_factors
from dqtl.preprocess.rank_normalize import inverse_normal_transform


def _tmm_literal(obs: np.ndarray, ref: np.ndarray, n_obs: float, n_ref: float, log_ratio_trim: float,
                 sum_trim: float, do_weighting: bool, a_cutoff: float) -> float:
    """edgeR 3.40.2 ``.calcFactorTMM`` line by line: rank() with average ties, sum() correctly rounded."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_r = np.log2((obs / n_obs) / (ref / n_ref))
        abs_e = (np.log2(obs / n_obs) + np.log2(ref / n_ref)) / 2
        v = (n_obs - obs) / n_obs / obs + (n_ref - ref) / n_ref / ref
    fin = np.isfinite(log_r) & np.isfinite(abs_e) & (abs_e > a_cutoff)
    log_r, abs_e, v = log_r[fin], abs_e[fin], v[fin]
    if log_r.size == 0 or np.max(np.abs(log_r)) < 1e-6:
        return 1.0
    n = log_r.size
    lo_l = math.floor(n * log_ratio_trim) + 1
    lo_s = math.floor(n * sum_trim) + 1
    rank_r, rank_e = scipy.stats.rankdata(log_r), scipy.stats.rankdata(abs_e)
    keep = (rank_r >= lo_l) & (rank_r <= n + 1 - lo_l) & (rank_e >= lo_s) & (rank_e <= n + 1 - lo_s)
    with np.errstate(divide="ignore", invalid="ignore"):
        if do_weighting:
            num, den = math.fsum((log_r[keep] / v[keep]).tolist()), math.fsum((1 / v[keep]).tolist())
        else:
            num, den = math.fsum(log_r[keep].tolist()), float(keep.sum())
        f = num / den if den else math.nan
    return float(np.power(2.0, 0.0 if math.isnan(f) else f))


def _tmm_reference(x: np.ndarray, ref_idx: int, **kw: float | bool) -> np.ndarray:
    x = x[(x > 0).any(axis=1)].astype(np.float64)
    lib = x.sum(axis=0)
    params = (kw.get("log_ratio_trim", 0.3), kw.get("sum_trim", 0.05), kw.get("do_weighting", True),
              kw.get("a_cutoff", -1e10))
    f = np.array([_tmm_literal(x[:, j], x[:, ref_idx], lib[j], lib[ref_idx], *params)  # type: ignore[arg-type]
                  for j in range(x.shape[1])])
    return f / math.exp(math.fsum(np.log(f).tolist()) / f.size)


def _counts(seed: int, genes: int, samples: int, mean: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mu = rng.gamma(0.6, mean / 0.6, size=(genes, 1)) * rng.uniform(0.5, 2.0, size=(1, samples))
    x = rng.poisson(mu)
    x[: genes // 10] = 0  # all-zero rows
    return x


@pytest.mark.parametrize("kw", [
    {},
    {"do_weighting": False},
    {"log_ratio_trim": 0.0, "sum_trim": 0.0},
    {"log_ratio_trim": 0.45, "sum_trim": 0.3},
    {"a_cutoff": -12.0},
])
@pytest.mark.parametrize("mean", [2.0, 40.0])  # 2: mostly ties (low counts); 40: few ties
def test_tmm__equals_literal_edger_port_bit_for_bit(kw: dict, mean: float) -> None:
    x = _counts(5, 3000, 23, mean)
    got = tmm_norm_factors(x, ref_column=4, **kw)
    np.testing.assert_array_equal(got, _tmm_reference(x, 4, **kw))


def test_tmm__trim_rows_equal_average_rank_bounds() -> None:
    rng = np.random.default_rng(3)
    x = np.round(rng.standard_normal((50, 400)), 1)  # heavy ties, also at the trim bounds
    fin = rng.random(x.shape) > 0.2
    xm = np.where(fin, x, np.inf)
    n = fin.sum(axis=1)
    for trim in (0.0, 0.05, 0.3, 0.49):
        got = normalize._trim_rows(xm, n, trim)
        for i in range(x.shape[0]):
            lo = math.floor(n[i] * trim) + 1
            r = scipy.stats.rankdata(x[i, fin[i]])
            want = np.zeros(x.shape[1], dtype=bool)
            want[fin[i]] = (r >= lo) & (r <= n[i] + 1 - lo)
            np.testing.assert_array_equal(got[i], want)


def test_tmm_cpm_int__threads_and_blocks_give_identical_numbers(monkeypatch) -> None:
    x = _counts(7, 300, 1500, 30.0)  # wide enough for several threads and slabs
    with dask.config.set(num_workers=1):
        f1, c1 = tmm_norm_factors(x), cpm(x)
        z1 = inverse_normal_transform(c1.T, axis=0)
    monkeypatch.setattr(normalize, "_SLAB_COLUMNS", 100)
    monkeypatch.setattr(normalize, "_TMM_SAMPLES", 3)
    monkeypatch.setattr(normalize, "_THREAD_COLUMNS", 200)
    monkeypatch.setattr("dqtl.compute.VALUES_PER_THREAD", 10_000)
    calls = []
    import concurrent.futures

    real = concurrent.futures.ThreadPoolExecutor
    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", lambda **kw: calls.append(kw) or real(**kw))
    with dask.config.set(num_workers=3):
        f2, c2 = tmm_norm_factors(x), cpm(x)
        z2 = inverse_normal_transform(c2.T, axis=0)
        np.testing.assert_array_equal(cpm(x, log=True), cpm(x[:, :], log=True))
    assert [kw["max_workers"] for kw in calls] == [3] * 7  # lib, q75, TMM; three cpm calls; the INT
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(z1, z2)
    np.testing.assert_array_equal(c1, x.astype(np.float64) * (1e6 / x.sum(axis=0)))


def test_column_quantile7__is_r_type_7() -> None:
    rng = np.random.default_rng(4)
    for rows, dtype in ((101, np.int64), (8, np.float64), (1, np.int64)):
        b = (rng.poisson(5.0, size=(rows, 300)) if dtype == np.int64 else rng.standard_normal((rows, 300)))
        got = normalize._column_quantile7(b, 0.75)
        srt = np.sort(b.astype(np.float64), axis=0)
        index = 1 + (rows - 1) * 0.75
        lo, hi, h = math.floor(index), math.ceil(index), index - math.floor(index)
        want = np.where(srt[hi - 1] != srt[lo - 1], (1 - h) * srt[lo - 1] + h * srt[hi - 1], srt[lo - 1])
        np.testing.assert_array_equal(got, want)


def test_int__rows_with_many_ties_and_missing_equal_scipy() -> None:
    rng = np.random.default_rng(6)
    y = rng.poisson(1.5, size=(200, 300)).astype(np.float64)  # long runs of ties, at both ends
    y[:50] = rng.standard_normal((50, 300))  # untied rows
    y[190:, :40] = np.nan
    got = inverse_normal_transform(y, axis=1, offset="blom")
    for i in range(y.shape[0]):
        ok = ~np.isnan(y[i])
        want = scipy.special.ndtri((scipy.stats.rankdata(y[i, ok]) - 0.375) / (ok.sum() + 0.25))
        np.testing.assert_array_equal(got[i, ok], want)
        assert np.isnan(got[i, ~ok]).all()


def test_exact_sums__equal_fsum() -> None:
    rng = np.random.default_rng(8)
    for trial in range(300):
        n = int(rng.integers(0, 500))
        x = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n) if trial % 2 else rng.standard_normal(n)
        if trial % 5 == 0:
            x = np.concatenate([x, -x, [1e-310, 1e16, 1.0, -1e16]])
        groups = rng.integers(0, 4, x.size)
        got = exact_sums(x, groups, 5)
        for k in range(5):
            assert got[k] == math.fsum(x[groups == k].tolist())
    assert exact_sum(np.array([1e308, 1e308])) == math.inf
    assert exact_sum(np.array([])) == 0.0
