"""cis permutation mapping: empirical and beta-approximated gene-level p-values.

One seeded set of sample permutations is shared by all phenotypes (generated exactly as
tensorQTL does: ``RandomState(seed)``, ``nperm`` calls of ``permutation(n)``, so the same seed gives
the same permutations as ``tensorqtl --seed``). For each phenotype the window's genotypes are
residualized on the covariates and scaled to unit norm once; one float32 matrix product per
phenotype and batch of permutations with the permuted (centred) phenotype values gives the
numerators of the correlations of every cis variant with every permutation, and the permuted
phenotypes' residual norms follow from ``||y||^2 - ||Q^T y[pi]||^2``. The maximum ``r^2`` over
the window is the permutation statistic (see :func:`permutation_gene_kernel` for the float64
recheck). Nothing loops in Python per permutation.

Each task owns whole phenotypes (and whole phenotype groups) and reads exactly its phenotypes'
windows, so results do not depend on chunking or on the number of workers.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import xarray as xr

from dqtl.association.permutation_kernel import (
    PermutationBatches,
    ResidualizedBlock,
    permutation_gene_kernel,
)
from dqtl.compute import compute, local_workers
from dqtl.errors import InputError
from dqtl.io.variant_ids import ids_at
from dqtl.kernels.genotypes import decode_block
from dqtl.kernels.stats import stats_from_r
from dqtl.study import StudyPlan, delayed_rows, plan_study

__all__ = [
    "sample_permutations",
    "PermutationSpec",
    "cis_permutation_graph",
    "permutation_pass",
    "ConditionOn",
    "map_cis_permutations",
    "permutation_gene_kernel",
    "genes_kernel",
    "block_tasks",
    "rows_spanned",
]

log = logging.getLogger(__name__)


def sample_permutations(n: int, nperm: int, seed: int | None) -> np.ndarray:
    """(nperm, n) int32 sample permutations, identical to tensorQTL's for the same seed."""
    rs = np.random.RandomState(seed)
    return np.array([rs.permutation(n) for _ in range(nperm)], dtype=np.int32).reshape(nperm, n)


@dataclass(frozen=True)
class PermutationSpec:
    """How many permutations to run.

    ``nperm_min == nperm_max``: a fixed count. Otherwise adaptive (as FastQTL's
    ``--permute MIN MAX``): permutations run in batches of ``nperm_min``; a phenotype stops once
    ``stop_hits`` permutation statistics reach its observed statistic (its empirical p-value is
    then known to be large) or ``nperm_max`` is reached.
    """

    nperm_min: int = 10_000
    nperm_max: int = 10_000
    seed: int | None = 0
    stop_hits: int = 10
    batch: int = 2_000

    @classmethod
    def parse(cls, text: str | int, *, seed: int | None = 0) -> PermutationSpec:
        """``"10000"`` (fixed) or ``"1000,10000"`` (adaptive)."""
        parts = [p for p in str(text).replace(" ", "").split(",") if p]
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            vals = []
        if len(vals) not in (1, 2) or min(vals) < 1 or (len(vals) == 2 and vals[0] > vals[1]):
            raise InputError(
                f"--permutations must be N or MIN,MAX with 1 <= MIN <= MAX (e.g. 10000 or 1000,10000), "
                f"got {text!r}"
            )
        return cls(nperm_min=vals[0], nperm_max=vals[-1], seed=seed)

    @property
    def adaptive(self) -> bool:
        return self.nperm_min < self.nperm_max


@dataclass
class GeneInput:
    """Everything a task needs for one phenotype (small, host arrays)."""

    index: int  # row in CisPlan
    group: int  # phenotype group id (index into the group table); -1 when ungrouped
    y: np.ndarray  # (n_g,) raw phenotype values on its samples
    sample_index: np.ndarray | None
    Q: np.ndarray  # (n_g, rank) covariate basis on its samples (the plan's, or extended by extra ones)
    dof: int
    lo: int
    hi: int
    dof_shift: int = 0  # extra covariates beyond the plan's
    tag: Any = None  # caller's label, returned with the result (conditional passes)
    #: conditioning variants whose dosages extend the basis in the task, from its decoded block:
    #: (global variant indices, the group's Residualizer, label for messages); ``Q`` and ``dof``
    #: are then the plan's until the task extends them
    condition: tuple[np.ndarray, Any, str] | None = None


@dataclass(frozen=True)
class ConditionOn:
    """A job's extra covariates given as variants (global indices, in order): their mean-imputed
    dosages are read from the decoded block of the task that scans the phenotype (the block
    spans them), so no pass reads them from the store first."""

    variants: np.ndarray


def _conditioned(gene: GeneInput, G: np.ndarray, b0: int) -> GeneInput:
    """``gene`` with its basis extended by the dosages (rows ``variants - b0`` of the decoded
    block ``G``) of its conditioning variants: the same numbers as extending it on the client
    with dosages decoded from the store (decoding is row-local)."""
    assert gene.condition is not None
    variants, basis, where = gene.condition
    E = np.ascontiguousarray(G[np.asarray(variants, dtype=np.int64) - b0].T, dtype=np.float64)  # (samples, m)
    if gene.sample_index is not None:
        E = E[gene.sample_index]
    ext = basis.extend(E, where=where)
    return dataclasses.replace(gene, Q=ext.Q, dof=int(ext.dof), dof_shift=ext.rank - basis.rank,
                               condition=None)


class Opaque:
    """A task argument dask passes as it is (not walked for collections, not hashed)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _task_kernel(
    block: np.ndarray,
    b0: int,
    sample_index: np.ndarray,
    task_genes: Sequence[GeneInput] | Opaque,
    batches_by_n: dict[int, PermutationBatches],
    spec: PermutationSpec,
    *,
    ploidy: int,
    maf_threshold: float,
    dtype: Any,
    group_dof_factor: float,
    pairs_bound: float | None = None,
    bf16_rows: bool = True,
) -> list[dict[str, Any]]:
    """Run all phenotypes of one task; combine grouped phenotypes; fit the beta approximation.

    ``pairs_bound``: also keep each phenotype's candidate significant pairs for a genome-wide
    threshold up to this value (:func:`dqtl.association.signif_pairs.keep_candidates`).
    ``bf16_rows``: the run's choice of :func:`use_bf16_rows`."""
    genes: Sequence[GeneInput] = task_genes.value if isinstance(task_genes, Opaque) else task_genes
    gb = decode_block(block, sample_index, ploidy=ploidy, maf_threshold=maf_threshold, float32_calls=True)
    return genes_kernel(gb, b0, genes, batches_by_n, spec, dtype=dtype,
                        group_dof_factor=group_dof_factor, pairs_bound=pairs_bound, bf16_rows=bf16_rows)


def genes_kernel(
    gb: Any,
    b0: int,
    genes: Sequence[GeneInput],
    batches_by_n: dict[int, PermutationBatches],
    spec: PermutationSpec,
    *,
    dtype: Any,
    group_dof_factor: float,
    pairs_bound: float | None = None,
    bf16_rows: bool = True,
) -> list[dict[str, Any]]:
    """:func:`_task_kernel` on a decoded block ``gb`` (starting at variant ``b0``) that spans
    the ``genes``' windows and conditioning variants: one result row per phenotype or group.
    Each phenotype's results depend on its own inputs only (not on the other genes)."""
    from dqtl.multitest.beta import beta_approx_pval

    # every phenotype takes integer rows when the run does (bf16_rows: use_bf16_rows), alone in
    # a task or not, with a basis of its own (conditioning variants, own samples) or not: results
    # never depend on the tasks. Built per gene they cost what float32 rows cost (a conditioned
    # gene's 4,100-variant window: 11.3 against 11.8 ms, kernel 31 against 36-41 ms)
    genes = [_conditioned(g, gb.G, b0) if g.condition is not None else g for g in genes]
    # genes on all samples with the same basis share one residualized block (their windows
    # are row ranges of it); the others are residualized per gene on their window
    uses = Counter(id(g.Q) for g in genes if g.sample_index is None)
    shared: dict[int, ResidualizedBlock] = {}
    rows: list[dict[str, Any]] = []
    for gene in genes:
        a, b = gene.lo - b0, gene.hi - b0
        n_g = len(gene.y)
        key = id(gene.Q)
        prepared = None
        if gene.sample_index is None and uses[key] > 1:
            if key not in shared:
                shared[key] = ResidualizedBlock.build(gb.G, gb.valid, gene.Q, gene.dof,
                                                      means=gb.row_means(), integer_rows=gb.integer_rows(),
                                                      integer=bf16_rows)
            prepared = shared[key].rows(a, b)
        out = permutation_gene_kernel(gb.G[a:b], gb.valid[a:b], gene, batches_by_n[n_g], spec, dtype,
                                      prepared=prepared, keep_window=pairs_bound is not None,
                                      means=None if prepared is not None else gb.row_means(a, b),
                                      integer_rows=None if prepared is not None else gb.integer_rows(a, b),
                                      integer=bf16_rows)
        if out is None:
            rows.append({"index": gene.index, "tag": gene.tag, "group": gene.group, "skipped": True})
            continue
        v = a + out["top"]
        out.update(variant_index=b0 + v, af=float(gb.af[v]), skipped=False, block_offset=a)
        rows.append(out)
    top = [r for r in rows if not r["skipped"]]
    if top:  # allele counts of the top variants only (row by row: the same as for the block)
        ma_samples, ma_count = gb.minor_allele(np.array([r["variant_index"] - b0 for r in top]))
        for r, s_, c_ in zip(top, ma_samples.tolist(), ma_count.tolist(), strict=True):
            r.update(ma_samples=int(s_), ma_count=int(c_))
    # grouped phenotypes: the strongest member represents the group; max over members per permutation
    final: list[dict[str, Any]] = []
    members_of: list[list[dict[str, Any]]] = []  # the phenotypes behind each final row
    by_group: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        if r["group"] < 0:
            final.append(r)
            members_of.append([r])
        else:
            by_group.setdefault((r["group"], repr(r["tag"])), []).append(r)
    for members in by_group.values():
        ok = [m for m in members if not m["skipped"]]
        members_of.append(members)
        if not ok:
            final.append({**members[0], "group_size": len(members)})
            continue
        best = max(ok, key=lambda m: abs(m["r"]))
        k = min(len(m["r2_perm"]) for m in ok)
        r2p = np.max(np.stack([m["r2_perm"][:k] for m in ok]), axis=0)
        final.append({**best, "r2_perm": r2p, "group_size": len(members), "group_dof_factor": group_dof_factor})
    # the beta approximation of every phenotype with the same number of permutations in one
    # call: the maximum-likelihood fits run as one vectorised Newton iteration over phenotypes
    by_nperm: dict[int, list[dict[str, Any]]] = {}
    for r in final:
        if r.get("skipped"):
            continue
        r2p = r["r2_perm"]
        r2_obs = r["r"] ** 2
        r["n_perm"] = int(len(r2p))
        r["pval_perm"] = (np.sum(r2p >= r2_obs) + 1.0) / (len(r2p) + 1.0)
        if np.ptp(r2p) == 0 or len(r2p) < 2:
            r.update(true_df=np.nan, pval_true_df=np.nan, beta_shape1=np.nan, beta_shape2=np.nan,
                     pval_beta=np.nan, converged=False)
        else:
            by_nperm.setdefault(len(r2p), []).append(r)
    for same in by_nperm.values():
        fit = beta_approx_pval(np.stack([r["r2_perm"] for r in same]),
                               np.array([r["r"] ** 2 for r in same]),
                               np.array([r["dof"] * r.get("group_dof_factor", 1.0) for r in same]))
        for i, r in enumerate(same):
            r.update({k: (bool(np.asarray(v)[i]) if k == "converged" else float(np.asarray(v)[i])) for k, v in fit.items()})
    if pairs_bound is not None:
        from dqtl.association.signif_pairs import keep_candidates

        for r, members in zip(final, members_of, strict=True):
            if not r.get("skipped"):
                keep_candidates(r, members, gb, b0, pairs_bound)
    for r in final:
        if r.get("skipped"):
            continue
        t, p, slope, se = stats_from_r(np.array([r["r"]]), r["dof"], np.array([r["g_norm"]]), np.array([r["p_norm"]]))
        r.update(pval_nominal=float(p[0]), t_value=float(t[0]), slope=float(slope[0]), slope_se=float(se[0]))
        del r["r2_perm"]
    return final


def gene_inputs(
    plan: StudyPlan, jobs: Sequence[tuple[int, np.ndarray | None, Any]] | None = None
) -> list[GeneInput]:
    """Per-phenotype task inputs from the plan (its covariate bases, built once per run).

    ``jobs``: ``(phenotype index, extra, tag)`` with ``extra`` an array of covariates (samples,
    m), a :class:`ConditionOn` or None; default one job per tested phenotype without extra
    covariates. Extra covariates condition the scan (e.g. on already selected variants): the
    plan's basis is extended by an array here, on the client; by a :class:`ConditionOn`'s
    variants in the task that decodes them (:func:`_conditioned`).
    """
    where: dict[int, tuple[Any, int]] = {}
    for grp in plan.groups:
        for j, i in enumerate(grp.index):
            where[int(i)] = (grp, j)
    if jobs is None:
        jobs = [(i, None, None) for i in sorted(where)]
    genes: list[GeneInput] = []
    gidx = plan.phenotype_group_index
    for i, extra, tag in jobs:
        grp, j = where[int(i)]
        Q, dof, shift = grp.Q, int(grp.dof), 0
        condition = None
        if isinstance(extra, ConditionOn):
            if len(extra.variants):
                condition = (np.asarray(extra.variants, dtype=np.int64), grp.basis,
                             f"phenotype {plan.phenotype_id[int(i)]}: conditioning variants")
        elif extra is not None and extra.size:
            e = extra if grp.sample_index is None else extra[grp.sample_index]
            ext = grp.basis.extend(e, where=f"phenotype {plan.phenotype_id[int(i)]}: conditioning variants")
            Q, dof, shift = ext.Q, int(ext.dof), ext.rank - grp.basis.rank
        genes.append(GeneInput(
            index=int(i), group=int(gidx[i]) if gidx is not None else -1,
            y=grp.P_raw[j], sample_index=grp.sample_index, Q=Q, dof=dof,
            lo=int(plan.window_lo[i]), hi=int(plan.window_hi[i]), dof_shift=shift, tag=tag,
            condition=condition,
        ))
    genes.sort(key=lambda g: (g.lo, g.index))
    return genes


def cis_permutation_graph(
    plan: StudyPlan,
    spec: PermutationSpec,
    *,
    dtype: Any = np.float64,
    variants_per_task: int | None = None,
    genes_per_task: int = 64,
    jobs: Sequence[tuple[int, np.ndarray | None, Any]] | None = None,
    pairs_bound: float | None = None,
) -> list[Any]:
    """Delayed tasks, each owning whole phenotypes (groups kept together) and their windows.

    ``jobs`` as in :func:`gene_inputs` (default: every tested phenotype, unconditioned);
    ``pairs_bound`` as in :func:`_task_kernel`. A task spans at most ``variants_per_task``
    variants beyond one phenotype's window (default :func:`permutation_task_variants`) and
    holds at most ``genes_per_task`` phenotypes.
    """
    genes = gene_inputs(plan, jobs)
    # keep group members adjacent and in the same task
    units: list[list[GeneInput]] = []
    by_group_key: dict[Any, list[GeneInput]] = {}
    for g in genes:
        if g.group < 0:
            units.append([g])
        else:
            key = (g.group, repr(g.tag))
            if key not in by_group_key:
                by_group_key[key] = []
                units.append(by_group_key[key])
            by_group_key[key].append(g)
    return block_tasks(plan, _task_kernel, units, spec, variants_per_task=variants_per_task,
                       genes_per_task=genes_per_task, dtype=dtype, group_dof_factor=0.25,
                       pairs_bound=pairs_bound, bf16_rows=use_bf16_rows(genes))


#: Mean window (variants) from which a run's permutation products are bfloat16 products of
#: integer rows where available (``dqtl.kernels.bf16``). At array density (~410 variants per
#: window, 2,000 genes, 1,000 permutations) they took 3-6% more task time than float32 (the
#: integer rows' build and the per-batch phenotype splits outweigh products of 410 rows: 13.1-13.8
#: against 12.7-13.0 thread-seconds, 2 runs each); at ~1,000 variants the kernel is 0.7x float32's,
#: at ~4,000 0.55-0.6x.
BF16_MIN_WINDOW = 1000


def use_bf16_rows(genes: Sequence[GeneInput]) -> bool:
    """Whether a run's phenotypes (with their windows) take bfloat16 products of integer rows:
    the products are available here and the mean window has :data:`BF16_MIN_WINDOW`
    variants or more (one choice per run, so results never depend on the tasks). Logged."""
    from dqtl.kernels import bf16

    mean = float(np.mean([g.hi - g.lo for g in genes])) if len(genes) else 0.0
    if mean < BF16_MIN_WINDOW:  # decided without loading the library (~50 MiB of a process)
        log.info("permutation products: float32 (windows of %.0f variants on average, below the %d "
                 "from which bfloat16 products pay)", mean, BF16_MIN_WINDOW)
        return False
    line = bf16.backend()
    if line is None:
        log.info("permutation products: float32 (no bfloat16 products: %s)", bf16.why_not())
        return False
    log.info("permutation products: %s, with float64 rechecks", line)
    return True


def block_tasks(plan: StudyPlan, kernel: Any, units: list[list[GeneInput]], spec: PermutationSpec, *,
                variants_per_task: int | None, genes_per_task: int, **kwargs: Any) -> list[Any]:
    """One delayed ``kernel(block, b0, sample_index, Opaque(genes), batches_by_n, spec,
    ploidy=, maf_threshold=, **kwargs)`` per task of consecutive ``units`` (a unit's phenotypes
    stay in one task; :func:`greedy_tasks`, then :func:`balanced_tasks`), ``block`` the rows
    ``b0:b1`` its genes span (:func:`task_span`) and ``batches_by_n`` the run's
    :class:`PermutationBatches` per sample count. ``variants_per_task`` None:
    :func:`permutation_task_variants`."""
    if variants_per_task is None:
        variants_per_task = permutation_task_variants(plan.n_samples)
    batches_by_n = {n: PermutationBatches.build(sample_permutations(n, spec.nperm_max, spec.seed), spec)
                    for n in {len(g.y) for u in units for g in u}}
    arr = plan.genotype_array()
    tasks = []
    # the permutations reach each worker once (one graph key, hashed once), and the tasks'
    # phenotype inputs travel as one opaque value: dask neither walks nor hashes them per task
    # (that took ~0.02 s per task); the keys of the tasks are unique names instead of hashes
    perms_key = dask.delayed(batches_by_n, pure=True)
    call = dask.delayed(kernel, pure=False)
    for chunk in balanced_tasks(greedy_tasks(units, variants_per_task, genes_per_task), local_workers(),
                                genes_per_task):
        b0, b1 = rows_spanned(chunk)
        tasks.append(call(delayed_rows(arr, slice(b0, b1)), b0, plan.genotype_sample_index, Opaque(chunk),
                          perms_key, spec, ploidy=plan.ploidy, maf_threshold=plan.maf_threshold, **kwargs))
    return tasks


def greedy_tasks(units: list[list[GeneInput]], variants_per_task: int,
                 genes_per_task: int) -> list[list[list[GeneInput]]]:
    """Consecutive units (a phenotype, or a group's members) per task, each task spanning at
    most ``variants_per_task`` variants beyond one unit and holding at most ``genes_per_task``."""
    out: list[list[list[GeneInput]]] = []
    cur: list[list[GeneInput]] = []
    for unit in units:
        if cur:
            genes = [g for u in (*cur, unit) for g in u]
            lo, hi = rows_spanned(genes)
            if hi - lo > variants_per_task or len(genes) > genes_per_task:
                out.append(cur)
                cur = []
        cur.append(unit)
    if cur:
        out.append(cur)
    return out


#: tasks per thread a run's units are cut into at least (when it has that many units): its
#: last tasks are then short, and the threads end close together. Independent signals at
#: sequencing density (35 eGenes, ~4,100-variant windows, 2 threads): 10 tasks of 3-4 eGenes
#: (0.2-0.35 s each) ended 0.1-0.27 s apart, the compute 2.52-2.68 s into the run; 16 tasks:
#: 2.31-2.35 s (3 runs each). Permutations there (11 -> 16 tasks): 6.66-6.91 -> 6.63-6.78 s,
#: peak RSS 526-561 -> 497-517 MiB.
MIN_TASKS_PER_THREAD = 8


def _unit_costs(units: list[list[GeneInput]]) -> np.ndarray:
    return np.array([sum(max(g.hi - g.lo, 1) for g in u) for u in units], dtype=np.float64)


def _equal_cost_cuts(cost: np.ndarray, k: int) -> list[tuple[int, int]]:
    """``[a, b)`` bounds of at most ``k`` consecutive runs of about equal total ``cost``."""
    ends = np.cumsum(cost)
    cuts = np.searchsorted(ends, ends[-1] * np.arange(1, k) / k, side="left") + 1
    bounds = np.unique(np.clip(np.concatenate([[0], cuts, [len(cost)]]), 0, len(cost)))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


def _genes(units: list[list[GeneInput]]) -> list[GeneInput]:
    """The phenotypes of a task's units, in order."""
    return [g for u in units for g in u]


def _span(genes: list[GeneInput]) -> int:
    lo, hi = rows_spanned(genes)
    return hi - lo


def balanced_tasks(groups: list[list[list[GeneInput]]], threads: int, genes_per_task: int,
                   min_per_thread: int = MIN_TASKS_PER_THREAD) -> list[list[GeneInput]]:
    """The tasks' phenotypes, from ``groups`` of units (:func:`greedy_tasks`; a unit's
    phenotypes always stay in one task):

    - fewer groups than ``min_per_thread`` x ``threads`` (and more units): each group cut
      further into consecutive pieces of equal cost (window variants), in proportion to its
      cost, so that there are about that many tasks (a piece never spans more rows than its
      group);
    - then the units cut into the next multiple of ``threads`` consecutive tasks of equal cost
      (window variants): the threads' last tasks end together instead of one thread running the
      last task alone (11 tasks on 2 threads: a task's time, ~1 s, idle), whatever order dask
      runs them in (its order follows the genotype chunks the tasks share, not the list: at
      sequencing density the groups' pieces cost 28,000-108,000 window variants, ~5 us each,
      and the largest ran last, the threads ending 0.37-0.46 s apart in 4 runs; equal tasks:
      0.08-0.19 s). Kept as they are if that would put more than ``genes_per_task`` genes in a
      task or make a task span more rows than the widest group;
    - the last ``threads`` tasks (the tasks run in genomic order, the chunks' order) each cut in
      two of equal cost: the run ends on half-size tasks, so the threads idle less while the
      last one finishes (a task's cost only estimates its time). Permutations at sequencing
      density: 6.95-7.12 -> 6.61-6.82 s, array density 7.63-7.68 -> 7.55-7.64 s (4 and 3
      alternating runs).

    The results do not depend on the tasks (one gene's statistics never involve another's)."""
    units = [u for grp in groups for u in grp]
    want = min(len(units), max(min_per_thread, 0) * threads)
    if threads > 1 and len(groups) < want:
        cost_all = float(_unit_costs(units).sum())
        split: list[list[list[GeneInput]]] = []
        for grp in groups:
            cost = _unit_costs(grp)
            pieces = min(len(grp), max(1, round(want * float(cost.sum()) / cost_all)))
            split.extend(grp[a:b] for a, b in _equal_cost_cuts(cost, pieces))
        groups = split
    k = len(groups)
    if threads <= 1 or k <= 1:
        return [_genes(grp) for grp in groups]
    k = min(-(-k // threads) * threads, len(units))
    cut = [units[a:b] for a, b in _equal_cost_cuts(_unit_costs(units), k)]
    flat = [_genes(grp) for grp in cut]
    widest = max(_span(_genes(grp)) for grp in groups)
    if max(len(t) for t in flat) <= genes_per_task and max(map(_span, flat)) <= widest:
        groups = cut  # else kept: the bounds on genes and rows hold
    tail: list[list[list[GeneInput]]] = []
    for grp in groups[-threads:]:
        tail.extend(grp[a:b] for a, b in _equal_cost_cuts(_unit_costs(grp), 2))
    return [_genes(grp) for grp in [*groups[:-threads], *tail]]


#: decoded float64 dosages a permutation task spans (its float32 residualized rows come on top:
#: ~1.5x in all), and the most variants whatever the samples
PERMUTATION_BYTES_PER_TASK = 48 << 20
PERMUTATION_VARIANTS_PER_TASK = 20_000


def permutation_task_variants(n_samples: int) -> int:
    """The variants a permutation task spans by default: :data:`PERMUTATION_BYTES_PER_TASK` of
    float64 dosages of ``n_samples``, between 4,096 and :data:`PERMUTATION_VARIANTS_PER_TASK`.

    Measured at sequencing density (500 samples, ~4,100-variant windows, 300 genes, 1,000
    permutations, 2 cores; 3 alternating runs each, two series): peak RSS 720-790 MiB with
    20,000 variants per task, 550-620 MiB with 12,000-12,582 (smaller blocks per thread); wall
    time within the noise (8.42-8.88 against 8.21-8.41 s, then 8.49-8.78 against 8.63-8.94 s).
    Independent signals at that density: 583-598 -> 496-530 MiB, 2.78-2.88 -> 2.72-2.83 s. Array
    density is bound by ``genes_per_task`` (64 genes span ~3,200 variants)."""
    return int(min(PERMUTATION_VARIANTS_PER_TASK, max(4096, PERMUTATION_BYTES_PER_TASK // (8 * max(n_samples, 1)))))


def task_span(gene: GeneInput) -> tuple[int, int]:
    """The variant rows a gene's task must decode: its window and its conditioning variants."""
    if gene.condition is None or not len(gene.condition[0]):
        return gene.lo, gene.hi
    v = gene.condition[0]
    return min(gene.lo, int(v.min())), max(gene.hi, int(v.max()) + 1)


def rows_spanned(genes: Sequence[GeneInput]) -> tuple[int, int]:
    """``[b0, b1)``: the variant rows a task of ``genes`` decodes (:func:`task_span` of each)."""
    spans = [task_span(g) for g in genes]
    return min(a for a, _ in spans), max(b for _, b in spans)


def results_table(plan: StudyPlan, rows: Sequence[dict[str, Any]], *, ids: bool = True) -> Any:
    """pandas DataFrame of gene-level results, one row per phenotype (or group), before
    q-values; dqtl's names in the order of tensorQTL's ``cis_qtl.txt.gz`` columns. ``ids``
    False: without the ``variant_id`` column (read from the store: :func:`add_variant_ids`)."""
    import pandas as pd

    rows = _result_rows(rows)
    idx = np.array([r["index"] for r in rows])
    vi = np.array([r["variant_index"] for r in rows])
    pos = plan.variant_position[vi]
    df = pd.DataFrame({
        "phenotype_id": plan.phenotype_id[idx],
        "n_variants": [r["num_var"] for r in rows],
        "beta_shape1": [r["beta_shape1"] for r in rows],
        "beta_shape2": [r["beta_shape2"] for r in rows],
        "true_df": [r["true_df"] for r in rows],
        "p_value_true_df": [r["pval_true_df"] for r in rows],
        "start_distance": pos - (plan.phenotype_start[idx] + 1),
        "end_distance": pos - plan.phenotype_end[idx],
        "ma_samples": [r["ma_samples"] for r in rows],
        "ma_count": [r["ma_count"] for r in rows],
        "af": [r["af"] for r in rows],
        "p_value": [r["pval_nominal"] for r in rows],
        "beta": [r["slope"] for r in rows],
        "beta_se": [r["slope_se"] for r in rows],
        "p_value_perm": [r["pval_perm"] for r in rows],
        "p_value_beta": [r["pval_beta"] for r in rows],
        "n_permutations": [r["n_perm"] for r in rows],
        "beta_converged": [bool(r["converged"]) for r in rows],
    })
    if plan.phenotype_group_index is not None and plan.group_id is not None:
        df.insert(1, "group_id", plan.group_id[plan.phenotype_group_index[idx]])
        df.insert(2, "group_size", [r.get("group_size", 1) for r in rows])
    return add_variant_ids(df, plan, rows) if ids else df


def _result_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tasks' result rows of the tested phenotypes, in plan order (one per table row)."""
    out = sorted((r for r in rows if not r.get("skipped")), key=lambda r: r["index"])
    if not out:
        raise InputError("no phenotype had a testable cis variant")
    return out


def add_variant_ids(df: Any, plan: StudyPlan, rows: Sequence[dict[str, Any]]) -> Any:
    """``df`` (:func:`results_table` of ``rows`` with ``ids=False``, rows in the same order) with
    the top variants' ``variant_id`` column in its place (before ``start_distance``)."""
    vi = np.array([r["variant_index"] for r in _result_rows(rows)])
    df.insert(int(df.columns.get_loc("start_distance")), "variant_id", ids_at(plan.genotypes, vi))
    return df


def map_cis_permutations(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None = None,
    *,
    permutations: PermutationSpec | str | int = 10_000,
    seed: int | None = 0,
    window: int = 1_000_000,
    maf_threshold: float = 0.0,
    fdr: float = 0.05,
    qvalue_lambda: float | None = None,
    phenotype_groups: Any = None,
    dtype: Any = np.float64,
    allow_sample_intersection: bool = False,
    plan: StudyPlan | None = None,
) -> Any:
    """cis permutation pass: one row per phenotype (or group) with empirical and beta p-values,
    Storey q-values and the per-gene nominal threshold (tensorQTL ``cis_qtl.txt.gz`` columns).

    Parameters
    ----------
    permutations
        A :class:`PermutationSpec`, ``10000`` (fixed) or ``"1000,10000"`` (adaptive).
    phenotype_groups
        Mapping/Series phenotype_id -> group_id (e.g. isoforms of a gene): the strongest member per
        permutation represents the group (``group_id``, ``group_size`` columns).

    Returns
    -------
    xarray.Dataset
        Dimension ``phenotypes`` (one entry per phenotype, or per group): ``phenotype_id``,
        (``group_id``, ``group_size``), ``n_variants``, ``beta_shape1``, ``beta_shape2``,
        ``true_df``, ``p_value_true_df``, ``variant_id`` (top variant), ``start_distance``,
        ``end_distance``, ``ma_samples``, ``ma_count``, ``af``, ``p_value``, ``beta``,
        ``beta_se``, ``p_value_perm``, ``p_value_beta``, ``n_permutations``,
        ``beta_converged``, ``q_value``, ``p_value_nominal_threshold``; ``attrs`` ``pi0``,
        ``fdr``, ``pval_threshold``, ``n_significant``. Files use tensorQTL's columns
        (:func:`dqtl.io.results.to_tensorqtl_cis`).

    Examples
    --------
    >>> import dqtl
    >>> sim = dqtl.simulate(n_samples=60, n_variants=400, n_phenotypes=6, seed=2)
    >>> res = dqtl.map_cis_permutations(sim, sim, sim, permutations=100, window=50_000)
    >>> res.sizes["phenotypes"], bool((res.p_value_perm >= 1 / 101).all())
    (6, True)
    """
    spec = permutations if isinstance(permutations, PermutationSpec) else PermutationSpec.parse(permutations, seed=seed)
    if plan is None:
        plan = plan_study(genotypes, phenotypes, covariates, window=window,
                          maf_threshold=maf_threshold,
                          allow_sample_intersection=allow_sample_intersection)
    if phenotype_groups is not None:
        plan = with_groups(plan, phenotype_groups)
    return permutation_pass(plan, spec, dtype=dtype, fdr=fdr, qvalue_lambda=qvalue_lambda)[0]


def permutation_pass(plan: StudyPlan, spec: PermutationSpec, *, dtype: Any, fdr: float,
                     qvalue_lambda: float | None, pairs_bound: float | None = None,
                     before_ids: Any = None) -> tuple[xr.Dataset, list[dict[str, Any]]]:
    """The permutation tasks of ``plan`` (groups attached), then significance: the gene-level
    Dataset of :func:`map_cis_permutations` and the tasks' result rows (with the candidate
    significant pairs when ``pairs_bound`` is given). ``before_ids``: called with the gene-level
    table (a DataFrame, q-values included) before its ``variant_id`` column is read from the
    store (the figures of a run start then: the IDs are 0.07-0.08 s of its tail)."""
    from dqtl.multitest.significance import add_significance

    parts = compute(cis_permutation_graph(plan, spec, dtype=dtype, pairs_bound=pairs_bound),
                    label="cis permutation tasks", imports=("dqtl.plot", "dqtl.report"))
    rows = [r for part in parts for r in part]
    df = add_significance(results_table(plan, rows, ids=False), fdr=fdr, qvalue_lambda=qvalue_lambda)
    if before_ids is not None:
        before_ids(df)
    return frame_to_dataset(add_variant_ids(df, plan, rows)), rows


def frame_to_dataset(df: Any) -> xr.Dataset:
    """A gene-level table (one row per phenotype) as a Dataset along ``phenotypes``."""
    ds = xr.Dataset({c: ("phenotypes", df[c].to_numpy()) for c in df.columns})
    ds.attrs.update(df.attrs)
    return ds


def dataset_to_frame(ds: Any) -> Any:
    """A gene-level Dataset (or DataFrame) as a pandas DataFrame with the same names."""
    import pandas as pd

    if isinstance(ds, pd.DataFrame):
        return ds
    df = pd.DataFrame({k: ds[k].values for k in ds.data_vars})
    df.attrs.update(ds.attrs)
    return df


def with_groups(plan: StudyPlan, groups: Any) -> StudyPlan:
    """Attach phenotype groups (phenotype_id -> group_id) to a plan."""
    import pandas as pd

    s = groups if isinstance(groups, pd.Series) else pd.Series(dict(groups))
    s.index = s.index.astype(str)
    missing = [p for p in plan.phenotype_id if p not in s.index]
    if missing:
        raise InputError(
            f"phenotype groups: {len(missing)} phenotypes have no group (e.g. {', '.join(missing[:3])}); "
            f"the groups file must list every phenotype"
        )
    gid = s.loc[plan.phenotype_id].astype(str).to_numpy()
    uniq, inv = np.unique(gid, return_inverse=True)
    # members of a group must share contig (their windows are unioned in one task)
    for u in range(len(uniq)):
        contigs = set(plan.phenotype_contig[inv == u].tolist())
        if len(contigs) > 1:
            raise InputError(f"phenotype group {uniq[u]} spans contigs {sorted(contigs)}; groups must be on one contig")
    return dataclasses.replace(plan, phenotype_group_index=inv.astype(np.int64), group_id=uniq)
