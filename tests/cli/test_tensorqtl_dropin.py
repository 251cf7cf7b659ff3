"""``dqtl tensorqtl``: tensorQTL's command lines give tensorQTL's files. The same four command lines
were run through tensorQTL 1.0.10's CLI (tests/reference/tensorqtl_cli/generate.sh); here through
dqtl, and the files compared: names, tensorQTL's columns first and in its order, rows and values."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dqtl.cli.main import main
from tests.conftest import EXAMPLE, REFERENCE

REF = REFERENCE / "tensorqtl_cli"
G, P, C = str(EXAMPLE / "geuvadis_ceu90_maf01"), str(EXAMPLE / "expression.bed.gz"), str(EXAMPLE / "covariates.txt")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The reference script's command lines, in its order, through dqtl (the prefix given as
    tensorQTL takes it: a PLINK 2 prefix shared with the .bed/.bim/.fam of the same data)."""
    out = tmp_path_factory.mktemp("dropin")
    cis_out = str(out / "tq.cis_qtl.txt.gz")
    lines = {
        "cis": ["--mode", "cis", "--covariates", C, "--permutations", "1000", "--seed", "7"],
        "cis_nominal": ["--mode", "cis_nominal", "--covariates", C, "--cis_output", cis_out],
        "cis_independent": ["--mode", "cis_independent", "--covariates", C, "--cis_output", cis_out,
                            "--permutations", "1000", "--seed", "7"],
        "trans": ["--mode", "trans", "--covariates", C],
    }
    for mode, opts in lines.items():
        assert main(["-q", "tensorqtl", G, P, "tq", *opts, "-o", str(out), "--no-progress"]) == 0, mode
    return out


def _read(path):
    return pd.read_parquet(path) if str(path).endswith(".parquet") else pd.read_csv(path, sep="\t")


def test_same_files_and_tensorqtl_columns_first(runs):
    manifest = json.loads((REF / "manifest.json").read_text())
    ours = {p.name for p in runs.iterdir()}
    for name, info in manifest.items():
        if name.startswith("_"):
            continue
        assert name in ours, f"tensorQTL writes {name}; dqtl tensorqtl did not"
        if "columns" in info:
            df = _read(runs / name)
            assert list(df.columns[: len(info["columns"])]) == info["columns"], name
            assert len(df) == info["rows"], name


def test_cis_gene_level_table_matches_tensorqtl(runs):
    ref = _read(REF / "tq.cis_qtl.txt.gz").set_index("phenotype_id")
    ours = _read(runs / "tq.cis_qtl.txt.gz").set_index("phenotype_id")
    assert list(ours.index) == list(ref.index)
    assert (ours.variant_id == ref.variant_id).all() and (ours.num_var == ref.num_var).all()
    # the same seed gives the same permutations: pval_perm within one permutation
    assert np.abs(ours.pval_perm - ref.pval_perm).max() <= 1.5 / 1001
    np.testing.assert_allclose(ours.pval_beta, ref.pval_beta, rtol=2e-3)
    np.testing.assert_allclose(ours.qval, ref.qval, rtol=2e-3)
    assert set(ours.index[ours.qval <= 0.05]) == set(ref.index[ref.qval <= 0.05])


def test_signif_pairs_independent_and_trans_match_tensorqtl(runs):
    key = ["phenotype_id", "variant_id"]
    sig_ref, sig = _read(REF / "tq.cis_qtl.signif_pairs.parquet"), _read(runs / "tq.cis_qtl.signif_pairs.parquet")
    assert sig[key].values.tolist() == sig_ref[key].values.tolist()
    np.testing.assert_allclose(sig.pval_nominal, sig_ref.pval_nominal, rtol=5e-5)
    ind_ref, ind = _read(REF / "tq.cis_independent_qtl.txt.gz"), _read(runs / "tq.cis_independent_qtl.txt.gz")
    assert ind[[*key, "rank"]].values.tolist() == ind_ref[[*key, "rank"]].values.tolist()
    tr_ref, tr = _read(REF / "tq.trans_qtl_pairs.parquet"), _read(runs / "tq.trans_qtl_pairs.parquet")
    a = tr.set_index(["variant_id", "phenotype_id"]).sort_index()
    b = tr_ref.set_index(["variant_id", "phenotype_id"]).sort_index()
    assert list(a.index) == list(b.index)
    np.testing.assert_allclose(a.pval, b.pval, rtol=2e-4)


def test_log_files_and_unsupported_options(runs, tmp_path, capsys):
    for mode in ("cis", "cis_nominal", "cis_independent", "trans"):
        text = (runs / f"tq.tensorQTL.{mode}.log").read_text()
        assert "dqtl tensorqtl" in text and "# finished: ok" in text
    assert "--seed" in (runs / "tq.tensorQTL.cis.log").read_text()
    rc = main(["-q", "tensorqtl", G, P, "x", "--mode", "cis_nominal", "--logp", "-o", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--logp" in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    rc = main(["-q", "tensorqtl", G, P, "x", "--mode", "cis_independent", "-o", str(tmp_path)])
    assert rc == 2 and "--cis_output" in capsys.readouterr().err
    # a --cis_output without q-values is refused before the nominal scan: no pairs are left
    bad = tmp_path / "bad.txt"
    bad.write_text("phenotype_id\tvariant_id\ng1\tv1\n")
    rc = main(["-q", "tensorqtl", G, P, "y", "--mode", "cis_nominal", "--cis_output", str(bad),
               "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "qval" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []

