"""The significant pairs of a permutation run, kept by the permutation tasks.

tensorQTL's ``signif_pairs``: the nominal pairs of the significant phenotypes (every member of a
significant group) with ``pval_nominal <= pval_nominal_threshold``, the phenotype's
``BetaPPF(p_t; shape1, shape2)``, where ``p_t`` (the genome-wide ``pval_beta`` threshold) is known
only once every phenotype is done. A permutation task knows each phenotype's shapes, so it keeps
the pairs with ``pval_nominal <= BetaPPF(BOUND; shape1, shape2)`` (:func:`keep_candidates`): since
BetaPPF increases with ``p_t``, a superset of the phenotype's significant pairs whenever
``p_t <= BOUND``. The run then filters them (:func:`significant_pairs`) instead of decoding the
significant phenotypes' windows again for a nominal pass; when ``p_t > BOUND`` (nearly every
phenotype significant) it runs that nominal pass.

The statistics are the nominal pass's (``stats_from_r`` of the float64 correlation with the
phenotype's residual norms) computed from the task's residualized block: the same pairs, with
p-values equal to the nominal pass's to rounding (~1e-15 relative).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dqtl.io.variant_ids import ids_at
from dqtl.kernels.stats import r_threshold, stats_from_r
from dqtl.multitest.beta import nominal_threshold
from dqtl.study import StudyPlan

__all__ = ["BOUND", "keep_candidates", "significant_pairs"]

#: the largest genome-wide threshold p_t the tasks' candidates serve (p_t above: a nominal pass)
BOUND = 0.5

_FIELDS = ("phenotype", "variant", "r", "g_norm", "p_norm", "dof", "af", "ma_samples", "ma_count")
_WINDOW_KEYS = ("w_c", "r_idx", "r_gnorm", "w_block", "w_y", "w_pnc", "w_gamma", "block_offset")


def keep_candidates(row: dict[str, Any], members: Sequence[dict[str, Any]], gb: Any, b0: int,
                    bound: float = BOUND) -> None:
    """Attach to a task's result ``row`` (a phenotype, or a group represented by its strongest
    member) the pairs of its ``members`` with ``pval_nominal <= BetaPPF(bound; row's shapes)``,
    as ``row["pairs"]`` (arrays; global variant indices); drop the members' window vectors.

    Each member carries (:func:`dqtl.association.permutation_kernel.permutation_gene_kernel`) the
    float32 screen ``w_c`` of its testable variants ``r_idx`` (window positions; ``|<G_v, y>|``
    with unit-norm residualized genotypes ``G_v`` and the unit-norm centred phenotype ``y``,
    within ``w_gamma`` of the exact value), their residual norms ``r_gnorm``, the window's
    residualized block ``w_block`` and vector ``w_y`` (``w_block.res64(rows) @ w_y``: the float64
    correlations), ``w_pnc``
    (``||P y||``: ``r_v = <G_v, y> / ||P y||``) and ``block_offset`` (its window's first row in
    the task's decoded block ``gb``, which starts at variant ``b0``). The float64 correlations
    are computed for the variants the screen cannot rule out (``|w_c| >= r* ||P y|| - 2 w_gamma``),
    then selected exactly as from every variant's.
    """
    cut = float(nominal_threshold(bound, row.get("beta_shape1", math.nan), row.get("beta_shape2", math.nan)))
    parts: list[dict[str, np.ndarray]] = []
    for m in members if np.isfinite(cut) and cut > 0 else ():
        if m.get("skipped") or "w_c" not in m:
            continue
        idx, gn, a = m["r_idx"], m["r_gnorm"], m["block_offset"]
        # |r| >= r* <=> p <= cut; the relative slack keeps a pair at the cut whatever the rounding
        r_cut = float(r_threshold(cut, m["dof"])) * (1.0 - 1e-9)
        pre = np.flatnonzero(m["w_c"] >= r_cut * m["w_pnc"] - 2.0 * m["w_gamma"])
        r_pre = m["w_block"].res64(idx[pre]) @ m["w_y"]
        keep = np.abs(r_pre) >= r_cut
        sel, r_sel = pre[keep], r_pre[keep]
        if not sel.size:
            continue
        v = a + idx[sel]  # rows of the block
        ms, mc = gb.minor_allele(v)
        parts.append({
            "phenotype": np.full(sel.size, m["index"], dtype=np.int64),
            "variant": (b0 + v).astype(np.int64), "r": r_sel, "g_norm": gn[sel],
            "p_norm": np.full(sel.size, m["p_norm"]), "dof": np.full(sel.size, m["dof"], dtype=np.int64),
            "af": gb.af[v], "ma_samples": np.asarray(ms, dtype=np.int32),
            "ma_count": np.asarray(mc, dtype=np.int32),
        })
    for m in (*members, row):
        for k in _WINDOW_KEYS:
            m.pop(k, None)
    row["pairs"] = {k: np.concatenate([p[k] for p in parts]) for k in _FIELDS} if parts else None


def significant_pairs(plan: StudyPlan, cis_df: Any, rows: Sequence[dict[str, Any]], fdr: float,
                      bound: float) -> Any:
    """The significant pairs (tensorQTL's ``signif_pairs`` columns) from the tasks' candidates
    kept for ``bound``; None when they cannot serve (``p_t > bound``, or rows without
    candidates)."""
    import pandas as pd
    import xarray as xr

    from dqtl.io.results import to_tensorqtl_pairs

    p_t = float(cis_df.attrs.get("pval_threshold", math.nan))
    if not np.isfinite(p_t) or p_t > bound or any("pairs" not in r for r in rows if not r.get("skipped")):
        return None
    # each result row is the cis table's row of its phenotype_id (a group's: its strongest member)
    thr = pd.Series(cis_df["pval_nominal_threshold"].to_numpy(dtype=float),
                    index=cis_df["phenotype_id"].astype(str).to_numpy())
    sig = set(cis_df.loc[cis_df["qval"] <= fdr, "phenotype_id"].astype(str))
    parts, limits = [], []
    for r in rows:
        pid = str(plan.phenotype_id[r["index"]]) if not r.get("skipped") else None
        if pid is None or pid not in sig or r["pairs"] is None:
            continue
        parts.append(r["pairs"])
        limits.append(np.full(len(r["pairs"]["r"]), thr[pid]))
    cols = {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, dtype=np.int64 if k in (
        "phenotype", "variant", "dof") else np.float64) for k in _FIELDS}
    limit = np.concatenate(limits) if limits else np.zeros(0)
    _, p, slope, se = stats_from_r(cols["r"], cols["dof"], cols["g_norm"], cols["p_norm"])
    keep = np.flatnonzero(p <= limit)
    order = keep[np.lexsort((cols["variant"][keep], cols["phenotype"][keep]))]  # the nominal pass's order
    pi, vi = cols["phenotype"][order], cols["variant"][order]
    pos = plan.variant_position[vi]
    ds = xr.Dataset({k: ("pairs", v) for k, v in {
        "phenotype_id": plan.phenotype_id[pi], "variant_id": ids_at(plan.genotypes, vi),
        "start_distance": pos - (plan.phenotype_start[pi] + 1), "af": cols["af"][order],
        "ma_samples": cols["ma_samples"][order], "ma_count": cols["ma_count"][order],
        "p_value": p[order], "beta": slope[order], "beta_se": se[order],
    }.items()})
    out = to_tensorqtl_pairs(ds)
    out["pval_nominal_threshold"] = limit[order]
    return out
