"""Reductions done in row blocks to avoid (phenotypes x samples) temporaries (``row_dots``) give
the bits of the whole-matrix reduction they replaced: the plan's row norms, the trans null sketch."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dqtl.kernels.trans as kt
from dqtl.association.trans import run_trans
from dqtl.kernels.linalg import row_dots
from tests.association.test_trans import make_data


def test_row_dots__equal_whole_matrix_reductions_bit_for_bit():
    rng = np.random.default_rng(0)
    for m, n, scale in ((0, 5, 1.0), (1, 1, 1e-300), (255, 90, 1.0), (257, 1000, 1e3), (800, 37, 1e-8)):
        X = rng.standard_normal((m, n)) * scale
        g = rng.standard_normal(n)
        np.testing.assert_array_equal(np.sqrt(row_dots(X, X)), np.linalg.norm(X, axis=1))
        for rows in (1, 7, 256):
            np.testing.assert_array_equal(row_dots(X, g, rows=rows), (X * g).sum(axis=1))


@pytest.mark.parametrize("rows", [1, 5])
def test_trans_sketch__same_counts_for_any_phenotype_block(tmp_path, monkeypatch, rows):
    G, P, Cv, _ = make_data(seed=11, missing_pheno=True)
    kw = dict(pval_threshold=1e-2, cis_window=300_000, variants_per_block=60, phenotypes_per_block=24)
    summaries, counts = [], []
    sampled = kt.sampled_pvalue_counts

    def keep(*a, **k):
        c = sampled(*a, **k)
        counts[-1].append((a[3], c.copy()))  # (first variant of the block, its histogram)
        return c

    monkeypatch.setattr(kt, "sampled_pvalue_counts", keep)
    for block, out in ((10**9, "whole"), (rows, "blocked")):  # 10**9: all phenotypes at once
        monkeypatch.setattr(kt, "_SKETCH_ROWS", block)
        counts.append([])
        run_trans(G, P, Cv, str(tmp_path / out), **kw)
        summaries.append(json.loads((tmp_path / f"{out}.trans_summary.json").read_text()))
    whole, blocked = summaries
    a, b = (sorted(c, key=lambda t: t[0]) for c in counts)
    assert len(a) == len(b) > 1
    for (v0, ca), (w0, cb) in zip(a, b, strict=True):
        assert v0 == w0
        np.testing.assert_array_equal(ca, cb)
    assert whole["n_tests_sampled_for_lambda"] > 0
    assert blocked["n_tests_sampled_for_lambda"] == whole["n_tests_sampled_for_lambda"]
    assert blocked["lambda_gc"] == whole["lambda_gc"]
