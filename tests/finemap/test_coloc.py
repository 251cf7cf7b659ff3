"""coloc_abf against coloc 5.2.3 (R) on the reference cases, and its input checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dqtl.errors import InputError
from dqtl.finemap.coloc import coloc_abf
from tests.conftest import REFERENCE

CASES = sorted(p.name for p in (REFERENCE / "coloc").iterdir() if p.is_dir())


def _dataset(case, k):
    meta = json.loads((REFERENCE / "coloc" / case / "case.json").read_text())[f"dataset{k}"]
    df = pd.read_csv(REFERENCE / "coloc" / case / f"dataset{k}.tsv", sep="\t")
    d = {c: df[c].to_numpy() for c in meta["columns_used"]}
    d["type"] = meta["type"]
    d["N"] = meta["N"]
    for key in ("sdY", "s"):
        if key in meta:
            d[key] = meta[key]
    return d


@pytest.mark.parametrize("case", CASES)
def test_coloc_abf__equals_coloc_5_2_3(case):
    res = coloc_abf(_dataset(case, 1), _dataset(case, 2))
    d = REFERENCE / "coloc" / case
    summary = pd.read_csv(d / "expected_summary.tsv", sep="\t").iloc[0]
    assert int(res.summary["nsnps"]) == int(summary["nsnps"])
    for h in range(5):
        np.testing.assert_allclose(res.summary[f"PP.H{h}.abf"], summary[f"PP.H{h}.abf"], rtol=1e-10,
                                   atol=1e-300, err_msg=f"PP.H{h}")
    exp = pd.read_csv(d / "expected_results.tsv", sep="\t")
    assert res.results["snp"].tolist() == exp["snp"].tolist()
    for col in exp.columns:
        if col == "snp":
            continue
        np.testing.assert_allclose(res.results[col].to_numpy(dtype=float), exp[col].to_numpy(dtype=float),
                                   rtol=1e-10, atol=1e-300, err_msg=col)


def test_coloc_abf__pvalue_input_and_estimated_sdY_agree_with_beta_input():
    case = "quant_shared_causal"
    d1, d2 = _dataset(case, 1), _dataset(case, 2)
    est = coloc_abf({k: v for k, v in d1.items() if k != "sdY"}, d2)
    assert est.summary["PP.H4.abf"] > 0.99  # sdY estimated from varbeta and MAF (~1 here)
    df = pd.read_csv(REFERENCE / "coloc" / case / "dataset1.tsv", sep="\t")
    p = {"snp": df["snp"].to_numpy(), "pvalues": df["pvalues"].to_numpy(), "MAF": df["MAF"].to_numpy(),
         "N": 2000, "type": "quant"}
    res = coloc_abf(p, d2)
    assert res.summary["PP.H4.abf"] > 0.99
    assert {"pvalues.df1", "MAF.df1", "N.df1"} <= set(res.results.columns)


@pytest.mark.parametrize("bad, match", [
    ({"type": "binary"}, "type must be"),
    ({"varbeta": np.zeros(3)}, "varbeta must be finite and > 0"),
    ({"snp": np.array(["a", "a", "b"])}, "duplicated snp"),
    ({"beta": np.zeros(2)}, "beta has 2 values"),
])
def test_coloc_abf__bad_input_is_a_clear_error(bad, match):
    d = {"snp": np.array(["a", "b", "c"]), "beta": np.zeros(3), "varbeta": np.ones(3) * 0.01,
         "type": "quant", "sdY": 1.0}
    with pytest.raises(InputError, match=match):
        coloc_abf({**d, **bad}, d)
    with pytest.raises(InputError, match="share no SNP"):
        coloc_abf(d, {**d, "snp": np.array(["x", "y", "z"])})


COLOC_SUSIE = sorted(p.name for p in (REFERENCE / "coloc_susie").iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def coloc_susie_ld():
    X = pd.read_csv(REFERENCE / "coloc_susie" / "X.tsv.gz", sep="\t").to_numpy(dtype=float)
    return np.corrcoef(X, rowvar=False), X.shape[0]


@pytest.mark.parametrize("case", COLOC_SUSIE)
def test_coloc_susie__equals_coloc_5_2_3(case, coloc_susie_ld):
    """Pairs of credible sets, hits and posteriors as coloc.susie (susie_rss fits on numpy's
    corrcoef of the same X as R's cor): PP to 1e-6 absolute, SNP.PP.H4 to 1e-6."""
    from dqtl.finemap.coloc import coloc_susie

    LD, n = coloc_susie_ld
    d = REFERENCE / "coloc_susie" / case
    data = []
    for k in (1, 2):
        df = pd.read_csv(d / f"dataset{k}.tsv", sep="\t")
        data.append({"beta": df["beta"].to_numpy(), "varbeta": df["varbeta"].to_numpy(),
                     "snp": df["snp"].to_numpy(), "N": n, "LD": LD, "type": "quant"})
    res = coloc_susie(*data)
    exp = pd.read_csv(d / "expected_summary.tsv", sep="\t")
    assert len(res.summary) == len(exp)
    assert res.summary["hit1"].tolist() == exp["hit1"].tolist()
    assert res.summary["hit2"].tolist() == exp["hit2"].tolist()
    assert (res.summary["idx1"] + 1).tolist() == exp["idx1"].tolist()
    assert (res.summary["idx2"] + 1).tolist() == exp["idx2"].tolist()
    assert res.summary["nsnps"].tolist() == exp["nsnps"].tolist()
    for h in range(5):
        col = f"PP.H{h}.abf"
        np.testing.assert_allclose(res.summary[col].to_numpy(dtype=float), exp[col].to_numpy(dtype=float),
                                   atol=1e-6, err_msg=col)
    er = pd.read_csv(d / "expected_results.tsv", sep="\t")
    assert res.results.columns.tolist() == er.columns.tolist()
    assert res.results["snp"].tolist() == er["snp"].tolist()
    for col in er.columns[1:]:
        np.testing.assert_allclose(res.results[col].to_numpy(dtype=float), er[col].to_numpy(dtype=float),
                                   atol=1e-6, err_msg=col)


def test_coloc_bf_bf__trims_pairs_without_overlap_and_handles_no_shared_snps():
    from dqtl.finemap.coloc import coloc_bf_bf

    bf1 = np.array([[0.0, 30.0, 0.0, 0.0]])
    bf2 = np.array([[0.0, 0.0, 30.0, 0.0]])
    res = coloc_bf_bf(bf1, bf2, ["a", "b", "c", "d"], ["a", "b", "c", "d"])
    assert res.summary["hit1"].tolist() == ["b"] and res.summary["hit2"].tolist() == ["c"]
    assert res.summary["PP.H3.abf"].iloc[0] > 0.9
    # trait 1's signal (SNP b) is not in dataset 2: the pair is not tested
    trimmed = coloc_bf_bf(bf1, bf2[:, [0, 2, 3]], ["a", "b", "c", "d"], ["a", "c", "d"])
    assert trimmed.summary["PP.H4.abf"].isna().all()
    none = coloc_bf_bf(bf1, bf2, ["a", "b", "c", "d"], ["w", "x", "y", "z"])
    assert none.summary.empty
