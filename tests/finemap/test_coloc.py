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
