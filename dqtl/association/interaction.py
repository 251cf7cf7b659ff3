"""cis genotype x interaction mapping (tensorQTL's interaction mode) on the study plan.

Per pair the model ``y ~ C + g + i_1..i_k + g:i_1..g:i_k`` (see :mod:`dqtl.kernels.interaction`),
on the cis batches of :func:`dqtl.association.cis.cis_batches`: one task decodes its variant range
once, residualizes the genotypes, the terms and their products on each missing-value group's
covariate basis once (the Gram blocks are shared by every phenotype of the batch) and fits each
phenotype's window. Variants are tested when polymorphic, passing the plan's MAF filter and, for
one term, tensorQTL's per-half filter (samples split on the term's value: minor allele frequency
at least ``maf_threshold_interaction`` in both halves). Per phenotype the pair with the largest
``|t|`` of an interaction term is the top association, with eigenMT's number of tests
(``tests_emt``), ``pval_emt = min(tests_emt * pval_gi, 1)`` and BH over phenotypes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import dask
import numpy as np
import pandas as pd
import xarray as xr

from dqtl.association.cis import cis_batches, decode_block_counts
from dqtl.compute import compute
from dqtl.errors import InputError
from dqtl.kernels.genotypes import decode_block
from dqtl.kernels.interaction import eigenmt_tests, half_maf_mask, interaction_gram, interaction_ols
from dqtl.study import StudyPlan, delayed_rows, plan_study

__all__ = ["interaction_terms", "stat_columns", "interaction_batch_kernel", "interaction_graph",
           "map_cis_interaction", "top_table", "interaction_permutation_kernel",
           "interaction_permutation_graph", "permutation_table", "map_cis_interaction_permute",
           "COUNTERS", "PAIR_HEAD"]

log = logging.getLogger(__name__)

#: per-run counters summed over tasks
COUNTERS = ("n_monomorphic", "n_maf_filtered", "n_imputed_calls", "n_variants_imputed",
            "n_interaction_maf_filtered", "n_singular")

#: the pair columns before the statistics (tensorQTL's, BED with TSS positions)
PAIR_HEAD = ("phenotype_id", "variant_id", "start_distance", "af", "ma_samples", "ma_count")


def stat_columns(names: Sequence[str]) -> list[str]:
    """tensorQTL's statistic columns for interaction terms ``names``, in its order.

    >>> stat_columns(["sex"])
    ['pval_g', 'b_g', 'b_g_se', 'pval_i', 'b_i', 'b_i_se', 'pval_gi', 'b_gi', 'b_gi_se']
    >>> stat_columns(["a", "b"])[3:9]
    ['pval_a', 'b_a', 'b_a_se', 'pval_g-a', 'b_g-a', 'b_g-a_se']
    """
    cols = ["pval_g", "b_g", "b_g_se"]
    if len(names) == 1:
        return cols + ["pval_i", "b_i", "b_i_se", "pval_gi", "b_gi", "b_gi_se"]
    for v in names:
        cols += [f"pval_{v}", f"b_{v}", f"b_{v}_se", f"pval_g-{v}", f"b_g-{v}", f"b_g-{v}_se"]
    return cols


def interaction_terms(plan: StudyPlan, interaction: Any) -> tuple[np.ndarray, list[str]]:
    """The interaction terms on the plan's analysis samples: ``(values (n, k), names)``.

    ``interaction``: a DataFrame or Series indexed by sample ID (one column per term). Every
    analysis sample must have finite values; a term must vary and must not be a combination of
    the covariates; ``2k`` more degrees of freedom must remain.
    """
    if isinstance(interaction, pd.Series):
        interaction = interaction.to_frame(name=interaction.name or "i")
    if not isinstance(interaction, pd.DataFrame):
        raise InputError("interaction: expected a pandas DataFrame or Series indexed by sample ID")
    df = interaction.copy()
    df.index = df.index.astype(str)
    if df.index.duplicated().any():
        raise InputError(f"interaction: sample {df.index[df.index.duplicated()][0]} appears twice")
    samples = np.asarray(plan.sample_id).astype(str)
    missing = [s for s in samples if s not in df.index]
    if missing:
        raise InputError(f"interaction: {len(missing)} of the {samples.size} analysis samples have no "
                         f"value (e.g. {', '.join(missing[:3])}); give every sample a value")
    try:
        values = df.loc[samples].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("interaction: values must be numeric") from None
    names = [str(c) for c in df.columns]
    if not np.isfinite(values).all():
        raise InputError("interaction: values must be finite (no NA/NaN/Inf)")
    k = values.shape[1]
    for j, name in enumerate(names):
        if np.ptp(values[:, j]) == 0:
            raise InputError(f"interaction: term {name!r} is constant over the analysis samples")
    for grp in plan.groups:
        v = values if grp.sample_index is None else values[grp.sample_index]
        if grp.dof - 2 * k < 1:
            raise InputError(f"interaction: {k} term(s) need {2 * k} more degrees of freedom but "
                             f"{grp.n_samples} samples and the covariates leave {grp.dof}: use "
                             "fewer terms or covariates")
        r = grp.basis.transform(v.T)
        small = np.sqrt((r * r).sum(axis=1)) <= 1e-8 * np.sqrt((v * v).sum(axis=0)).clip(1e-300)
        if small.any():
            raise InputError(f"interaction: term {names[int(np.flatnonzero(small)[0])]!r} is a "
                             "linear combination of the covariates; remove it from the covariates "
                             "or the interaction file")
        if k > 1:
            sv = np.linalg.svd(r / np.linalg.norm(r, axis=1, keepdims=True), compute_uv=False)
            if sv[-1] <= 1e-8 * sv[0]:
                raise InputError(f"interaction: the {k} terms are linearly dependent (given the "
                                 "covariates); drop the redundant ones")
    return values, names


def _windows_only(block: np.ndarray, v0: int, count_from: int, parts: Sequence[tuple[Any, ...]],
                  variant_id: np.ndarray, variant_position: np.ndarray) -> tuple[Any, ...]:
    """Keep only the block's variants inside some phenotype's window (a batch of sparse genes
    spans many variants no window holds): the rows are renumbered so that every window stays a
    contiguous range ``[lo, hi)`` relative to the new ``v0 = 0``; ``count_from`` follows."""
    n = block.shape[0]
    covered = np.zeros(n, dtype=bool)
    for part in parts:
        for a, b in zip(part[5], part[6], strict=True):
            covered[max(int(a) - v0, 0):max(int(b) - v0, 0)] = True
    if covered.all():
        return block, v0, count_from, parts, variant_id, variant_position
    sel = np.flatnonzero(covered)
    new_of = np.cumsum(covered) - 1  # block row -> new row (valid where covered)
    out_parts = []
    for part in parts:
        lo, hi = np.asarray(part[5]) - v0, np.asarray(part[6]) - v0
        empty = hi <= lo
        nlo = np.where(empty, 0, new_of[np.clip(lo, 0, n - 1)])
        nhi = np.where(empty, 0, new_of[np.clip(hi - 1, 0, n - 1)] + 1)
        out_parts.append((*part[:5], nlo, nhi, *part[7:]))
    first_counted = int(np.searchsorted(sel, max(count_from - v0, 0)))
    return (np.asarray(block)[sel], 0, first_counted, out_parts, np.asarray(variant_id)[sel],
            np.asarray(variant_position)[sel])


class _Batch(NamedTuple):
    """A batch's block restricted to its windows and decoded once (see :func:`_decode_windows`)."""

    block: np.ndarray
    v0: int
    parts: list[tuple[Any, ...]]
    dec: Any
    counted: slice
    counts: dict[str, int]
    ma_samples: np.ndarray
    ma_count: np.ndarray
    vid: np.ndarray
    pos: np.ndarray


def _decode_windows(block: np.ndarray, v0: int, count_from: int, parts: Sequence[tuple[Any, ...]],
                    variant_id: np.ndarray, variant_position: np.ndarray, sample_index: np.ndarray,
                    *, ploidy: int, maf_threshold: float) -> _Batch:
    """What both interaction kernels start from: the variants inside some window, decoded, with
    the counters of the rows this batch counts, minor-allele statistics, IDs and positions."""
    block, v0, count_from, parts, variant_id, variant_position = _windows_only(
        block, v0, count_from, parts, variant_id, variant_position)
    dec = decode_block(block, sample_index, ploidy=ploidy, maf_threshold=maf_threshold)
    counted = slice(max(count_from - v0, 0), None)
    ma_samples, ma_count = dec.minor_allele()
    return _Batch(block, v0, list(parts), dec, counted, decode_block_counts(dec, counted),
                  ma_samples, ma_count, np.asarray(variant_id).astype(str),
                  np.asarray(variant_position, dtype=np.int64))


def _testable(dec: Any, sidx: np.ndarray | None, T: np.ndarray, maf_threshold_interaction: float,
              ploidy: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A group's dosages, its testable variants (polymorphic on its samples, the plan's MAF, and
    for one term the per-half MAF filter) and those dropped by the per-half filter alone."""
    G = dec.G if sidx is None else dec.G[:, sidx]
    ok = dec.valid & (G.max(axis=1) > G.min(axis=1))
    dropped = np.zeros_like(ok)
    if T.shape[1] == 1 and maf_threshold_interaction > 0:
        half = half_maf_mask(G, T[:, 0], maf_threshold_interaction, ploidy)
        dropped = ok & ~half
        ok = ok & half
    return G, ok, dropped


def interaction_batch_kernel(
    block: np.ndarray,
    v0: int,
    count_from: int,
    sample_index: np.ndarray,
    parts: Sequence[tuple[Any, ...]],
    variant_id: np.ndarray,
    variant_position: np.ndarray,
    phenotype_id: np.ndarray,
    phenotype_start: np.ndarray,
    *,
    names: Sequence[str],
    ploidy: int,
    maf_threshold: float,
    maf_threshold_interaction: float,
    run_eigenmt: bool = True,
    sink: Any = None,
) -> dict[str, Any]:
    """Fit every pair of one batch; ``parts`` per missing-value group: ``(rows, sample_index,
    Y, basis, dof, lo, hi, T)`` (batch positions, the group's samples among the analysis
    samples or None, residualized phenotypes (p_g, n_g), covariate basis, plain-cis dof,
    window bounds, the terms on the group's samples (n_g, k)).

    Returns ``top`` (one dict per phenotype with a testable pair), the counters, ``n_pairs``
    and, without a ``sink``, the pair columns (:data:`PAIR_HEAD` + :func:`stat_columns`).
    """
    batch = _decode_windows(block, v0, count_from, parts, variant_id, variant_position,
                            sample_index, ploidy=ploidy, maf_threshold=maf_threshold)
    block, v0, parts, dec, counted, counts = (batch.block, batch.v0, batch.parts, batch.dec,
                                              batch.counted, batch.counts)
    ma_samples, ma_count, vid, pos = batch.ma_samples, batch.ma_count, batch.vid, batch.pos
    k = len(names)
    cols = stat_columns(names)
    order = [0] + [j for a in range(1, k + 1) for j in (a, a + k)]  # g, then i_a and gi_a per term
    n_phen = len(phenotype_id)
    fits: list[Any] = [None] * n_phen
    filtered = np.zeros(block.shape[0], dtype=bool)
    n_singular = 0
    for rows, sidx, Y, basis, dof, lo, hi, T in parts:
        G, ok, dropped = _testable(dec, sidx, T, maf_threshold_interaction, ploidy)
        filtered |= dropped
        idx = np.flatnonzero(ok)
        gram = interaction_gram(G[idx], T, basis)
        at = np.full(block.shape[0], -1, dtype=np.int64)
        at[idx] = np.arange(idx.size)
        idof = int(dof) - 2 * k
        for j, r in enumerate(rows):
            a, b = int(lo[j]) - v0, int(hi[j]) - v0
            win = np.arange(max(a, 0), max(b, 0))
            win = win[at[win] >= 0]
            if win.size == 0:
                continue
            res = interaction_ols(gram, at[win], Y[j], idof)
            n_singular += int((~res["ok"]).sum())  # kept with NaN statistics, as tensorQTL
            fits[int(r)] = (win, res, G, idof)
    counts["n_interaction_maf_filtered"] = int(filtered[counted].sum())
    counts["n_singular"] = n_singular
    pairs: dict[str, list[np.ndarray]] = {c: [] for c in (*PAIR_HEAD, *cols)}
    top: list[dict[str, Any]] = []
    n_pairs = 0
    for j in range(n_phen):
        if fits[j] is None or fits[j][0].size == 0:
            continue
        win, res, G, _ = fits[j]
        m = win.size
        n_pairs += m
        pid = str(phenotype_id[j])
        dist = pos[win] - (int(phenotype_start[j]) + 1)
        head = {"phenotype_id": np.full(m, pid, dtype=object), "variant_id": vid[win],
                "start_distance": dist, "af": dec.af[win], "ma_samples": ma_samples[win],
                "ma_count": ma_count[win]}
        stats = {}
        for c, term in zip(range(0, len(cols), 3), order, strict=True):
            stats[cols[c]], stats[cols[c + 1]], stats[cols[c + 2]] = (
                res["p"][:, term], res["b"][:, term], res["se"][:, term])
        for key, v in (*head.items(), *stats.items()):
            pairs[key].append(np.asarray(v))
        tgi = np.abs(res["t"][:, 1 + k:]).max(axis=1)
        # the largest |t_gi|; ties within float noise (e.g. variants in perfect LD) go to the
        # first in window order, as tensorQTL's argmax over its float32 values does
        best = int(np.flatnonzero(tgi >= np.nanmax(tgi) * (1 - 1e-9))[0]) if np.isfinite(tgi).any() else 0
        row = {key: v[best] for key, v in (*head.items(), *stats.items())}
        row["phenotype_id"] = pid
        if run_eigenmt:
            row["tests_emt"] = eigenmt_tests(G[win], variant_window=200, var_thresh=0.99)
        row["pval_gi_top"] = float(res["p"][best, 1 + k + int(np.nanargmax(
            np.abs(res["t"][best, 1 + k:])))]) if np.isfinite(tgi[best]) else np.nan
        top.append(row)
    out_pairs = {key: (np.concatenate(v) if v else np.zeros(0)) for key, v in pairs.items()}
    out_pairs["phenotype_id"] = out_pairs["phenotype_id"].astype(str)
    out_pairs["variant_id"] = out_pairs["variant_id"].astype(str)
    result: dict[str, Any] = {"top": top, "n_pairs": n_pairs, **counts}
    if sink is not None:
        sink(out_pairs)
        sink.close()
    else:
        result["pairs"] = out_pairs
    return result


def interaction_graph(plan: StudyPlan, values: np.ndarray, names: Sequence[str], *,
                      maf_threshold_interaction: float = 0.05, run_eigenmt: bool = True,
                      sinks: Sequence[Any] | None = None) -> list[tuple[Any, Any]]:
    """One delayed :func:`interaction_batch_kernel` per cis batch of the plan."""
    arr = plan.genotype_array()
    vid = plan.genotypes["variant_id"].data
    kernel = dask.delayed(interaction_batch_kernel, pure=True)
    out = []
    for n, b in enumerate(cis_batches(plan)):
        parts = _batch_parts(plan, b, values)
        task = kernel(delayed_rows(arr, slice(b.v0, b.v1)), b.v0, b.count_from, plan.genotype_sample_index, parts,
                      delayed_rows(vid, slice(b.v0, b.v1)), plan.variant_position[b.v0:b.v1], plan.phenotype_id[b.rows],
                      plan.phenotype_start[b.rows], names=list(names), ploidy=plan.ploidy,
                      maf_threshold=plan.maf_threshold,
                      maf_threshold_interaction=maf_threshold_interaction,
                      run_eigenmt=run_eigenmt, sink=None if sinks is None else sinks[n])
        out.append((b, task))
    return out


def interaction_permutation_kernel(
    block: np.ndarray,
    v0: int,
    count_from: int,
    sample_index: np.ndarray,
    parts: Sequence[tuple[Any, ...]],
    variant_id: np.ndarray,
    variant_position: np.ndarray,
    phenotype_id: np.ndarray,
    phenotype_start: np.ndarray,
    *,
    ploidy: int,
    maf_threshold: float,
    maf_threshold_interaction: float,
    nperm: int,
    seed: int | None,
    nperm_min: int | None = None,
    stop_hits: int = 10,
) -> dict[str, Any]:
    """Gene-level Freedman-Lane permutations of one batch (one interaction term): per phenotype
    its strongest interaction and the window maximum of every permutation
    (:class:`dqtl.kernels.interaction.FreedmanLane`); the permutations of a group's samples are
    shared by every phenotype (``sample_permutations(n_g, nperm, seed)``). Adaptive with
    ``nperm_min < nperm``: permutations run in batches of ``nperm_min`` and a phenotype stops once
    ``stop_hits`` of them reach its observed statistic (its p-value is then clearly large).
    ``parts`` as for :func:`interaction_batch_kernel`."""
    from dqtl.association.permutation import sample_permutations
    from dqtl.kernels.interaction import FreedmanLane
    from dqtl.kernels.stats import pval_from_t

    batch = _decode_windows(block, v0, count_from, parts, variant_id, variant_position,
                            sample_index, ploidy=ploidy, maf_threshold=maf_threshold)
    block, v0, parts, dec, counted, counts = (batch.block, batch.v0, batch.parts, batch.dec,
                                              batch.counted, batch.counts)
    ma_samples, ma_count, vid, pos = batch.ma_samples, batch.ma_count, batch.vid, batch.pos
    filtered = np.zeros(block.shape[0], dtype=bool)
    genes: list[dict[str, Any]] = []
    r2_perm: list[np.ndarray] = []
    for rows, sidx, Y, basis, dof, lo, hi, T in parts:
        G, ok, dropped = _testable(dec, sidx, T, maf_threshold_interaction, ploidy)
        filtered |= dropped
        perms = sample_permutations(G.shape[1], nperm, seed)
        idof = int(dof) - 2
        for j, r in enumerate(rows):
            a, b = max(int(lo[j]) - v0, 0), max(int(hi[j]) - v0, 0)
            win = np.arange(a, b)
            win = win[ok[win]]
            if win.size == 0:
                continue
            fl = FreedmanLane(G[win], T[:, 0], Y[j], basis, idof)
            if not fl.ok.any():
                continue
            best = int(np.nanargmax(fl.r2))
            v = int(win[best])
            r2 = float(fl.r2[best])
            step = nperm if not nperm_min or nperm_min >= nperm else nperm_min
            chunks = []
            for s0 in range(0, nperm, step):
                chunks.append(fl.max_r2(perms[s0:s0 + step]))
                if sum(int((c >= r2).sum()) for c in chunks) >= stop_hits and s0 + step < nperm:
                    break
            r2max = np.concatenate(chunks)
            res = {"b_gi": fl.b_gi, "b_gi_se": fl.b_gi_se, "ok": fl.ok, "r2_perm_max": r2max}
            t = np.sqrt(r2 * idof / max(1.0 - r2, 1e-300))
            genes.append({
                "phenotype_id": str(phenotype_id[int(r)]), "num_var": int(res["ok"].sum()),
                "variant_id": vid[v], "start_distance": int(pos[v] - (int(phenotype_start[int(r)]) + 1)),
                "af": float(dec.af[v]), "ma_samples": int(ma_samples[v]), "ma_count": int(ma_count[v]),
                "pval_gi": float(pval_from_t(np.array([t]), idof)[0]),
                "b_gi": float(res["b_gi"][best]), "b_gi_se": float(res["b_gi_se"][best]),
                "r2_obs": r2, "dof": idof,
                "pval_perm": float((np.sum(r2max >= r2) + 1) / (r2max.size + 1)),
                "n_permutations": int(r2max.size),
            })
            r2_perm.append(r2max)
    counts["n_interaction_maf_filtered"] = int(filtered[counted].sum())
    return {"genes": genes, "r2_perm": r2_perm, **counts}


def permutation_table(parts: Sequence[dict[str, Any]], *, fdr: float = 0.05,
                      qvalue_lambda: float | None = None) -> pd.DataFrame:
    """Gene-level table of the permutation kernels: beta approximation of the window-maximum
    null (tensorQTL's fit, on the interaction's partial r^2), Storey q-values over genes."""
    from dqtl.multitest.beta import beta_approx_pval
    from dqtl.multitest.significance import add_significance

    genes = pd.DataFrame([g for p in parts for g in p["genes"]])
    if genes.empty:
        raise InputError("interaction permutations: no phenotype has a testable variant")
    r2p = [r for p in parts for r in p["r2_perm"]]
    sizes = np.array([r.size for r in r2p])
    for col in ("beta_shape1", "beta_shape2", "true_df", "pval_true_df", "pval_beta"):
        genes[col] = np.nan
    for size in np.unique(sizes):  # one beta fit per permutation count (adaptive runs differ)
        rows = np.flatnonzero(sizes == size)
        beta = beta_approx_pval(np.stack([r2p[i] for i in rows]), genes["r2_obs"].to_numpy()[rows],
                                genes["dof"].to_numpy(dtype=float)[rows])
        for col, key in (("beta_shape1", "beta_shape1"), ("beta_shape2", "beta_shape2"),
                         ("true_df", "true_df"), ("pval_true_df", "pval_true_df"),
                         ("pval_beta", "pval_beta")):
            genes.loc[genes.index[rows], col] = np.asarray(beta[key]).reshape(-1)
    sig = add_significance(genes.rename(columns={"pval_beta": "p_value_beta",
                                                 "pval_perm": "p_value_perm"}),
                           fdr=fdr, qvalue_lambda=qvalue_lambda)
    out = sig.rename(columns={"p_value_beta": "pval_beta", "p_value_perm": "pval_perm",
                              "q_value": "qval", "p_value_nominal_threshold": "pval_nominal_threshold"})
    out.attrs.update(sig.attrs)
    cols = ["phenotype_id", "num_var", "beta_shape1", "beta_shape2", "true_df", "pval_true_df",
            "variant_id", "start_distance", "af", "ma_samples", "ma_count", "pval_gi", "b_gi",
            "b_gi_se", "pval_perm", "pval_beta", "qval", "pval_nominal_threshold", "n_permutations"]
    return out[cols]


def interaction_permutation_graph(plan: StudyPlan, values: np.ndarray, *, nperm: int,
                                  seed: int | None, maf_threshold_interaction: float = 0.05,
                                  nperm_min: int | None = None) -> list[Any]:
    """One delayed :func:`interaction_permutation_kernel` per cis batch (one term only)."""
    if values.shape[1] != 1:
        raise InputError("interaction permutations take one interaction term; the file has "
                         f"{values.shape[1]}")
    arr = plan.genotype_array()
    vid = plan.genotypes["variant_id"].data
    kernel = dask.delayed(interaction_permutation_kernel, pure=True)
    tasks = []
    for b in cis_batches(plan):
        parts = _batch_parts(plan, b, values)
        tasks.append(kernel(delayed_rows(arr, slice(b.v0, b.v1)), b.v0, b.count_from, plan.genotype_sample_index, parts,
                            delayed_rows(vid, slice(b.v0, b.v1)), plan.variant_position[b.v0:b.v1],
                            plan.phenotype_id[b.rows], plan.phenotype_start[b.rows],
                            ploidy=plan.ploidy, maf_threshold=plan.maf_threshold,
                            maf_threshold_interaction=maf_threshold_interaction, nperm=nperm,
                            seed=seed, nperm_min=nperm_min))
    return tasks


def map_cis_interaction_permute(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None,
    interaction: Any,
    *,
    nperm: int = 1000,
    seed: int | None = 0,
    nperm_min: int | None = None,
    window: int = 1_000_000,
    maf_threshold: float = 0.0,
    maf_threshold_interaction: float = 0.05,
    fdr: float = 0.05,
    qvalue_lambda: float | None = None,
    allow_sample_intersection: bool = False,
    plan: StudyPlan | None = None,
) -> pd.DataFrame:
    """Gene-level significance of the strongest genotype x interaction effect per cis window:
    Freedman-Lane permutations of each variant's null-model residuals (valid whatever the main
    effects of the genotype and the context), the window maximum per permutation, the beta
    approximation and Storey q-values (columns ``phenotype_id, num_var, ..., variant_id,
    pval_gi, b_gi, b_gi_se, pval_perm, pval_beta, qval, pval_nominal_threshold,
    n_permutations``). ``nperm_min < nperm``: adaptive (see
    :func:`interaction_permutation_kernel`).

    Examples
    --------
    >>> import dqtl
    >>> sim = dqtl.simulate(n_samples=120, n_variants=300, n_phenotypes=6, seed=2)
    >>> sex = pd.Series(np.arange(120) % 2, index=sim.sample_id.values.astype(str), name="sex")
    >>> res = map_cis_interaction_permute(sim, sim, sim, sex, nperm=200, window=50_000)
    >>> bool(((res["pval_perm"] > 0) & (res["pval_perm"] <= 1)).all())
    True
    """
    if plan is None:
        plan = plan_study(genotypes, phenotypes, covariates, window=window,
                          maf_threshold=maf_threshold,
                          allow_sample_intersection=allow_sample_intersection)
    values, _names = interaction_terms(plan, interaction)
    tasks = interaction_permutation_graph(plan, values, nperm=nperm, seed=seed,
                                          maf_threshold_interaction=maf_threshold_interaction,
                                          nperm_min=nperm_min)
    parts = compute(tasks, label="cis interaction permutations")
    out = permutation_table(parts, fdr=fdr, qvalue_lambda=qvalue_lambda)
    out.attrs.update({c: int(sum(int(p[c]) for p in parts)) for c in
                      ("n_monomorphic", "n_maf_filtered", "n_interaction_maf_filtered")})
    return out


def _batch_parts(plan: StudyPlan, b: Any, values: np.ndarray) -> list[tuple[Any, ...]]:
    """Per missing-value group of batch ``b``: ``(rows, sample_index, Y, basis, dof, lo, hi, T)``."""
    where = plan.group_of()
    parts = []
    g_of = where[b.rows]
    for g in np.unique(g_of):
        grp = plan.groups[int(g)]
        brows = np.flatnonzero(g_of == g)
        gpos = np.searchsorted(grp.index, b.rows[brows])
        Y = grp.P_hat[gpos] * grp.p_norm[gpos][:, None]
        T = values if grp.sample_index is None else values[grp.sample_index]
        parts.append((brows, grp.sample_index, Y, grp.basis, int(grp.dof),
                      plan.window_lo[b.rows[brows]], plan.window_hi[b.rows[brows]], T))
    return parts


def top_table(rows: Sequence[dict[str, Any]], names: Sequence[str], *, run_eigenmt: bool = True
              ) -> pd.DataFrame:
    """The top association per phenotype (tensorQTL's ``cis_qtl_top_assoc`` columns), with
    ``pval_emt`` and ``pval_adj_bh`` (BH over phenotypes) when eigenMT ran."""
    from dqtl.multitest.bh import bh

    cols = ["phenotype_id", *PAIR_HEAD[1:], *stat_columns(names)]
    df = pd.DataFrame(list(rows))
    if df.empty:
        df = pd.DataFrame(columns=[*cols, "tests_emt", "pval_emt", "pval_adj_bh"])
        return df
    extra = []
    if run_eigenmt:
        df["tests_emt"] = df["tests_emt"].astype(np.int64)
        df["pval_emt"] = np.minimum(df["tests_emt"] * df["pval_gi_top"], 1.0)
        df["pval_adj_bh"] = bh(df["pval_emt"].to_numpy(dtype=float))
        extra = ["tests_emt", "pval_emt", "pval_adj_bh"]
    return df[cols + extra].reset_index(drop=True)


def map_cis_interaction(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None,
    interaction: Any,
    *,
    window: int = 1_000_000,
    maf_threshold: float = 0.0,
    maf_threshold_interaction: float = 0.05,
    run_eigenmt: bool = True,
    allow_sample_intersection: bool = False,
    plan: StudyPlan | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """cis genotype x interaction scan (tensorQTL ``map_nominal(interaction_df=...)``).

    Parameters
    ----------
    interaction
        DataFrame (or Series) indexed by sample ID, one column per term.

    Returns
    -------
    (pairs, top)
        ``pairs``: every tested pair, tensorQTL's columns (``pval_g, b_g, b_g_se, pval_i, ...,
        pval_gi, b_gi, b_gi_se``; per-term names for k > 1); ``top``: the strongest interaction
        per phenotype with ``tests_emt``, ``pval_emt``, ``pval_adj_bh``.

    Examples
    --------
    >>> import dqtl
    >>> sim = dqtl.simulate(n_samples=120, n_variants=300, n_phenotypes=6, seed=2)
    >>> sex = pd.Series(np.arange(120) % 2, index=sim.sample_id.values.astype(str), name="sex")
    >>> pairs, top = map_cis_interaction(sim, sim, sim, sex, window=50_000)
    >>> list(top.columns[-3:]), bool((pairs["pval_gi"] > 0).all())
    (['tests_emt', 'pval_emt', 'pval_adj_bh'], True)
    """
    if plan is None:
        plan = plan_study(genotypes, phenotypes, covariates, window=window,
                          maf_threshold=maf_threshold,
                          allow_sample_intersection=allow_sample_intersection)
    values, names = interaction_terms(plan, interaction)
    graph = interaction_graph(plan, values, names, maf_threshold_interaction=maf_threshold_interaction,
                              run_eigenmt=run_eigenmt)
    parts = compute([t for _, t in graph], label="cis interaction batches")
    cols = [*PAIR_HEAD, *stat_columns(names)]
    pairs = pd.DataFrame({c: np.concatenate([p["pairs"][c] for p in parts]) if parts else []
                          for c in cols})
    top = top_table([r for p in parts for r in p["top"]], names, run_eigenmt=run_eigenmt)
    pairs.attrs.update({c: int(sum(int(p[c]) for p in parts)) for c in COUNTERS})
    return pairs, top
