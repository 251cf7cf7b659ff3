"""Multi-context cis mapping (``dqtl cis --contexts``): per-context outputs equal single runs on
each context's samples, context-specific calls on planted effects, and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dqtl
from dqtl.cli.main import main
from dqtl.kernels.genotypes import dosage_from_calls
from dqtl.simulation_files import write_simulation


def _study(tmp, seed=5, n=300, n_genes=60):
    """Two contexts of 150 samples; genes 0-19 with a shared effect, 20-39 with an effect only in
    context A, 40-59 none."""
    sim = dqtl.simulate(n_samples=n, n_variants=3000, n_phenotypes=n_genes, n_covariates=2,
                        n_hidden=0, fraction_egenes=1.0, effect_size=0.0, seed=seed)
    rng = np.random.default_rng(seed)
    ctx = np.where(np.arange(n) < n // 2, "A", "B")
    G = dosage_from_calls(np.asarray(sim.call_genotype.values))
    G = np.where(np.isnan(G), np.nanmean(G, axis=1, keepdims=True), G)
    causal = sim.phenotype_causal_variant.values
    Y = rng.normal(size=(n_genes, n)) + 0.5 * (ctx == "A")[None, :]
    for j in range(40):
        g = G[causal[j]] - G[causal[j]].mean()
        Y[j] += 0.8 * g * (1.0 if j < 20 else (ctx == "A"))
    sim["phenotype_values"] = (sim.phenotype_values.dims, Y)
    files = {k: str(p[0]) for k, p in write_simulation(sim, tmp, formats=("zarr", "bed", "covariates"),
                                                       prefix="sim").items()}
    path = tmp / "contexts.txt"
    pd.DataFrame({"s": sim.sample_id.values.astype(str), "c": ctx}).to_csv(path, sep="\t", header=False,
                                                                          index=False)
    return sim, files, path, ctx


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("contexts")
    return (*_study(tmp), tmp)


def test_cli_contexts__nominal_files_equal_single_context_runs(study, tmp_path):
    sim, files, path, ctx, tmp = study
    out = tmp_path / "n"
    assert main(["-q", "cis", files["zarr"], files["bed"], str(out), "--covariates", files["covariates"],
                 "--contexts", str(path), "--no-progress"]) == 0
    for c in ("A", "B"):  # a single run on the context's samples only
        phen = dqtl.read_phenotype_bed(files["bed"])
        phen = phen.isel(samples=np.flatnonzero(ctx == c))
        ref = dqtl.map_cis_nominal(dqtl.open_genotypes(files["zarr"]), phen,
                                   dqtl.read_covariates(files["covariates"], sample_ids=phen.sample_id.values))
        got = pd.concat([pd.read_parquet(f"{out}.{c}.cis_qtl_pairs.{k}.parquet") for k in ("1", "2")])
        assert got["phenotype_id"].tolist() == ref.phenotype_id.values.astype(str).tolist()
        assert got["variant_id"].tolist() == ref.variant_id.values.astype(str).tolist()
        np.testing.assert_allclose(got["slope"], ref.beta.values, rtol=1e-9)
        np.testing.assert_allclose(got["pval_nominal"], ref.p_value.values, rtol=1e-9)
    meta = pd.read_parquet(f"{out}.contexts.meta_pairs.parquet")
    assert meta["n_studies"].eq(2).all() and {"beta_re", "pval_het", "i2"} <= set(meta.columns)


def test_cli_contexts__permute_calls_shared_and_specific(study, tmp_path):
    sim, files, path, ctx, tmp = study
    out = tmp_path / "p"
    assert main(["-q", "cis", files["zarr"], files["bed"], str(out), "--covariates", files["covariates"],
                 "--contexts", str(path), "--mode", "permute", "--permutations", "300",
                 "--no-progress"]) == 0
    for c in ("A", "B"):
        t = pd.read_csv(f"{out}.{c}.cis_qtl.txt.gz", sep="\t")
        assert len(t) == 60 and "qval" in t
    calls = pd.read_csv(f"{out}.contexts.txt.gz", sep="\t").set_index("phenotype_id")
    pid = sim.phenotype_id.values.astype(str)
    shared, specific, null = pid[:20], pid[20:40], pid[40:]
    assert (calls.loc[shared, "call"] == "shared").mean() >= 0.8
    assert (calls.loc[specific, "call"] == "specific").mean() >= 0.8
    assert (calls.loc[specific, "lead_context"] == "A").all()
    assert (calls.loc[null, "call"] == "none").mean() >= 0.9
    assert calls.loc[shared, "direction_agree"].all()
    plots = list(tmp_path.glob("p.contexts.*.png"))
    assert 1 <= len(plots) <= 10


@pytest.mark.parametrize("content, match", [
    (lambda ids: "".join(f"{s}\t{'A' if i < 295 else 'B'}\n" for i, s in enumerate(ids)), "has 5 samples"),
    (lambda ids: "".join(f"{s}\tA\n" for s in ids[:-2]), "have no context"),
    (lambda ids: "".join(f"{s}\tA\n" for s in ids), "one context"),
])
def test_cli_contexts__bad_input_exit_2_no_output(study, tmp_path, capsys, content, match):
    sim, files, _, _, _ = study
    path = tmp_path / "c.txt"
    path.write_text(content(sim.sample_id.values.astype(str)))
    rc = main(["-q", "cis", files["zarr"], files["bed"], str(tmp_path / "x"), "--covariates",
               files["covariates"], "--contexts", str(path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and match in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.glob("x.*")) and not list(tmp_path.glob(".x.*"))
