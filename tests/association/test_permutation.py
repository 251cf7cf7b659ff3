"""cis permutation pass on simulated data: calibration, recovery vs tensorQTL, invariance, modes."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from distributed import Client
from scipy import stats

import dqtl
from dqtl.association.permutation import (
    PermutationSpec,
    cis_permutation_graph,
    results_table,
    sample_permutations,
)
from dqtl.association.permutation import map_cis_permutations as _map_cis_permutations
from dqtl.compute import compute
from dqtl.errors import InputError
from dqtl.io.results import to_tensorqtl_cis
from dqtl.study import plan_study
from tests.conftest import REFERENCE

SIM_REF = REFERENCE / "tensorqtl_sim"


def map_cis_permutations(*args, **kwargs):
    """The API result seen through the file writer (tensorQTL's columns), as users compare it."""
    return to_tensorqtl_cis(_map_cis_permutations(*args, **kwargs))


def test_map_cis_permutations__returns_dataset_with_spelled_out_names(small):
    res = _map_cis_permutations(small, small, small, permutations=100, seed=1)
    assert res.sizes["phenotypes"] == 60
    for name in ("p_value", "beta", "beta_se", "p_value_perm", "p_value_beta", "q_value",
                 "p_value_nominal_threshold", "n_variants"):
        assert name in res, name
    assert not {"pval_nominal", "slope", "qval", "pval_beta"} & set(res.data_vars)
    assert 0 < res.attrs["pi0"] <= 1
    table = to_tensorqtl_cis(res)
    assert list(table.columns[:6]) == ["phenotype_id", "num_var", "beta_shape1", "beta_shape2",
                                       "true_df", "pval_true_df"]


@pytest.fixture(scope="module")
def small():
    return dqtl.simulate(n_samples=100, n_variants=1500, n_phenotypes=60, n_covariates=2, n_hidden=0,
                         fraction_egenes=0.3, effect_size=0.8, seed=5)


def test_sample_permutations__same_stream_as_tensorqtl_seeding():
    rs = np.random.RandomState(123456)
    expected = np.array([rs.permutation(90) for _ in range(50)])
    np.testing.assert_array_equal(sample_permutations(90, 50, 123456), expected)


def test_map_cis_permutations__recovers_planted_egenes_at_tensorqtl_rate():
    sys.path.insert(0, str(SIM_REF))
    try:
        from generate import NPERM, SEED, SIM_PARAMS
    finally:
        sys.path.remove(str(SIM_REF))
    ds = dqtl.simulate(**SIM_PARAMS)
    ours = map_cis_permutations(ds, ds, ds, permutations=NPERM, seed=SEED)
    ref = pd.read_csv(SIM_REF / "sim.cis_qtl.txt.gz", sep="\t")
    planted = set(ds.phenotype_id.values[ds.phenotype_is_egene.values])
    found_ours = set(ours.phenotype_id[ours.qval <= 0.05])
    found_tq = set(ref.phenotype_id[ref.qval <= 0.05])
    assert len(found_tq & planted) == 44
    assert len(found_ours & planted) >= len(found_tq & planted)
    assert len(found_ours - planted) <= len(found_tq - planted) + 1
    m = ours.merge(ref, on="phenotype_id", suffixes=("", "_tq"))
    assert (m.variant_id == m.variant_id_tq).mean() >= 0.99
    assert stats.spearmanr(m.pval_beta, m.pval_beta_tq)[0] >= 0.999


def test_map_cis_permutations__null_pval_beta_uniform():
    ds = dqtl.simulate(n_samples=80, n_variants=3000, n_phenotypes=150, n_covariates=2, n_hidden=0,
                       fraction_egenes=0.0, seed=21)
    res = map_cis_permutations(ds, ds, ds, permutations=1000, seed=3)
    assert res.beta_converged.all()
    ks = stats.kstest(res.pval_beta, "uniform")
    assert ks.pvalue > 0.01, ks
    # empirical and beta-approximated p-values agree for null genes
    assert stats.pearsonr(res.pval_perm, res.pval_beta)[0] > 0.98


def test_cis_permutation_graph__results_identical_for_any_task_grouping(small):
    plan = plan_study(small, small, small)
    spec = PermutationSpec(nperm_min=300, nperm_max=300, seed=9)
    runs = []
    for vpt, gpt in ((20_000, 64), (50, 1), (400, 7)):
        tasks = cis_permutation_graph(plan, spec, variants_per_task=vpt, genes_per_task=gpt)
        rows = [r for part in compute(tasks) for r in part]
        runs.append(results_table(plan, rows))
    for other in runs[1:]:
        pd.testing.assert_frame_equal(runs[0], other)


def test_permutation_tasks_come_in_multiples_of_the_threads(small):
    """11 tasks on 2 threads leave one thread idle for the last task: the units are cut into
    12 tasks of equal window cost instead (10 tasks likewise: equal costs), in order, every
    phenotype once; the last task of each thread is cut in two."""
    from dqtl.association.permutation import balanced_tasks, gene_inputs

    genes = gene_inputs(plan_study(small, small, small))
    units = [[g] for g in genes]
    groups = [units[i:i + 6] for i in range(0, 60, 6)] + [units[60:]]  # 10 of 6 units, 1 empty
    groups = [g for g in groups if g]
    assert len(groups) == 10
    # a multiple: cut to equal costs as well (groups of equal genes differ in window cost, and
    # dask need not run the tasks in order), the last two halved
    tasks = balanced_tasks(groups, 2, 64, 0)
    assert len(tasks) == 12
    assert [g.index for t in tasks for g in t] == [g.index for grp in groups for u in grp for g in u]
    cost = np.array([sum(g.hi - g.lo for g in t) for t in tasks])
    by_group = np.array([sum(g.hi - g.lo for u in grp for g in u) for grp in groups])
    assert np.ptp(cost[:8]) < np.ptp(by_group) and cost[:8].max() <= 1.25 * cost[:8].mean()
    odd = groups[:9]  # 9 tasks of 6 units
    tasks = balanced_tasks(odd, 2, 64, 0)
    assert len(tasks) == 12
    assert [g.index for t in tasks for g in t] == [g.index for grp in odd for u in grp for g in u]
    cost = [sum(g.hi - g.lo for g in t) for t in tasks]
    mean = sum(cost[:8]) / 8
    assert max(cost[:8]) <= 1.5 * mean and max(cost[8:]) <= 0.75 * mean
    assert len(balanced_tasks(odd, 1, 64, 0)) == 9
    # equal costs would need 7 genes in a task: the 9 kept, the last two halved
    sizes = [len(t) for t in balanced_tasks(odd, 2, 6, 0)]
    assert sizes[:7] == [6] * 7 and len(sizes) == 11 and sum(sizes[7:]) == 12 and max(sizes[7:]) < 6


def test_few_permutation_tasks_are_cut_within_their_groups(small):
    """Fewer tasks than 8 per thread (a few eGenes with wide windows): each group is cut into
    pieces of about equal cost, never spanning more rows than the group; every phenotype once,
    in order."""
    from dqtl.association.permutation import _span, balanced_tasks, gene_inputs

    genes = gene_inputs(plan_study(small, small, small))
    units = [[g] for g in genes]
    groups = [units[0:20], units[20:40], units[40:]]
    tasks = balanced_tasks(groups, 2, 64)  # 3 groups -> about 16 tasks, a multiple of 2
    assert 14 <= len(tasks) <= len(units) and len(tasks) % 2 == 0
    assert [g.index for t in tasks for g in t] == [g.index for u in units for g in u]
    widest = max(_span([g for u in grp for g in u]) for grp in groups)
    assert max(_span(t) for t in tasks) <= widest
    assert len(balanced_tasks(groups, 1, 64)) == 3  # one thread: no cut


@pytest.mark.distributed
def test_map_cis_permutations__distributed_identical_to_threads(small, dask_cluster):
    local = map_cis_permutations(small, small, small, permutations=300, seed=4)
    with Client(dask_cluster.address) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        dist = map_cis_permutations(small, small, small, permutations=300, seed=4)
    pd.testing.assert_frame_equal(local, dist)


def test_map_cis_permutations__adaptive_stops_null_genes_early(small):
    fixed = map_cis_permutations(small, small, small, permutations=2000, seed=1)
    adaptive = map_cis_permutations(small, small, small, permutations="200,2000", seed=1)
    # a gene stops once 10 permutation statistics reach its observed one: genes with fewer than 10
    # such permutations out of 2000 run them all and get the fixed run's empirical p-value
    hits = np.round(fixed.pval_perm * 2001 - 1)
    strong = hits < 10
    assert strong.sum() >= 5
    assert (adaptive.n_permutations[strong] == 2000).all()
    assert (adaptive.n_permutations[~strong] < 2000).all()
    assert (adaptive.n_permutations[fixed.pval_perm > 0.2] <= 400).all()
    # strong genes saw the same permutations: identical empirical p-values
    np.testing.assert_array_equal(adaptive.pval_perm[strong], fixed.pval_perm[strong])
    assert stats.spearmanr(adaptive.pval_beta, fixed.pval_beta)[0] > 0.95


def test_map_cis_permutations__phenotype_groups_take_max_over_members(small):
    ids = small.phenotype_id.values
    groups = {p: f"grp{i // 2}" for i, p in enumerate(ids)}
    single = map_cis_permutations(small, small, small, permutations=300, seed=2)
    grouped = map_cis_permutations(small, small, small, permutations=300, seed=2, phenotype_groups=groups)
    assert len(grouped) == len(set(groups.values()))
    assert {"group_id", "group_size"} <= set(grouped.columns)
    assert (grouped.group_size == 2).all()
    s = single.set_index("phenotype_id")
    for _, row in grouped.iterrows():
        members = [p for p, g in groups.items() if g == row.group_id]
        best = s.loc[members].pval_nominal.idxmin()
        assert row.phenotype_id == best
        # the max over members per permutation can only make the group's empirical p larger
        assert row.pval_perm >= s.loc[best].pval_perm - 1e-12


def test_map_cis_permutations__single_variant_window_and_bad_spec(small):
    # a tiny window leaves some genes with one cis variant: no crash, flagged when the fit fails
    res = map_cis_permutations(small, small, small, permutations=200, seed=1, window=3_000)
    assert (res.num_var >= 1).all()
    assert np.isfinite(res.pval_perm).all()
    ok = res.beta_converged
    assert np.isfinite(res.pval_beta[ok]).all()
    with pytest.raises(InputError, match="--permutations"):
        PermutationSpec.parse("0")
    with pytest.raises(InputError, match="--permutations"):
        PermutationSpec.parse("x,y")


def _signif_pairs(sim, tmp_path, name, monkeypatch, bound, **kwargs):
    from dqtl.association import signif_pairs
    from dqtl.workflows import run_cis_permute

    monkeypatch.setattr(signif_pairs, "BOUND", bound)
    run_cis_permute(sim, sim, sim, str(tmp_path / name), permutations=300, seed=2, **kwargs)
    return pd.read_parquet(tmp_path / f"{name}.cis_qtl.signif_pairs.parquet")


@pytest.mark.parametrize("grouped", [False, True])
def test_significant_pairs_from_the_permutation_tasks_equal_a_nominal_pass(small, tmp_path, monkeypatch,
                                                                          caplog, grouped):
    """The permutation tasks keep each phenotype's pairs with pval_nominal <= BetaPPF(0.5; its
    shapes), a superset of its significant pairs whenever the genome-wide threshold p_t <= 0.5;
    the run filters them. With the bound at 0 (p_t above it) the run takes the nominal pass over
    the significant phenotypes instead: the same pairs, the same values to rounding."""
    kwargs = {"phenotype_groups": {p: f"grp{i // 2}" for i, p in enumerate(small.phenotype_id.values)}} \
        if grouped else {}
    with caplog.at_level("INFO", logger="dqtl.workflows"):
        fast = _signif_pairs(small, tmp_path, "fast", monkeypatch, 0.5, **kwargs)
    assert "a nominal pass" not in caplog.text
    with caplog.at_level("INFO", logger="dqtl.workflows"):
        ref = _signif_pairs(small, tmp_path, "ref", monkeypatch, 0.0, **kwargs)
    assert "significant pairs: a nominal pass" in caplog.text
    assert len(ref) >= 10 and ref["phenotype_id"].nunique() >= 5
    assert list(fast.columns) == list(ref.columns) and (fast.dtypes == ref.dtypes).all()
    for c in ("phenotype_id", "variant_id", "start_distance", "af", "ma_samples", "ma_count",
              "pval_nominal_threshold"):
        assert (fast[c].to_numpy() == ref[c].to_numpy()).all(), c
    for c in ("pval_nominal", "slope", "slope_se"):
        np.testing.assert_allclose(fast[c], ref[c], rtol=1e-11, err_msg=c)
