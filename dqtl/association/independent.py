"""Conditionally independent cis-eQTLs by forward-backward stepwise selection (as tensorQTL
``map_independent``).

For each eGene (q-value <= FDR in the permutation pass) the top variant seeds the model. Forward:
add the latest selected variant's dosage as a covariate and rescan the window with the same
permutations; keep the new top variant while its ``pval_beta`` <= the global threshold (the
largest ``pval_beta`` among eGenes). Backward: rescan each selected variant's signal conditioned on
all the others; it is kept (with ``rank`` = its forward position) if it passes the threshold and
its top variant is not already kept. Each round runs every still-active gene in one parallel graph.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from dqtl.association.permutation import (
    ConditionOn,
    PermutationSpec,
    cis_permutation_graph,
    dataset_to_frame,
    frame_to_dataset,
    results_table,
    with_groups,
)
from dqtl.compute import compute
from dqtl.errors import InputError
from dqtl.study import StudyPlan, plan_study

__all__ = ["map_cis_independent"]

log = logging.getLogger(__name__)


def _run(plan: StudyPlan, spec: PermutationSpec, jobs: list[Any], dtype: Any) -> list[dict[str, Any]]:
    tasks = cis_permutation_graph(plan, spec, jobs=jobs, dtype=dtype)
    parts = compute(tasks, label="independent-signal tasks")
    return [r for part in parts for r in part if not r.get("skipped")]


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
    variants = pd.Index(plan.variant_id)
    top_ids = signif["variant_id"].astype(str).to_numpy()
    if variants.is_unique:
        top_index = variants.get_indexer(top_ids)
    else:  # the last of duplicated IDs, as a dict would
        last = {v: i for i, v in enumerate(plan.variant_id)}
        top_index = np.array([last.get(v, -1) for v in top_ids], dtype=np.int64)
    if (top_index < 0).any():
        raise InputError(
            f"variant {top_ids[top_index < 0][0]} of the permutation results is not in the genotypes: "
            "give the permutation results of these genotypes (cis --mode permute)")
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
    selected: dict[str, list[int]] = {u: [int(v)] for u, v in zip(signif[key].astype(str), top_index, strict=True)}
    first_rows = {str(u): r for u, (_, r) in zip(signif[key].astype(str), signif.iterrows(), strict=True)}
    forward_rows: dict[str, list[Any]] = {u: [first_rows[u]] for u in units}

    active = set(units)
    while active:
        # the selected variants' dosages extend each scan's basis inside its task (read from
        # the block the task decodes anyway)
        jobs: list[tuple[int, Any, Any]] = []
        for u in sorted(active):
            extra = ConditionOn(np.asarray(selected[u], dtype=np.int64))
            jobs += [(i, extra, u) for i in units[u]]
        rows = _run(plan, spec, jobs, dtype)
        got = {r["tag"]: r for r in rows}
        nxt = set()
        for u in active:
            r = got.get(u)
            if r is None or not np.isfinite(r["pval_beta"]) or r["pval_beta"] > threshold:
                continue
            if r["variant_index"] in selected[u] or len(selected[u]) >= max_signals:
                continue
            selected[u].append(int(r["variant_index"]))
            forward_rows[u].append(r)
            nxt.add(u)
        active = nxt

    # backward pass
    out_rows: list[dict[str, Any]] = []
    multi = [u for u in units if len(selected[u]) > 1]
    single = [u for u in units if len(selected[u]) == 1]
    if multi:
        jobs = []
        for u in multi:
            for k, v in enumerate(selected[u], 1):
                others = ConditionOn(np.asarray([w for w in selected[u] if w != v], dtype=np.int64))
                jobs += [(i, others, (u, k)) for i in units[u]]
        rows = _run(plan, spec, jobs, dtype)
        by_tag = {r["tag"]: r for r in rows}
        for u in multi:
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
