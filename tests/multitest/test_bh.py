"""Tests for dqtl.multitest.bh against R's p.adjust(p, "BH") and BH's algebraic properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dqtl.errors import InputError
from dqtl.multitest import bh
from tests.multitest._reference import QVALUE_CASES, qvalue_case


@pytest.mark.parametrize("case", QVALUE_CASES)
def test_bh__matches_r_p_adjust(case):
    _, expected, _ = qvalue_case(case)
    q = bh(expected["pvalue"])
    # R's operation order is reproduced, so the result is bit-identical; allow 1e-12 relative.
    np.testing.assert_allclose(q, expected["bh"], rtol=1e-12, atol=0)


def _bh_bruteforce(p, m):
    ps = np.sort(p)
    j = np.arange(1, ps.size + 1)
    raw = ps * m / j
    q_sorted = np.minimum(1.0, np.minimum.accumulate(raw[::-1])[::-1])
    out = np.empty_like(p)
    out[np.argsort(p, kind="stable")] = q_sorted
    return out


def test_bh__n_tests_matches_blockwise_formula():
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1e-3, size=200)
    q = bh(p, n_tests=100_000)
    np.testing.assert_allclose(q, _bh_bruteforce(p, 100_000), rtol=1e-14)
    assert np.all(q >= p)


def test_bh__preserves_nan_and_shape():
    p = np.array([[0.01, np.nan], [0.04, 0.03]])
    q = bh(p)
    assert q.shape == p.shape
    assert np.isnan(q[0, 1])
    np.testing.assert_allclose(q[~np.isnan(p)], _bh_bruteforce(np.array([0.01, 0.04, 0.03]), 3))


def test_bh__single_value_returned_unchanged_unless_more_tests():
    np.testing.assert_array_equal(bh([0.2]), [0.2])
    np.testing.assert_allclose(bh([0.01], n_tests=10), [0.1])
    assert bh(np.array([])).size == 0


def test_bh__caps_at_one():
    q = bh([0.9, 0.95, 0.5], n_tests=50)
    assert np.all(q <= 1.0) and q.max() == 1.0


@pytest.mark.parametrize("bad", [[-0.1, 0.5], [0.2, 1.5], [np.inf]])
def test_bh__rejects_p_outside_unit_interval(bad):
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        bh(bad)


def test_bh__rejects_n_tests_below_number_of_pvalues():
    with pytest.raises(InputError, match="n_tests"):
        bh([0.1, 0.2, np.nan, 0.3], n_tests=2)
    # NaN is not a test: 3 non-missing values and n_tests=3 is fine
    assert bh([0.1, 0.2, np.nan, 0.3], n_tests=3).shape == (4,)


def test_bh__rejects_fractional_n_tests():
    with pytest.raises(InputError, match="whole number"):
        bh([0.1, 0.2], n_tests=2.5)


pvals = st.lists(
    st.one_of(st.floats(0, 1, allow_nan=False), st.sampled_from([0.0, 1.0, 0.05, 1e-300])),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(pvals, st.randoms(use_true_random=False))
def test_bh__invariant_to_input_order(p, rnd):
    p = np.array(p)
    perm = np.arange(p.size)
    rnd.shuffle(perm)
    np.testing.assert_array_equal(bh(p)[perm], bh(p[perm]))


@settings(max_examples=200, deadline=None)
@given(pvals)
def test_bh__n_tests_equal_to_length_is_default(p):
    p = np.array(p)
    np.testing.assert_array_equal(bh(p, n_tests=p.size), bh(p))


@settings(max_examples=300, deadline=None)
@given(pvals, st.floats(0, 1, allow_nan=False))
def test_bh__blockwise_hits_equal_full_bh_where_significant(p, threshold):
    # Keeping every p <= threshold and the total count m, BH over the hits alone is exact for
    # every q <= threshold; above it, the blockwise q is an upper bound that is also > threshold.
    p = np.array(p)
    hits = p <= threshold
    full = bh(p)[hits]
    block = bh(p[hits], n_tests=p.size)
    sig = block <= threshold
    np.testing.assert_array_equal(block[sig], full[sig])
    assert np.all(full[~sig] <= block[~sig])
    assert np.all(full[~sig] > threshold)
