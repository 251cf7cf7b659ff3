"""Mediation of trans-eQTLs (``dqtl mediate``): statsmodels agreement, sensitivity and false
mediation on planted trios (``dqtl.simulation.plant_mediation``), null calibration, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from dqtl.cli.main import main
from dqtl.kernels.genotypes import dosage_from_calls
from dqtl.mediation import map_mediation
from dqtl.simulation import plant_mediation
from dqtl.simulation_files import write_simulation


@pytest.fixture(scope="module")
def planted():
    out = []
    for seed in (1, 2, 3):
        sim, truth = plant_mediation(seed=seed, n_samples=300)
        trios, summary = map_mediation(sim, sim, sim, truth[["variant_id", "phenotype_id"]],
                                       permutations=1000, seed=seed)
        out.append((sim, truth, trios, summary))
    return out


def test_mediation__estimates_equal_statsmodels_per_trio(planted):
    sim, truth, trios, _ = planted[0]
    G = dosage_from_calls(np.asarray(sim.call_genotype.values))
    G = np.where(np.isnan(G), np.nanmean(G, axis=1, keepdims=True), G)
    vid = list(sim.variant_id.values.astype(str))
    pid = list(sim.phenotype_id.values.astype(str))
    Y = sim.phenotype_values.values
    C = sim.covariate_values.values
    for _, r in trios.sample(12, random_state=0).iterrows():
        g, t, m = G[vid.index(r["variant_id"])], Y[pid.index(r["phenotype_id"])], Y[pid.index(r["mediator_id"])]
        Xg = sm.add_constant(np.column_stack([C, g]))
        fa, ft = sm.OLS(m, Xg).fit(), sm.OLS(t, Xg).fit()
        fb = sm.OLS(t, sm.add_constant(np.column_stack([C, g, m]))).fit()
        a, sa, b, sb = fa.params[-1], fa.bse[-1], fb.params[-1], fb.bse[-1]
        z = a * b / np.sqrt(b * b * sa * sa + a * a * sb * sb)
        expect = {"beta_total": ft.params[-1], "beta_direct": fb.params[-2], "beta_indirect": a * b,
                  "beta_a": a, "se_a": sa, "beta_b": b, "se_b": sb, "z_sobel": z,
                  "pval_sobel": 2 * stats.norm.sf(abs(z)), "prop_mediated": a * b / ft.params[-1]}
        for k, v in expect.items():
            np.testing.assert_allclose(r[k], v, rtol=1e-8, atol=1e-12, err_msg=k)


def test_mediation__right_mediator_called_and_no_false_mediation(planted):
    """Three seeds x (5 mediated, 5 direct, 5 confounded) planted trans pairs at FDR 5%."""
    called, right, false_direct, false_conf = 0, 0, 0, 0
    for _, truth, trios, _summary in planted:
        sig = trios[trios["qval"] <= 0.05].merge(truth, on=["variant_id", "phenotype_id"])
        med = sig[sig["kind"] == "mediated"]
        right += int((med["mediator_id"] == med["cis_gene"]).sum())
        called += int(med[["variant_id", "phenotype_id"]].drop_duplicates().shape[0])
        false_direct += int((sig["kind"] == "direct").sum())
        false_conf += int((sig["kind"] == "confounded").sum())
        best = trios[trios["is_best"]].merge(truth[truth["kind"] == "mediated"],
                                             on=["variant_id", "phenotype_id"])
        assert (best["mediator_id"] == best["cis_gene"]).all()
    assert called == right == 15  # sensitivity 15/15, every call the planted mediator
    assert false_direct == 0 and false_conf == 0


def test_mediation__null_trios_calibrated(planted):
    """Trios whose mediator does not carry the effect (bystander genes near the variant, the
    confounded cis genes) have uniform permutation p-values (and Sobel p-values not below)."""
    pv = []
    for _, truth, trios, _summary in planted:
        m = trios.merge(truth, on=["variant_id", "phenotype_id"])
        null = m[~((m["kind"] == "mediated") & (m["mediator_id"] == m["cis_gene"]))]
        # adaptive permutations: p-values of trios stopped early are coarse but not small
        pv.extend(null.loc[null["n_permutations"] >= 1000, "pval_perm"].tolist()
                  + null.loc[null["n_permutations"] < 1000, "pval_perm"].tolist())
    assert len(pv) >= 150
    assert stats.kstest(pv, "uniform").pvalue > 0.01
    conf = pd.concat([t.merge(tr, on=["variant_id", "phenotype_id"]) for _, tr, t, _s in planted])
    conf = conf[(conf["kind"] == "confounded") & (conf["mediator_id"] == conf["cis_gene"])]
    assert len(conf) == 15 and (conf["qval"] > 0.05).all()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mediate")
    sim, truth = plant_mediation(seed=4, n_samples=300)
    f = {k: str(p[0]) for k, p in write_simulation(sim, tmp, formats=("zarr", "bed", "covariates"),
                                                   prefix="sim").items()}
    assert main(["-q", "trans", f["zarr"], f["bed"], str(tmp / "t"), "--covariates", f["covariates"],
                 "--pval-threshold", "1e-4", "--no-progress"]) == 0
    return sim, truth, f, tmp


def test_cli_mediate__end_to_end_from_a_trans_run(files, tmp_path):
    sim, truth, f, tmp = files
    out = tmp_path / "m"
    assert main(["-q", "mediate", f["zarr"], f["bed"], str(out), "--covariates", f["covariates"],
                 "--trans-results", str(tmp / "t.trans_qtl_pairs.parquet"), "--no-progress"]) == 0
    trios = pd.read_csv(f"{out}.trans_mediation.txt.gz", sep="\t")
    assert trios.columns[:10].tolist() == ["variant_id", "phenotype_id", "mediator_id", "beta_total",
                                          "beta_direct", "beta_indirect", "prop_mediated", "pval_sobel",
                                          "pval_perm", "qval"]
    import json

    summary = json.loads((tmp_path / "m.trans_mediation.json").read_text())
    hits = pd.read_parquet(tmp / "t.trans_qtl_pairs.parquet")
    assert summary["n_pairs"] == len(hits[["variant_id", "phenotype_id"]].drop_duplicates())
    sig = trios[trios["qval"] <= 0.05].merge(truth, on=["variant_id", "phenotype_id"])
    # the trans scan found 2 of the 5 mediated pairs here: both called, on their planted mediator
    assert len(sig) >= 2 and (sig["kind"] == "mediated").all()  # no call on another kind
    assert (sig["mediator_id"] == sig["cis_gene"]).all()


def test_cli_mediate__bad_input_exit_2_no_output(files, tmp_path, capsys):
    sim, truth, f, tmp = files
    hits = pd.read_parquet(tmp / "t.trans_qtl_pairs.parquet")
    # a variant with no phenotype within 1 kb: no candidate mediator at --cis-window 1000
    pos = sim.variant_position.values
    contig = sim.contig_id.values.astype(str)[sim.variant_contig.values]
    pcontig = sim.phenotype_contig.values.astype(str)
    lone = next(v for v in range(len(pos)) if not np.any(
        (pcontig == contig[v]) & (sim.phenotype_start.values + 1 - 1000 <= pos[v])
        & (pos[v] <= sim.phenotype_end.values + 1000)))
    far = pd.DataFrame({"variant_id": [str(sim.variant_id.values[lone])], "phenotype_id": ["gene30"]})
    cases = {
        "unknown": (hits.assign(variant_id="nope_1"), [], "not in the genotypes"),
        "mismatch": (hits.assign(b=hits["b"] * 2 + 1), [], "do not match these inputs"),
        "nocand": (far, ["--cis-window", "1000"], "no candidate mediator"),
    }
    for name, (df, extra, match) in cases.items():
        path = tmp_path / f"{name}.trans_qtl_pairs.parquet"
        df.to_parquet(path, index=False)
        rc = main(["-q", "mediate", f["zarr"], f["bed"], str(tmp_path / name), "--covariates",
                   f["covariates"], "--trans-results", str(path), "--no-progress", *extra])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and match in err and len(err.splitlines()) == 1, (name, err)
        assert not list(tmp_path.glob(f"{name}.trans_mediation*"))
    # a trans run on another sample set (its summary says so)
    sub = tmp_path / "other.trans_qtl_pairs.parquet"
    hits.to_parquet(sub, index=False)
    (tmp_path / "other.trans_summary.json").write_text('{"n_samples": 123}')
    rc = main(["-q", "mediate", f["zarr"], f["bed"], str(tmp_path / "o"), "--covariates", f["covariates"],
               "--trans-results", str(sub), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "another sample set" in err


def test_mediation__missing_values_and_egene_mediators():
    """A target with missing values is fitted on the samples where target and mediator are both
    observed (statsmodels on those samples agrees); --mediators egenes keeps cis-eGenes only."""
    sim, truth = plant_mediation(seed=5, n_samples=300)
    pid = list(sim.phenotype_id.values.astype(str))
    med = truth[truth["kind"] == "mediated"].iloc[0]
    Y = sim.phenotype_values.values.copy()
    Y[pid.index(med["phenotype_id"]), :12] = np.nan
    sim["phenotype_values"] = (sim.phenotype_values.dims, Y)
    pairs = truth[["variant_id", "phenotype_id"]]
    trios, _ = map_mediation(sim, sim, sim, pairs, permutations=300)
    row = trios[(trios["phenotype_id"] == med["phenotype_id"]) & (trios["mediator_id"] == med["cis_gene"])].iloc[0]
    assert row["n_samples"] == 288 and row["qval"] <= 0.05
    G = dosage_from_calls(np.asarray(sim.call_genotype.values))
    G = np.where(np.isnan(G), np.nanmean(G, axis=1, keepdims=True), G)
    g = G[list(sim.variant_id.values.astype(str)).index(med["variant_id"])][12:]
    t = Y[pid.index(med["phenotype_id"])][12:]
    m = Y[pid.index(med["cis_gene"])][12:]
    C = sim.covariate_values.values[12:]
    fb = sm.OLS(t, sm.add_constant(np.column_stack([C, g, m]))).fit()
    np.testing.assert_allclose(row["beta_b"], fb.params[-1], rtol=1e-8)
    # eGenes: only the planted cis genes are eGenes of their variants
    eg = pd.DataFrame({"phenotype_id": truth["cis_gene"], "qval": 0.001, "pval_nominal_threshold": 1e-3})
    only, _ = map_mediation(sim, sim, sim, pairs, permutations=300, mediators="egenes", egenes=eg)
    assert set(only["mediator_id"]) <= set(truth["cis_gene"])
    assert (only["pval_a"] <= 1e-3).all() and len(only) >= 10
