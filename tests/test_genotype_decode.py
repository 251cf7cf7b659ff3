"""The fast diploid decoder (allele sums, uint16 pair table) equals the general decoder bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from dqtl.kernels.genotypes import allele_stats, decode_block


@pytest.mark.parametrize("alleles", ["any", "biallelic"])
@pytest.mark.parametrize("seed", range(12))
def test_decode_block__diploid_table_equals_general_path(seed, alleles):
    """Both int8 diploid paths (the allele-sum path of biallelic blocks, the pair table of any
    other) equal the general decoder."""
    rng = np.random.default_rng(seed)
    v, n = int(rng.integers(1, 300)), int(rng.integers(0, 60))
    if alleles == "any":
        codes = np.array([-2, -1, 0, 1, 2, 3], dtype=np.int8)  # non-present, missing, REF, ALTs
        gt = rng.choice(codes, p=[0.01, 0.03, 0.5, 0.4, 0.03, 0.03], size=(v, n, 2))
    else:  # -1, 0, 1 only: missing alleles in a few rows (the table decodes those rows)
        gt = rng.choice(np.array([0, 1], dtype=np.int8), size=(v, n, 2))
        if n:
            rows = rng.choice(v, size=int(rng.integers(0, v // 4 + 2)))
            gt[rows, rng.integers(0, n, size=rows.size), rng.integers(0, 2, size=rows.size)] = -1
    if seed % 3 == 0:
        gt[gt < 0] = 0  # no missing calls at all
    idx = rng.permutation(n)[: int(rng.integers(0, n + 1))] if seed % 2 else np.arange(n)
    maf = (0.0, 0.05, 0.2)[seed % 3]
    fast = decode_block(gt, idx, ploidy=2, maf_threshold=maf)
    assert fast.diploid_calls  # the table path ran
    assert fast.G.flags.c_contiguous  # also on a sample subset (pairs[:, idx] is F-ordered)
    general = decode_block(gt.astype(np.int16), idx, ploidy=2, maf_threshold=maf)  # not int8
    assert not general.diploid_calls
    # the row sums the table path keeps are numpy's, bit for bit (the row means come from them)
    np.testing.assert_array_equal(fast.sums, fast.G.sum(axis=1))
    np.testing.assert_array_equal(fast.row_means(), fast.G.mean(axis=1))
    np.testing.assert_array_equal(general.row_means(1, 3), general.G[1:3].mean(axis=1))
    for name in ("G", "af", "valid", "monomorphic", "n_missing"):
        a, b = getattr(fast, name), getattr(general, name)
        np.testing.assert_array_equal(a, b, err_msg=name)
        assert a.dtype == b.dtype, name
    assert fast.n_maf_filtered == general.n_maf_filtered
    ms, mc = fast.minor_allele()
    _, ms_ref, mc_ref = allele_stats(general.G, 2)
    np.testing.assert_array_equal(ms, ms_ref)
    np.testing.assert_array_equal(mc, mc_ref)
    if v > 3:
        rows = np.array([2, 0, 1])
        ms_r, mc_r = fast.minor_allele(rows)
        np.testing.assert_array_equal(ms_r, ms_ref[rows])
        np.testing.assert_array_equal(mc_r, mc_ref[rows])


def test_residual_norm2__projection_norm_and_row_count_invariant():
    """||(I - QQ^T) g||^2 of each row, and each row's value independent of how many rows (and
    which) are passed: the cis scan's norms do not depend on its batch boundaries."""
    from dqtl.kernels.linalg import residual_norm2

    rng = np.random.default_rng(2)
    for n, k in ((7, 1), (90, 4), (500, 9)):
        G = rng.standard_normal((300, n)) * 3 + 1
        Q = np.linalg.qr(np.column_stack([np.ones(n), rng.standard_normal((n, k - 1))]))[0]
        full = residual_norm2(G, Q)
        Gc = G - G.mean(axis=1, keepdims=True)
        want = ((Gc - Gc @ Q @ Q.T) ** 2).sum(axis=1)
        np.testing.assert_allclose(full, want, rtol=1e-10, atol=1e-10)
        for a, b in ((0, 1), (3, 4), (5, 260), (17, 300)):
            np.testing.assert_array_equal(residual_norm2(G[a:b], Q), full[a:b])
