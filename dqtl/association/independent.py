"""Conditionally independent cis-eQTLs by forward-backward stepwise selection (as tensorQTL
``map_independent``).

For each eGene (q-value <= FDR in the permutation pass) the top variant seeds the model. Forward:
add the latest selected variant's dosage as a covariate and rescan the window with the same
permutations; keep the new top variant while its ``pval_beta`` <= the global threshold (the
largest ``pval_beta`` among eGenes). Backward: rescan each selected variant's signal conditioned on
all the others; it is kept (with ``rank`` = its forward position) if it passes the threshold and
its top variant is not already kept. A task of neighbouring eGenes runs their forward and backward
scans on its block, decoded once, with no barrier between the tasks' rounds (the units are
independent of each other).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from dqtl.association.permutation import (
    ConditionOn,
    GeneInput,
    Opaque,
    PermutationSpec,
    block_tasks,
    dataset_to_frame,
    frame_to_dataset,
    gene_inputs,
    genes_kernel,
    results_table,
    rows_spanned,
    use_bf16_rows,
    with_groups,
)
from dqtl.association.permutation_kernel import PermutationBatches
from dqtl.compute import compute
from dqtl.errors import InputError
from dqtl.io.variant_ids import variant_rows
from dqtl.kernels.genotypes import decode_block
from dqtl.study import StudyPlan, plan_study

__all__ = ["map_cis_independent"]

log = logging.getLogger(__name__)


def _conditioned_on(gene: GeneInput, variants: list[int], tag: Any) -> GeneInput:
    """``gene`` (conditioned on its unit's first variant) conditioned on ``variants`` instead."""
    assert gene.condition is not None
    return dataclasses.replace(gene, condition=(np.asarray(variants, dtype=np.int64), *gene.condition[1:]),
                               tag=tag)


def _units_task(block: np.ndarray, b0: int, sample_index: np.ndarray, task_genes: Opaque,
                batches_by_n: dict[int, PermutationBatches], spec: PermutationSpec, *, ploidy: int,
                maf_threshold: float, dtype: Any, threshold: float, max_signals: int,
                bf16_rows: bool = False) -> dict[str, Any]:
    """Forward-backward selection of a task's significant units (phenotypes or groups; a gene's
    ``tag`` is its unit, its conditioning variant the unit's top variant) on its block, decoded
    once for all their scans: forward, condition each unit on its selected variants and rescan
    while its new top variant passes ``threshold``; backward, rescan each selected variant's
    signal conditioned on the others. Each round scans the task's active units in one
    :func:`genes_kernel` call (the statistics of a permutation pass task; one phenotype's
    results do not depend on the others). ``bf16_rows``: the run's :func:`use_bf16_rows`."""
    members: dict[Any, list[GeneInput]] = {}
    for g in task_genes.value:
        members.setdefault(g.tag, []).append(g)
    gb = decode_block(block, sample_index, ploidy=ploidy, maf_threshold=maf_threshold, float32_calls=True)

    def scan(jobs: list[tuple[list[int], Any, Any]]) -> dict[Any, dict[str, Any]]:
        run = [_conditioned_on(g, sel, tag) for sel, u, tag in jobs for g in members[u]]
        rows = genes_kernel(gb, b0, run, batches_by_n, spec, dtype=dtype, group_dof_factor=0.25,
                            bf16_rows=bf16_rows)
        return {r["tag"]: r for r in rows if not r.get("skipped")}

    selected = {u: [int(gs[0].condition[0][0])] for u, gs in members.items()}  # type: ignore[index]
    active = set(members)
    while active:
        got = scan([(selected[u], u, u) for u in sorted(active)])
        nxt = set()
        for u in active:
            r = got.get(u)
            if r is None or not np.isfinite(r["pval_beta"]) or r["pval_beta"] > threshold:
                continue
            if r["variant_index"] in selected[u] or len(selected[u]) >= max_signals:
                continue
            selected[u].append(int(r["variant_index"]))
            nxt.add(u)
        active = nxt
    backward = scan([([w for w in sel if w != v], u, (u, k)) for u, sel in sorted(selected.items())
                     if len(sel) > 1 for k, v in enumerate(sel, 1)])
    return {"selected": selected, "backward": backward}


#: significant units per task of the selection (fewer: better balance across threads; more:
#: fewer per-scan costs, the beta fits of a round vectorised over more phenotypes)
UNITS_PER_TASK = 16


def _selection_graph(plan: StudyPlan, spec: PermutationSpec, units: dict[str, list[int]],
                     first: dict[str, int], *, dtype: Any, threshold: float,
                     max_signals: int) -> list[Any]:
    """Tasks of neighbouring significant units (each unit's phenotypes in one task, each
    conditioned on its unit's top variant), cut as the permutation pass cuts its tasks."""
    jobs: list[tuple[int, Any, Any]] = [(i, ConditionOn(np.asarray([first[u]], dtype=np.int64)), u)
                                        for u in units for i in units[u]]
    by_unit: dict[str, list[GeneInput]] = {}
    for g in gene_inputs(plan, jobs):  # sorted by window
        by_unit.setdefault(g.tag, []).append(g)
    ordered = sorted(by_unit.values(), key=lambda gs: rows_spanned(gs)[0])
    return block_tasks(plan, _units_task, ordered, spec, variants_per_task=None,
                       genes_per_task=UNITS_PER_TASK, dtype=dtype, threshold=threshold,
                       max_signals=max_signals, bf16_rows=use_bf16_rows([g for u in ordered for g in u]))


def map_cis_independent(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None,
    cis_results: xr.Dataset | pd.DataFrame,
    *,
    fdr: float = 0.05,
    permutations: PermutationSpec | str | int = 10_000,
    seed: int | None = 0,
    window: int = 1_000_000,
    maf_threshold: float = 0.0,
    phenotype_groups: Any = None,
    dtype: Any = np.float64,
    allow_sample_intersection: bool = False,
    max_signals: int = 20,
    plan: StudyPlan | None = None,
) -> pd.DataFrame:
    """Forward-backward conditionally independent cis-eQTLs for the eGenes of ``cis_df``.

    Parameters
    ----------
    cis_df
        Output of :func:`dqtl.association.permutation.map_cis_permutations` (with ``q_value``),
        or a DataFrame with the same names.
    permutations, seed
        Must be those of the permutation pass (the same permutations are reused).

    Returns
    -------
    xarray.Dataset
        Dimension ``phenotypes`` (one entry per signal): the variables of the permutation
        results without ``q_value`` and ``p_value_nominal_threshold``, plus ``rank``.
    """
    cis_df = dataset_to_frame(cis_results)
    spec = permutations if isinstance(permutations, PermutationSpec) else PermutationSpec.parse(permutations, seed=seed)
    if "q_value" not in cis_df:
        raise InputError("the permutation results have no q-values (qval): run cis --mode permute first")
    key = "group_id" if phenotype_groups is not None else "phenotype_id"
    signif = cis_df[cis_df["q_value"] <= fdr]
    if signif.empty:
        raise InputError(f"no significant phenotypes at FDR <= {fdr}: nothing to condition on")
    threshold = float(signif["p_value_beta"].max())
    if plan is None:
        plan = plan_study(genotypes, phenotypes, covariates, window=window,
                          maf_threshold=maf_threshold,
                          allow_sample_intersection=allow_sample_intersection)
    if phenotype_groups is not None and plan.phenotype_group_index is None:
        plan = with_groups(plan, phenotype_groups)
    pid_index = {p: i for i, p in enumerate(plan.phenotype_id)}
    log.info("independent: %d significant %ss, pval_beta threshold %.4g", len(signif), key.split("_")[0], threshold)

    # members (phenotype indices) of each significant unit
    units: dict[str, list[int]] = {}
    for _, row in signif.iterrows():
        if key == "group_id":
            gi, gid = plan.phenotype_group_index, plan.group_id
            if gi is None or gid is None:
                raise InputError("phenotype groups are needed for group-level permutation results")
            members = [i for i, g in enumerate(gi) if gid[g] == row["group_id"]]
        else:
            if row["phenotype_id"] not in pid_index:
                raise InputError(f"phenotype {row['phenotype_id']} of the permutation results is not tested with these inputs")
            members = [pid_index[row["phenotype_id"]]]
        units[str(row[key])] = members
    # each unit's top variant by its ID; an ID that several variants share is the one in the
    # unit's cis window (where the permutation pass found it), else an input error
    top_ids = signif["variant_id"].astype(str).to_numpy()
    spans = [units[str(u)] for u in signif[key]]
    top_index = variant_rows(plan.genotypes, top_ids, source="the permutation results (--cis-results)",
                             windows=(np.array([plan.window_lo[m].min() for m in spans]),
                                      np.array([plan.window_hi[m].max() for m in spans])))
    if (top_index < 0).any():
        raise InputError(
            f"variant {top_ids[top_index < 0][0]} of the permutation results is not in the genotypes: "
            "give the permutation results of these genotypes (cis --mode permute)")
    first = {u: int(v) for u, v in zip(signif[key].astype(str), top_index, strict=True)}
    # each unit's forward and backward scans in one task (its block decoded once; no unit waits
    # for the others between rounds)
    results = compute(_selection_graph(plan, spec, units, first, dtype=dtype, threshold=threshold,
                                       max_signals=max_signals), label="independent-signal tasks")
    selected = {u: sel for res in results for u, sel in res["selected"].items()}
    by_tag = {tag: r for res in results for tag, r in res["backward"].items()}
    out_rows: list[dict[str, Any]] = []
    multi = [u for u in units if len(selected[u]) > 1]
    single = [u for u in units if len(selected[u]) == 1]
    for u in multi:  # backward: a signal is kept if it passes and its top variant is new
        kept: set[int] = set()
        for k in range(1, len(selected[u]) + 1):
            r = by_tag.get((u, k))
            if r is None or not np.isfinite(r["pval_beta"]) or r["pval_beta"] > threshold:
                continue
            if r["variant_index"] in kept:
                continue
            kept.add(int(r["variant_index"]))
            out_rows.append({**r, "rank": k})
    table_rows = pd.DataFrame()
    if out_rows:
        table_rows = results_table(plan, out_rows)
        table_rows.insert(len(table_rows.columns), "rank", [r["rank"] for r in sorted(out_rows, key=lambda r: r["index"])])
    singles = cis_df[cis_df[key].astype(str).isin(single)].copy()
    singles["rank"] = 1
    res = pd.concat([singles, table_rows], ignore_index=True, sort=False)
    order = {p: i for i, p in enumerate(plan.phenotype_id)}
    res["_o"] = res["phenotype_id"].map(order)
    res = res.sort_values(["_o", "rank"], kind="stable").drop(columns="_o").reset_index(drop=True)
    keep_cols = [c for c in cis_df.columns if c not in ("q_value", "p_value_nominal_threshold")] + ["rank"]
    log.info("independent: %d signals in %d %ss", len(res), len(units), key.split("_")[0])
    return frame_to_dataset(res[keep_cols])
