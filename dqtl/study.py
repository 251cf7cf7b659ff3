"""The study plan: everything eager and small that every method shares, built once per run.

:func:`plan_study` aligns genotypes, phenotypes and covariates by sample ID, validates them
against the variable registry (:mod:`dqtl.variables`), checks the variant order, finds the
contig ranges and each phenotype's window bounds (a cis window, or the cis exclusion of a trans
scan), skips untestable phenotypes with counts, groups the rest by missing-value pattern, builds
one covariate basis per group (dropped covariates reported once) and residualizes the phenotypes.
cis nominal, permutations, independent signals, trans and every method to come take the same
:class:`StudyPlan`; their tasks receive the plan's pieces and never rebuild them.

The plan keeps a reference to the genotype Dataset it was built from
(:meth:`StudyPlan.genotype_array` is the one accessor of the dask array the kernels read).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from dqtl.errors import InputError
from dqtl.io.genotypes import normalize_contig, open_genotypes
from dqtl.io.samples import align_samples
from dqtl.kernels.linalg import Residualizer, row_dots
from dqtl.variables import validate

__all__ = [
    "PhenotypeGroup",
    "StudyPlan",
    "plan_study",
    "prepare_phenotype_groups",
    "covariate_matrix",
    "contig_ranges",
    "window_bounds",
    "genotype_array",
    "delayed_rows",
    "ensure_genotypes",
]

log = logging.getLogger(__name__)


@dataclass
class PhenotypeGroup:
    """Phenotypes sharing one pattern of non-missing samples, residualized on those samples.

    Attributes
    ----------
    index : (p_g,) int64
        Rows of these phenotypes in the plan's phenotype arrays.
    sample_index : (n_g,) int64 or None
        The group's samples among the analysis samples (None: all samples).
    P_hat : (p_g, n_g) float64
        Residualized phenotypes scaled to unit norm.
    p_norm : (p_g,) float64
        Their residual norms.
    P_raw : (p_g, n_g) float64
        The phenotype values on the group's samples (permutations permute these).
    basis : Residualizer
        The covariate basis on the group's samples: ``Q`` (n_g, rank) orthonormal basis of
        ``[1, C]`` (column 0 the intercept), ``dof = n_g - rank - 1``, kept and dropped covariates.
    """

    index: np.ndarray
    sample_index: np.ndarray | None
    P_hat: np.ndarray
    p_norm: np.ndarray
    P_raw: np.ndarray
    basis: Residualizer

    @property
    def Q(self) -> np.ndarray:
        return self.basis.Q

    @property
    def dof(self) -> int:
        return int(self.basis.dof)

    @property
    def n_samples(self) -> int:
        return int(self.Q.shape[0])


def covariate_matrix(
    covariates: xr.Dataset | None, covariate_index: np.ndarray | None
) -> tuple[np.ndarray | None, list[str]]:
    """(samples, covariates) float64 values of the analysis samples and the covariate IDs."""
    if covariates is None:
        return None, []
    validate(covariates, ("covariate_id", "covariate_values", "sample_id"), source="covariates")
    C = np.asarray(covariates["covariate_values"].values, dtype=np.float64)[covariate_index]
    if not np.isfinite(C).all():
        r, c = np.argwhere(~np.isfinite(C))[0]
        raise InputError(
            f"covariates: covariate {covariates['covariate_id'].values[c]!s} has a missing or "
            f"infinite value (sample {r}); covariates must be finite: impute or drop it"
        )
    return C, [str(x) for x in covariates["covariate_id"].values]


def prepare_phenotype_groups(
    vals: np.ndarray,
    C: np.ndarray | None,
    cov_ids: Sequence[str],
    *,
    keep: np.ndarray,
    phenotype_ids: np.ndarray,
) -> tuple[np.ndarray, list[PhenotypeGroup], Residualizer, dict[str, Any]]:
    """Skip untestable phenotypes and residualize the rest, grouped by missingness pattern.

    Parameters
    ----------
    vals
        (phenotypes, samples) float64 values on the analysis samples, NaN = missing.
    C
        (samples, covariates) aligned covariates, or None.
    keep
        (phenotypes,) bool: phenotypes still candidates (e.g. with a non-empty cis window).

    Returns
    -------
    (kept, groups, base, report)
        ``kept``: indices into ``vals`` of the tested phenotypes (constant, too sparse and fully
        explained phenotypes removed); ``groups`` index into ``kept``; ``base``: the basis on
        all samples; ``report``: counts of skipped phenotypes.
    """
    report: dict[str, Any] = {}
    keep = np.asarray(keep, dtype=bool).copy()
    obs = ~np.isnan(vals)
    n_obs = obs.sum(axis=1)
    # the extremes of the observed values (fmax/fmin skip NaN: no masked copies of the matrix)
    vmax = np.fmax.reduce(vals, axis=1)
    vmin = np.fmin.reduce(vals, axis=1)
    constant = keep & (n_obs > 0) & (vmax == vmin)
    if constant.any():
        log.warning(
            "%d phenotypes are constant across samples and are skipped (e.g. %s)",
            int(constant.sum()), ", ".join(map(str, phenotype_ids[constant][:5])),
        )
    report["phenotypes_constant"] = int(constant.sum())
    keep &= ~constant
    # the basis on all samples also validates covariates / dof up front (and logs drops once)
    base = Residualizer.from_covariates(C, n_samples=vals.shape[1], covariate_ids=cov_ids,
                                        where="covariates")
    too_few = keep & (n_obs < base.rank + 2)
    if too_few.any():
        log.warning(
            "%d phenotypes have too few non-missing samples for the model and are skipped",
            int(too_few.sum()),
        )
    report["phenotypes_too_few_samples"] = int(too_few.sum())
    keep &= ~too_few
    candidates = np.nonzero(keep)[0]
    report["covariates_dropped"] = list(base.dropped)
    report["dof"] = base.dof

    pattern_rows: dict[bytes, list[int]] = {}
    for i in candidates:
        pattern_rows.setdefault(np.packbits(obs[i]).tobytes(), []).append(int(i))
    staged: list[tuple[np.ndarray, np.ndarray | None, Residualizer, np.ndarray, np.ndarray, np.ndarray]] = []
    explained = 0
    for rows in pattern_rows.values():
        rows_a = np.asarray(rows)
        mask = obs[rows_a[0]]
        if mask.all():
            res, sidx = base, None
        else:
            sidx = np.nonzero(mask)[0]
            res = Residualizer.from_covariates(
                None if C is None else C[sidx], n_samples=len(sidx), covariate_ids=cov_ids,
                where=f"covariates on the {len(sidx)} samples observed for some phenotypes",
            )
        P = vals[rows_a] if sidx is None else vals[rows_a][:, sidx]
        R = res.transform(P)
        # np.linalg.norm(., axis=1) bit for bit, without (phenotypes, samples) temporaries
        norm = np.sqrt(row_dots(R, R))
        zero = norm <= 1e-12 * np.maximum(np.sqrt(row_dots(P, P)), 1e-300)
        if zero.any():  # fully explained by the covariates: nothing left to test
            explained += int(zero.sum())
            rows_a, R, norm, P = rows_a[~zero], R[~zero], norm[~zero], P[~zero]
            if rows_a.size == 0:
                continue
        R /= norm[:, None]
        staged.append((rows_a, sidx, res, R, norm, P))
    if explained:
        log.warning("%d phenotypes are fully explained by the covariates; skipped", explained)
    report["phenotypes_explained_by_covariates"] = explained
    kept = np.sort(np.concatenate([s[0] for s in staged])) if staged else np.zeros(0, np.int64)
    if kept.size == 0:
        raise InputError(
            "no phenotype can be tested: check that phenotype and genotype contigs match (chr1 vs 1 "
            "is handled), that the phenotypes lie within the window of some variant, and that they "
            "are not constant"
        )
    report["phenotypes_tested"] = int(kept.size)
    position = np.full(vals.shape[0], -1, dtype=np.int64)
    position[kept] = np.arange(kept.size)
    groups = [PhenotypeGroup(index=position[rows_a], sample_index=sidx, P_hat=P_hat, p_norm=norm,
                             P_raw=P, basis=res)
              for rows_a, sidx, res, P_hat, norm, P in staged]
    if len(pattern_rows) > 1:
        log.info("phenotypes fall into %d missing-value patterns; each residualized on its own "
                 "samples", len(pattern_rows))
    return kept, groups, base, report


def contig_ranges(variant_contig: np.ndarray) -> dict[int, tuple[int, int]]:
    """``contig index -> (first variant, one past last)`` of contiguous contig blocks.

    >>> contig_ranges(np.array([0, 0, 2, 2, 2]))
    {0: (0, 2), 2: (2, 5)}
    """
    vc = np.asarray(variant_contig)
    if vc.size == 0:
        return {}
    change = np.flatnonzero(np.diff(vc)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [vc.size]])
    return {int(vc[a]): (int(a), int(b)) for a, b in zip(starts, ends, strict=True)}


def window_bounds(
    variant_position: np.ndarray,
    ranges: dict[int, tuple[int, int]],
    contig: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    window: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Variant index bounds ``[lo, hi)`` of each phenotype's window (tensorQTL's rule).

    A variant at 1-based ``pos`` is in the window when ``start + 1 - w <= pos <= end + w``
    (BED ``start``/``end``). Phenotypes whose ``contig`` is -1 or has no variants get ``lo = hi
    = 0``.

    >>> lo, hi = window_bounds(np.array([100, 200, 300]), {0: (0, 3)}, np.array([0]),
    ...                        np.array([199]), np.array([200]), 100)
    >>> lo.tolist(), hi.tolist()
    ([0], [3])
    """
    lo = np.zeros(len(start), dtype=np.int64)
    hi = np.zeros(len(start), dtype=np.int64)
    for c, (a, b) in ranges.items():
        sel = np.flatnonzero(contig == c)
        if sel.size == 0:
            continue
        pos = variant_position[a:b]
        lo[sel] = a + np.searchsorted(pos, start[sel] + 1 - window, side="left")
        hi[sel] = a + np.searchsorted(pos, end[sel] + window, side="right")
    return lo, hi


def ensure_genotypes(genotypes: xr.Dataset) -> xr.Dataset:
    """A genotype Dataset in dqtl's model, from any xarray Dataset with VCF Zarr variables.

    Datasets from :func:`dqtl.open_genotypes` pass through; a Dataset from plain
    ``xarray.open_zarr``, sgkit's ``load_dataset`` or bio2zarr (string dtypes, masked fill
    values, variables not yet loaded) is brought into the model by the same checks.
    """
    if genotypes.attrs.get("dqtl_model") == 1:
        return genotypes
    out = open_genotypes(genotypes)
    out.attrs["dqtl_model"] = 1
    return out


def genotype_array(genotypes: xr.Dataset, chunks: int | None = None) -> Any:
    """The dask array the kernels read: dosages if present, else calls; all samples per chunk."""
    import dask.array as da

    name = "call_dosage" if "call_dosage" in genotypes else "call_genotype"
    if name not in genotypes:
        raise InputError("genotypes have neither call_genotype nor call_dosage")
    arr = genotypes[name].data
    if not isinstance(arr, da.Array):
        arr = da.from_array(arr, chunks=(chunks or 10_000,) + arr.shape[1:])
    var_chunks: Any = chunks if chunks else arr.chunks[0]
    return arr.rechunk((var_chunks,) + tuple(-1 for _ in arr.shape[1:]))


def delayed_rows(arr: Any, rows: Any) -> Any:
    """``arr[rows]`` (a slice or an index array along the first axis) as a Delayed numpy array to
    pass to a delayed task; a numpy ``arr`` is indexed now.

    A dask array passed to a delayed call is wrapped by dask (``ProhibitReuse``): every key of
    its graph renamed per call, so neighbouring tasks each load the chunks they share, and
    ``distributed`` imported (0.13 s of a local run's start-up). Its chunks as Delayed objects
    keep their keys: a chunk two tasks read is loaded once. The graph is not optimised: dask's
    optimisation fuses each slice into its own store read (every task then decompresses the
    whole chunks it touches: 41 decompressions of a store's 10 genotype chunks in a permutation
    run at array density, where the tasks are smaller than the chunks).
    """
    import dask
    import dask.array as da

    if not isinstance(arr, da.Array):
        return arr[rows]
    sub = arr[rows]
    if any(len(c) > 1 for c in sub.chunks[1:]):
        sub = sub.rechunk((sub.chunks[0],) + tuple(-1 for _ in sub.shape[1:]))
    pieces = sub.to_delayed(optimize_graph=False).ravel().tolist()
    if len(pieces) == 1:
        return pieces[0]
    return dask.delayed(_stack_rows, pure=True)(pieces)


def _stack_rows(pieces: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(pieces, axis=0)


@dataclass
class StudyPlan:
    """Eager metadata of a run (small: IDs, positions, window bounds, residual phenotypes).

    Phenotype arrays hold the tested phenotypes only, in input order (sorted by contig and
    start); ``groups`` index into them.
    """

    phenotype_id: np.ndarray  # (p,) str
    phenotype_contig: np.ndarray  # (p,) genotype contig name ("" when the contig has no variants)
    phenotype_contig_index: np.ndarray  # (p,) index into contig_id, -1 when none
    phenotype_start: np.ndarray  # (p,) BED start (0-based)
    phenotype_end: np.ndarray
    window_lo: np.ndarray  # (p,) first variant index in the window (global)
    window_hi: np.ndarray  # (p,) one past the last
    groups: list[PhenotypeGroup]
    genotype_sample_index: np.ndarray  # genotype columns of the analysis samples
    sample_id: np.ndarray
    variant_position: np.ndarray  # int64
    variant_contig: np.ndarray  # int index into contig_id
    contig_id: np.ndarray
    contig_range: dict[int, tuple[int, int]]
    window: int
    ploidy: int
    base: Residualizer  # the covariate basis on all analysis samples
    genotypes: xr.Dataset = field(repr=False)
    maf_threshold: float = 0.0
    covariates: np.ndarray | None = None  # (samples, covariates) aligned to sample_id
    covariate_id: tuple[str, ...] = ()
    report: dict[str, Any] = field(default_factory=dict)
    phenotype_group_index: np.ndarray | None = None  # (p,) index into group_id
    group_id: np.ndarray | None = None

    @property
    def n_samples(self) -> int:
        return len(self.sample_id)

    @property
    def n_phenotypes(self) -> int:
        return len(self.phenotype_id)

    @property
    def n_variants(self) -> int:
        return len(self.variant_position)

    @property
    def dof(self) -> int:
        return int(self.base.dof)

    @property
    def contigs(self) -> list[str]:
        """Contigs with at least one phenotype, in genotype order."""
        have = set(self.phenotype_contig.tolist())
        return [c for c in self.contig_id.tolist() if c in have]

    def genotype_array(self, chunks: int | None = None) -> Any:
        """The genotype dask array of the run (see :func:`genotype_array`)."""
        return genotype_array(self.genotypes, chunks)

    def group_of(self) -> np.ndarray:
        """(p,) index of each phenotype's missing-value group."""
        out = np.full(self.n_phenotypes, -1, dtype=np.int64)
        for g, grp in enumerate(self.groups):
            out[grp.index] = g
        return out

    def select(self, keep: np.ndarray | Sequence[str]) -> StudyPlan:
        """The plan restricted to some phenotypes (a bool mask or phenotype IDs); bases reused."""
        k = np.asarray(keep)
        mask = k if k.dtype == bool else np.isin(self.phenotype_id, k.astype(str))
        rows = np.flatnonzero(mask)
        position = np.full(self.n_phenotypes, -1, dtype=np.int64)
        position[rows] = np.arange(rows.size)
        groups = []
        for grp in self.groups:
            sel = mask[grp.index]
            if sel.any():
                groups.append(dataclasses.replace(
                    grp, index=position[grp.index[sel]], P_hat=grp.P_hat[sel],
                    p_norm=grp.p_norm[sel], P_raw=grp.P_raw[sel],
                ))
        per_phenotype = {
            name: getattr(self, name)[rows]
            for name in ("phenotype_id", "phenotype_contig", "phenotype_contig_index",
                         "phenotype_start", "phenotype_end", "window_lo", "window_hi")
        }
        pgi = None if self.phenotype_group_index is None else self.phenotype_group_index[rows]
        return dataclasses.replace(self, groups=groups, phenotype_group_index=pgi,
                                   report={**self.report, "phenotypes_tested": int(rows.size)},
                                   **per_phenotype)


def plan_study(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None = None,
    *,
    window: int = 1_000_000,
    cis: bool = True,
    maf_threshold: float = 0.0,
    allow_sample_intersection: bool = False,
    min_samples: int = 3,
) -> StudyPlan:
    """Align and validate the inputs of a run and compute its eager metadata, once.

    Parameters
    ----------
    genotypes
        Any xarray Dataset with VCF Zarr variables (from :func:`dqtl.open_genotypes`,
        ``xarray.open_zarr``, sgkit or bio2zarr).
    phenotypes
        From :func:`dqtl.read_phenotype_bed` (or any Dataset with the registered phenotype
        variables).
    covariates
        From :func:`dqtl.read_covariates`, or None.
    window
        Half-width in bp around the TSS (or the body ``[start, end]``): the cis window, or for
        a trans scan (``cis=False``) the cis exclusion (0: none).
    cis
        True: phenotypes without a variant in their window are not tested (counted in the
        report). False (trans): every phenotype is tested; the window bounds are its exclusion.
    maf_threshold
        Variants with ``min(af, 1 - af)`` below this are not tested (applied in the kernels).
    allow_sample_intersection
        Analyse the samples shared by all inputs instead of failing on a mismatch.

    Raises
    ------
    InputError
        Mismatched or duplicated samples, unsorted variants, missing variables, non-finite
        covariates, too few samples or degrees of freedom, nothing testable.

    Examples
    --------
    >>> from dqtl.simulation import simulate
    >>> sim = simulate(n_samples=40, n_variants=200, n_phenotypes=5, seed=1)
    >>> plan = plan_study(sim, sim, sim, window=50_000)  # one Dataset holds all three inputs
    >>> plan.n_samples, plan.dof == 40 - 1 - sim.sizes["covariates"] - 1
    (40, True)
    """
    if window < 0:
        raise InputError(f"--window must be >= 0, got {window}")
    if not 0 <= maf_threshold < 0.5:
        raise InputError(f"--maf-threshold must be in [0, 0.5), got {maf_threshold}")
    genotypes = ensure_genotypes(genotypes)
    validate(phenotypes, ("phenotype_id", "phenotype_contig", "phenotype_start", "phenotype_end",
                          "phenotype_values", "sample_id"), source="phenotypes")
    pidx, gidx, cidx = align_samples(
        phenotypes["sample_id"].values,
        genotypes["sample_id"].values,
        None if covariates is None else covariates["sample_id"].values,
        intersect=allow_sample_intersection,
    )
    n = len(pidx)
    if n < min_samples:
        raise InputError(f"too few samples: {n} shared samples, need at least {min_samples}")

    # --- variants: small 1-D metadata (in memory after ensure_genotypes; order checked there)
    vpos = np.asarray(genotypes["variant_position"].values).astype(np.int64)
    vcon = np.asarray(genotypes["variant_contig"].values).astype(np.int64)
    contig_id = np.asarray(genotypes["contig_id"].values).astype(str)
    ranges = contig_ranges(vcon)

    # --- phenotypes: contig reconciliation (chr1 == 1), windows
    norm_to_gcontig = {normalize_contig(c): i for i, c in enumerate(contig_id)}
    pcontig_raw = np.asarray(phenotypes["phenotype_contig"].values).astype(str)
    gci = np.array([norm_to_gcontig.get(normalize_contig(c), -1) for c in pcontig_raw], dtype=np.int64)
    gci = np.where(np.isin(gci, list(ranges)), gci, -1)
    start = np.asarray(phenotypes["phenotype_start"].values).astype(np.int64)
    end = np.asarray(phenotypes["phenotype_end"].values).astype(np.int64)
    lo, hi = window_bounds(vpos, ranges, gci, start, end, int(window))
    if not cis and window == 0:
        lo[:] = 0
        hi[:] = 0
    report: dict[str, Any] = {}
    no_contig = gci < 0
    if no_contig.any() and cis:
        missing = sorted(set(pcontig_raw[no_contig].tolist()))
        log.info("%d phenotypes are on contigs without genotypes (%s); not tested",
                 int(no_contig.sum()), ", ".join(missing[:10]))
    report["phenotypes_no_genotype_contig"] = int(no_contig.sum())
    empty = (~no_contig) & (hi <= lo)
    if cis:
        if empty.any():
            log.info("%d phenotypes have no variant within the cis window; not tested", int(empty.sum()))
        report["phenotypes_empty_window"] = int(empty.sum())
        candidates = (~no_contig) & (~empty)
    else:
        candidates = np.ones(len(start), dtype=bool)

    # --- phenotype values: constant / too sparse phenotypes, missingness groups, bases
    vals = np.asarray(phenotypes["phenotype_values"].values, dtype=np.float64)[:, pidx]
    if np.isinf(vals).any():
        r, c = np.argwhere(np.isinf(vals))[0]
        raise InputError(
            f"phenotypes: phenotype {phenotypes['phenotype_id'].values[r]!s} has an infinite value "
            f"(sample {phenotypes['sample_id'].values[pidx][c]!s}); use NaN for missing values"
        )
    C, cov_ids = covariate_matrix(covariates, cidx)
    pid_all = np.asarray(phenotypes["phenotype_id"].values).astype(str)
    kept, groups, base, prep_report = prepare_phenotype_groups(
        vals, C, cov_ids, keep=candidates, phenotype_ids=pid_all,
    )
    report.update(prep_report)
    contig_names = np.where(gci[kept] >= 0, contig_id[np.maximum(gci[kept], 0)], "")
    return StudyPlan(
        phenotype_id=pid_all[kept],
        phenotype_contig=contig_names,
        phenotype_contig_index=gci[kept],
        phenotype_start=start[kept],
        phenotype_end=end[kept],
        window_lo=lo[kept],
        window_hi=hi[kept],
        groups=groups,
        genotype_sample_index=np.asarray(gidx, dtype=np.int64),
        sample_id=np.asarray(phenotypes["sample_id"].values).astype(str)[pidx],
        variant_position=vpos,
        variant_contig=vcon,
        contig_id=contig_id,
        contig_range=ranges,
        window=int(window),
        ploidy=int(genotypes.sizes.get("ploidy", 2)),
        base=base,
        genotypes=genotypes,
        maf_threshold=float(maf_threshold),
        covariates=C,
        covariate_id=tuple(cov_ids),
        report=report,
    )
