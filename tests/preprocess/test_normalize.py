"""Tests of dqtl.preprocess.normalize against edgeR 3.40.2 outputs, scipy and invariants."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import xarray as xr

from dqtl.errors import InputError
from dqtl.preprocess.normalize import cpm, effective_lib_size, tmm_norm_factors
from dqtl.preprocess.rank_normalize import INT_OFFSETS, inverse_normal_transform, quantile_normalize

REF = Path(__file__).resolve().parents[1] / "reference" / "edger_tmm"
CASES = ["small_200x6", "nb_5000x100_de", "many_zero_rows_1000x8", "low_counts_ties_100x4"]
RTOL = 1e-10


def _read_tsv(path: Path, index: str) -> pd.DataFrame:
    """Read a reference TSV exactly: every number parsed by Python float() ("%.17g" round trip)."""
    raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False).set_index(index)
    return raw.map(float)


def _counts(case: str) -> pd.DataFrame:
    return pd.read_csv(REF / case / "counts.tsv", sep="\t").set_index("gene_id")


def _case_json(case: str) -> dict:
    return json.loads((REF / case / "case.json").read_text())


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return _counts("small_200x6")


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    return _counts("nb_5000x100_de")


# ------------------------------------------------------------------------------------ TMM vs edgeR
@pytest.mark.parametrize("case", CASES)
def test_tmm_norm_factors__matches_edger(case: str) -> None:
    counts = _counts(case)
    expected = _read_tsv(REF / case / "expected.tsv", "sample")
    f = tmm_norm_factors(counts)
    assert isinstance(f, pd.Series) and list(f.index) == list(expected.index)
    np.testing.assert_allclose(f.to_numpy(), expected["norm_factor"].to_numpy(), rtol=RTOL, atol=0)
    eff = effective_lib_size(counts, f)
    np.testing.assert_allclose(eff.to_numpy(), expected["effective_lib_size"].to_numpy(), rtol=RTOL, atol=0)
    np.testing.assert_array_equal(counts.sum(axis=0).to_numpy(dtype=float), expected["lib_size"].to_numpy())
    # the reference sample edgeR chose gives the same factors when passed explicitly
    ref = _case_json(case)["ref_column_1based"] - 1
    np.testing.assert_array_equal(tmm_norm_factors(counts, ref_column=ref).to_numpy(), f.to_numpy())
    assert _case_json(case)["n_all_zero_rows"] == int((counts.to_numpy() == 0).all(axis=1).sum())


def test_cpm__matches_edger(small: pd.DataFrame) -> None:
    f = tmm_norm_factors(small)
    want = _read_tsv(REF / "small_200x6" / "cpm.tsv", "gene_id")
    got = cpm(small, norm_factors=f)
    assert isinstance(got, pd.DataFrame) and got.index.equals(want.index)
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12, atol=0)
    want_log = _read_tsv(REF / "small_200x6" / "cpm_log2_prior2.tsv", "gene_id")
    got_log = cpm(small, norm_factors=f, log=True, prior_count=2)
    np.testing.assert_allclose(got_log.to_numpy(), want_log.to_numpy(), rtol=1e-12, atol=1e-12)


def test_cpm__log_formula_of_reference_readme(small: pd.DataFrame) -> None:
    f = tmm_norm_factors(small).to_numpy()
    e = small.sum(axis=0).to_numpy(dtype=float) * f
    pc = 2 * e / e.mean()
    want = np.log2((small.to_numpy() + pc) / (e + 2 * pc) * 1e6)
    np.testing.assert_allclose(cpm(small.to_numpy(), norm_factors=f, log=True), want, rtol=1e-13)


# ------------------------------------------------------------------------- containers and dask
def test_tmm_norm_factors__containers_give_identical_numbers(big: pd.DataFrame) -> None:
    values = big.to_numpy()
    want = tmm_norm_factors(values)
    assert isinstance(want, np.ndarray) and want.shape == (big.shape[1],)
    np.testing.assert_array_equal(tmm_norm_factors(big).to_numpy(), want)
    np.testing.assert_array_equal(tmm_norm_factors(da.from_array(values, chunks=(701, 13))), want)
    arr = xr.DataArray(values.T, dims=("samples", "phenotypes"),
                       coords={"samples": big.columns.to_numpy(), "phenotypes": big.index.to_numpy()})
    for x in (arr, arr.chunk({"samples": 9, "phenotypes": 1200})):
        got = tmm_norm_factors(x)
        assert isinstance(got, xr.DataArray) and got.dims == ("samples",)
        assert list(got["samples"].values) == list(big.columns)
        np.testing.assert_array_equal(got.to_numpy(), want)


def test_tmm_norm_factors__dask_non_integer_counts_identical(big: pd.DataFrame) -> None:
    values = big.to_numpy()[:800, :30] * 1.37 + 0.01
    want = tmm_norm_factors(values)
    np.testing.assert_array_equal(tmm_norm_factors(da.from_array(values, chunks=(97, 7))), want)
    np.testing.assert_array_equal(effective_lib_size(da.from_array(values, chunks=(97, 7)), want),
                                  effective_lib_size(values, want))


def test_tmm_norm_factors__dask_with_given_lib_size_and_ref(small: pd.DataFrame) -> None:
    values = small.to_numpy()
    lib = values.sum(axis=0) * 1.1
    want = tmm_norm_factors(values, lib_size=lib, ref_column=4)
    got = tmm_norm_factors(da.from_array(values, chunks=(50, 4)), lib_size=lib, ref_column=4)
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(want, tmm_norm_factors(values, ref_column=4))


def test_tmm_norm_factors__gene_order_invariant_exactly(small: pd.DataFrame) -> None:
    perm = np.random.default_rng(3).permutation(small.shape[0])
    np.testing.assert_array_equal(tmm_norm_factors(small.iloc[perm]).to_numpy(),
                                  tmm_norm_factors(small).to_numpy())


def test_cpm__dask_lazy_and_identical(big: pd.DataFrame) -> None:
    values = big.to_numpy()[:, :40]
    f = tmm_norm_factors(values)
    x = da.from_array(values, chunks=(900, 11))
    for log in (False, True):
        lazy = cpm(x, norm_factors=f, log=log)
        assert isinstance(lazy, da.Array)
        np.testing.assert_array_equal(lazy.compute(), cpm(values, norm_factors=f, log=log))
    arr = xr.DataArray(values, dims=("phenotypes", "samples")).chunk({"samples": 7})
    out = cpm(arr, lib_size=values.sum(axis=0) + 5.0)
    assert isinstance(out, xr.DataArray) and out.dims == arr.dims
    np.testing.assert_array_equal(out.to_numpy(), cpm(values, lib_size=values.sum(axis=0) + 5.0))


def test_cpm__dask_bad_counts_raise_at_compute() -> None:
    x = da.from_array(np.array([[1.0, -2.0], [3.0, 4.0]]), chunks=1)
    lazy = cpm(x)
    with pytest.raises(InputError, match="non-negative"):
        lazy.compute()


# --------------------------------------------------------------------------- edge cases
def test_tmm_norm_factors__single_sample_is_one() -> None:
    np.testing.assert_array_equal(tmm_norm_factors(np.array([[3], [0], [5]])), [1.0])


def test_tmm_norm_factors__all_zero_counts_are_one() -> None:
    np.testing.assert_array_equal(tmm_norm_factors(np.zeros((4, 3), dtype=int)), np.ones(3))


def test_tmm_norm_factors__zero_library_raises_without_ref(small: pd.DataFrame) -> None:
    counts = small.copy()
    counts["empty"] = 0
    with pytest.raises(InputError, match=r"library size 0 \('empty'\).*ref_column"):
        tmm_norm_factors(counts)


def test_tmm_norm_factors__zero_library_with_ref_gets_factor_one(small: pd.DataFrame, caplog) -> None:
    counts = small.copy()
    counts.insert(2, "empty", 0)
    with caplog.at_level(logging.WARNING, logger="dqtl.preprocess.normalize"):
        f_all = tmm_norm_factors(counts, ref_column="sample_002")
    assert "library size 0" in caplog.text
    f_sub = tmm_norm_factors(small, ref_column="sample_002")
    # edgeR: raw factor of the empty sample is 1, the reference's raw factor is 1
    np.testing.assert_allclose((f_all / f_all["empty"]).drop("empty").to_numpy(),
                               (f_sub / f_sub["sample_002"]).to_numpy(), rtol=1e-14)
    assert math.isclose(float(np.prod(f_all.to_numpy())), 1.0, rel_tol=1e-12)


def test_tmm_norm_factors__zero_upper_quartiles_use_sqrt_reference() -> None:
    rng = np.random.default_rng(7)
    counts = np.zeros((1020, 5), dtype=np.int64)
    counts[:20] = rng.poisson(30 * np.array([1.0, 1.5, 0.7, 3.0, 1.2]), size=(20, 5))
    counts[np.arange(20, 1020), rng.integers(0, 5, size=1000)] = rng.integers(1, 4, size=1000)
    assert np.all(np.quantile(counts, 0.75, axis=0) == 0)  # every f75 is 0: sqrt-sum rule
    expected_ref = int(np.argmax(np.sqrt(counts[(counts > 0).any(axis=1)]).sum(axis=0)))
    f = tmm_norm_factors(counts)
    np.testing.assert_array_equal(f, tmm_norm_factors(counts, ref_column=expected_ref))
    assert not np.array_equal(f, tmm_norm_factors(counts, ref_column=(expected_ref + 1) % 5))
    np.testing.assert_array_equal(tmm_norm_factors(da.from_array(counts, chunks=(77, 2))), f)


def test_tmm_norm_factors__unweighted_untrimmed_is_mean_log_ratio() -> None:
    obs = np.array([10, 20, 30, 40, 0, 7])
    ref = np.array([12, 18, 35, 30, 5, 0])
    counts = np.column_stack([obs, ref])
    f = tmm_norm_factors(counts, ref_column=1, do_weighting=False, log_ratio_trim=0.0, sum_trim=0.0)
    n_o, n_r = obs.sum(), ref.sum()
    m = np.log2((obs[:4] / n_o) / (ref[:4] / n_r))
    raw = np.array([2 ** m.mean(), 1.0])
    np.testing.assert_allclose(f, raw / np.sqrt(raw.prod()), rtol=1e-14)
    # a_cutoff above every A leaves no gene: factor 1 for both
    np.testing.assert_array_equal(tmm_norm_factors(counts, ref_column=1, a_cutoff=0.0), [1.0, 1.0])


def test_tmm_norm_factors__given_lib_size_is_used(small: pd.DataFrame) -> None:
    lib = small.sum(axis=0)
    np.testing.assert_array_equal(tmm_norm_factors(small, lib_size=lib[::-1]).to_numpy(),
                                  tmm_norm_factors(small).to_numpy())
    # doubling every library size halves obs/nO exactly: M and the ranks of A are unchanged ...
    f2 = tmm_norm_factors(small, lib_size=lib * 2, do_weighting=False)
    np.testing.assert_array_equal(f2.to_numpy(), tmm_norm_factors(small, do_weighting=False).to_numpy())
    # ... but the precision weights (which depend on nO - obs) change
    assert not np.allclose(tmm_norm_factors(small, lib_size=lib * 2).to_numpy(),
                           tmm_norm_factors(small).to_numpy(), rtol=1e-8, atol=0)


def test_effective_lib_size__aligns_series_by_sample(small: pd.DataFrame) -> None:
    f = tmm_norm_factors(small)
    got = effective_lib_size(small, f.iloc[::-1])
    np.testing.assert_array_equal(got.to_numpy(), small.sum(axis=0).to_numpy() * f.to_numpy())
    np.testing.assert_array_equal(effective_lib_size(small.to_numpy(), f.to_numpy(), lib_size=np.ones(6)),
                                  f.to_numpy())


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("counts", "match"),
    [
        (np.array([[1, -1], [2, 3]]), "non-negative.*gene row 0, sample column 1"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), "NaN/infinite"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), "NaN/infinite"),
        (np.zeros((0, 3)), "at least one gene"),
        (np.zeros((3, 0)), "at least one gene"),
        (np.array([1, 2, 3]), "2-D"),
        (np.array([[True, False]]), "numeric"),
        (pd.DataFrame({"gene_id": ["a", "b"], "s1": [1, 2]}), "non-numeric columns \\['gene_id'\\]"),
        (pd.DataFrame([[1, 2], [3, 4]], index=["g", "g"], columns=["s1", "s2"]), "unique gene ids.*'g'"),
        (pd.DataFrame([[1, 2], [3, 4]], index=["g", "h"], columns=["s", "s"]), "unique sample ids"),
        (xr.DataArray(np.ones((2, 2)), dims=("genes", "samples"), coords={"samples": ["a", "a"]}),
         "unique sample ids"),
        (da.from_array(np.array([[1.0, -1.0], [2.0, 3.0]]), chunks=1), "non-negative"),
        (da.from_array(np.array([[1.0, np.nan], [2.0, 3.0]]), chunks=1), "NaN/infinite"),
    ],
)
def test_tmm_norm_factors__bad_counts_raise(counts, match: str) -> None:
    with pytest.raises(InputError, match=match):
        tmm_norm_factors(counts)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lib_size": [1.0, 2.0]}, "expected 3 values"),
        ({"lib_size": [10.0, 0.0, 10.0]}, "lib_size: expected positive"),
        ({"lib_size": [10.0, -1.0, 10.0]}, "lib_size: expected positive"),
        ({"lib_size": [10.0, np.nan, 10.0]}, "finite"),
        ({"ref_column": 3}, r"\[0, 2\]"),
        ({"ref_column": "nope"}, "ref_column"),
        ({"log_ratio_trim": 0.5}, "log_ratio_trim"),
        ({"sum_trim": -0.1}, "sum_trim"),
    ],
)
def test_tmm_norm_factors__bad_options_raise(kwargs: dict, match: str) -> None:
    counts = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 0]])
    with pytest.raises(InputError, match=match):
        tmm_norm_factors(counts, **kwargs)


def test_cpm__bad_options_raise() -> None:
    counts = np.array([[1, 0], [3, 0]])
    with pytest.raises(InputError, match="greater than zero"):
        cpm(counts)
    with pytest.raises(InputError, match="prior_count"):
        cpm(counts + 1, log=True, prior_count=-1)
    with pytest.raises(InputError, match="norm_factors"):
        cpm(counts + 1, norm_factors=[1.0, 0.0])
    with pytest.raises(InputError, match="expected 2 values"):
        cpm(counts + 1, lib_size=[1.0])


# ---------------------------------------------------------------------- inverse normal transform
def _int_reference(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """Row-wise scipy.stats.norm.ppf((rankdata(x) - a) / (n + b)) over the non-NaN values."""
    out = np.full(x.shape, np.nan)
    for i, row in enumerate(x):
        ok = ~np.isnan(row)
        n = ok.sum()
        out[i, ok] = scipy.stats.norm.ppf((scipy.stats.rankdata(row[ok]) - a) / (n + b))
    return out


@pytest.fixture(scope="module")
def expr() -> np.ndarray:
    rng = np.random.default_rng(11)
    x = rng.gamma(2.0, 3.0, size=(40, 57))
    x[:, :10] = np.round(x[:, :10])  # ties
    x[rng.random(x.shape) < 0.05] = np.nan
    x[5] = np.nan  # all missing row
    x[6, 0], x[6, 1:] = 1.0, np.nan  # one value: rank 1 of 1
    return x


def test_inverse_normal_transform__rankit_equals_scipy_formula_exactly(expr: np.ndarray) -> None:
    got = inverse_normal_transform(expr, offset="rankit")
    row = expr[0][~np.isnan(expr[0])]
    literal = scipy.stats.norm.ppf((scipy.stats.rankdata(row) - 0.5) / row.size)
    np.testing.assert_array_equal(got[0][~np.isnan(expr[0])], literal)
    np.testing.assert_array_equal(got, _int_reference(expr, 0.5, 0.0))


@pytest.mark.parametrize(("offset", "a", "b"), [("blom", 3 / 8, 1 / 4), ("van_der_waerden", 0.0, 1.0),
                                                ("tukey", 1 / 3, 1 / 3), (0.375, 3 / 8, 1 / 4)])
def test_inverse_normal_transform__offsets_equal_scipy_formula(expr, offset, a, b) -> None:
    np.testing.assert_array_equal(inverse_normal_transform(expr, offset=offset), _int_reference(expr, a, b))


def test_inverse_normal_transform__van_der_waerden_is_gtex_formula() -> None:
    x = np.random.default_rng(2).normal(size=(5, 30))
    gtex = scipy.stats.norm.ppf(scipy.stats.mstats.rankdata(x, axis=1) / (x.shape[1] + 1))
    np.testing.assert_array_equal(inverse_normal_transform(x, offset="van_der_waerden"), gtex)
    assert set(INT_OFFSETS) == {"blom", "rankit", "van_der_waerden", "tukey"}


def test_inverse_normal_transform__nan_kept_and_axis(expr: np.ndarray) -> None:
    got = inverse_normal_transform(expr)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expr))
    assert got[6, 0] == 0.0
    np.testing.assert_array_equal(inverse_normal_transform(expr.T, axis=0), got.T)


def test_inverse_normal_transform__containers_and_dask_identical(expr: np.ndarray) -> None:
    want = inverse_normal_transform(expr)
    df = pd.DataFrame(expr, index=[f"g{i}" for i in range(40)])
    got_df = inverse_normal_transform(df)
    assert got_df.index.equals(df.index)
    np.testing.assert_array_equal(got_df.to_numpy(), want)
    s = pd.Series(expr[0], name="g0")
    np.testing.assert_array_equal(inverse_normal_transform(s).to_numpy(), want[0])
    arr = xr.DataArray(expr.T, dims=("samples", "phenotypes"))
    np.testing.assert_array_equal(inverse_normal_transform(arr, axis="samples").to_numpy(), want.T)
    lazy = inverse_normal_transform(da.from_array(expr, chunks=(7, -1)))
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), want)


def test_inverse_normal_transform__bad_input_raises(expr: np.ndarray) -> None:
    with pytest.raises(InputError, match=r"rechunk\(\{1: -1\}\)"):
        inverse_normal_transform(da.from_array(expr, chunks=(40, 20)))
    with pytest.raises(InputError, match="offset"):
        inverse_normal_transform(expr, offset="gtex")
    with pytest.raises(InputError, match="offset"):
        inverse_normal_transform(expr, offset=1.5)
    with pytest.raises(InputError, match="axis"):
        inverse_normal_transform(expr, axis=2)
    with pytest.raises(InputError, match="numeric"):
        inverse_normal_transform(pd.DataFrame({"a": ["x", "y"]}))


# ------------------------------------------------------------------------- quantile normalisation
def test_quantile_normalize__columns_share_sorted_values_and_keep_order() -> None:
    x = np.random.default_rng(5).lognormal(size=(300, 12)) * np.arange(1, 13)
    q = quantile_normalize(x)
    want_sorted = np.sort(x, axis=0).mean(axis=1)
    for j in range(12):
        np.testing.assert_array_equal(np.sort(q[:, j]), np.sort(q[:, 0]))
        np.testing.assert_array_equal(np.argsort(q[:, j]), np.argsort(x[:, j]))
    np.testing.assert_allclose(np.sort(q[:, 0]), want_sorted, rtol=1e-14)


def test_quantile_normalize__ties_get_average_of_their_quantiles() -> None:
    x = np.array([[5.0, 4.0, 3.0], [2.0, 1.0, 4.0], [2.0, 4.0, 6.0], [4.0, 2.0, 8.0]])
    ref = np.sort(x, axis=0).mean(axis=1)
    q = quantile_normalize(x)
    np.testing.assert_allclose(q[:, 0], [ref[3], (ref[0] + ref[1]) / 2, (ref[0] + ref[1]) / 2, ref[2]])
    np.testing.assert_allclose(q[:, 1], [(ref[2] + ref[3]) / 2, ref[0], (ref[2] + ref[3]) / 2, ref[1]])
    np.testing.assert_allclose(q[:, 2], ref)


def test_quantile_normalize__axis_containers_and_dask_identical() -> None:
    x = np.random.default_rng(6).normal(size=(120, 9))
    want = quantile_normalize(x)
    np.testing.assert_array_equal(quantile_normalize(x.T, axis=1), want.T)
    np.testing.assert_array_equal(quantile_normalize(pd.DataFrame(x)).to_numpy(), want)
    arr = xr.DataArray(x.T, dims=("samples", "phenotypes"))
    np.testing.assert_array_equal(quantile_normalize(arr, axis="phenotypes").to_numpy(), want.T)
    lazy = quantile_normalize(da.from_array(x, chunks=(-1, 2)))
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), want)


def test_quantile_normalize__bad_input_raises() -> None:
    x = np.random.default_rng(6).normal(size=(10, 4))
    with pytest.raises(InputError, match=r"rechunk\(\{0: -1\}\)"):
        quantile_normalize(da.from_array(x, chunks=(5, 4)))
    x[2, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        quantile_normalize(x)
    with pytest.raises(InputError, match="2-D"):
        quantile_normalize(np.ones(3))


@pytest.mark.parametrize("ties", [False, True])
def test_average_ranks_equal_scipy_rankdata_omit(ties):
    """The INT's ranks (one argsort, vectorized tie averaging) equal scipy's rankdata with
    nan_policy='omit' bit for bit, along either axis, with NaN and ties."""
    import scipy.stats

    from dqtl.preprocess.rank_normalize import average_ranks

    rng = np.random.default_rng(1)
    y = rng.standard_normal((40, 500))
    if ties:
        y = np.round(y * 2) / 2
    y[rng.random(y.shape) < 0.05] = np.nan
    y[3] = np.nan  # an all-missing slice
    for axis in (0, 1):
        want = scipy.stats.rankdata(y, axis=axis, nan_policy="omit")
        np.testing.assert_array_equal(average_ranks(y, axis=axis), want)
