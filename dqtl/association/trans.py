"""trans-eQTL scan: every variant against every phenotype, keeping the hits ``p <= threshold``.

Graph layer and API. :func:`plan_trans` computes the small eager metadata (aligned samples,
residualized unit-norm phenotypes grouped by missing-value pattern, cis exclusion ranges, the
correlation threshold of each group, block sizes from a memory budget, a fingerprint of the
inputs). :func:`trans_graph` tiles the block kernel
(:func:`dqtl.kernels.trans.trans_block`) over ``variant blocks x phenotype blocks``:
one ``dask.delayed`` task per tile, each reading its genotype chunk straight from Zarr, so peak
memory is set by the block sizes, not by the number of variants. Tasks are pure; each either
returns its hits (:func:`map_trans`, in memory) or records them in a
:class:`dqtl.io.trans_output.TransBlockStore` (:func:`run_trans`: resumable, and a task retried
on another worker after a worker is lost rewrites the same file).

Statistics
----------
Both sides are residualized once (phenotypes in the plan, genotypes per block through their
residual norm only). ``t* = t.isf(p / 2, dof)``, ``r* = t* / sqrt(dof + t*^2)`` per group; a pair
is a hit when ``|r| >= r*`` (``r`` recomputed exactly in float64 for every float32 candidate),
and its variant lies outside the phenotype's cis range (``cis_window`` bp around the TSS or
body, as tensorQTL's ``filter_cis``; ``0`` disables the exclusion). The tests of a phenotype are
the testable variants (polymorphic, passing the MAF filter, non-constant on the phenotype's
samples) outside its cis range; ``qval`` is BH over all of them (exact from hits and count, see
:mod:`dqtl.association.trans_results`).

Permutations (optional)
-----------------------
tensorQTL's trans null: ``permutations`` synthetic phenotypes per missing-value group (the
normal quantiles ``Phi^-1(i / (n + 1))`` shuffled by a seeded generator; this assumes
inverse-normal transformed phenotypes), residualized like the real ones and scanned against
every variant. The genome-wide maximum ``r^2`` per synthetic phenotype gives the null of a
gene's minimum p-value; its beta approximation (:func:`dqtl.multitest.beta_approx_pval`) gives
``pval_beta`` per pair (``BetaCDF(p at the effective dof)``) and ``pval_perm`` (empirical).
Every gene of a group shares the group's null (genes with the same samples have the same
null); the null ignores the cis exclusion (one gene's cis range is a negligible part of the
genome). Random streams depend on the seed and the group's sample set only, never on blocks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import xarray as xr

from dqtl.association.trans_plan import (
    DEFAULT_MEMORY_LIMIT,
    TransPlan,
    choose_block_sizes,
    plan_trans,
)
from dqtl.association.trans_results import assemble_trans, write_trans_results
from dqtl.compute import compute
from dqtl.errors import InputError
from dqtl.kernels.trans import PermutationBlock, PhenotypeBlock, trans_block
from dqtl.study import StudyPlan, genotype_array

__all__ = [
    "TransPlan",
    "plan_trans",
    "choose_block_sizes",
    "trans_graph",
    "map_trans",
    "run_trans",
    "TransSummary",
]

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# graph
# ----------------------------------------------------------------------------------------------
def _block_task(
    block: Any,
    variant_ids: Any,
    v0: int,
    phenotypes: PhenotypeBlock | None,
    permutations: PermutationBlock | None,
    *,
    key: tuple[int, int],
    sample_index: np.ndarray,
    ploidy: int,
    maf_threshold: float,
    store: Any = None,
    sketch_stride: int = 0,
) -> dict[str, Any]:
    """Run :func:`trans_block` on one tile; record it in ``store`` or return it."""
    if store is not None and store.has(key):
        return {"key": key, "skipped": True}
    _release_memory()
    res = trans_block(block, v0, sample_index, phenotypes, ploidy=ploidy,
                      maf_threshold=maf_threshold, permutations=permutations,
                      sketch_stride=sketch_stride)
    vloc = res["variant_index"] - v0
    vids = np.asarray(variant_ids)
    res["variant_id"] = (vids[vloc] if vids.size else
                         np.array([f"variant_{i}" for i in res["variant_index"]], dtype=object)).astype(str)
    res["phenotype_start"] = 0 if phenotypes is None else phenotypes.start
    res["key"] = key
    if store is None:
        _release_memory()
        return res
    store.write(key, {k: v for k, v in res.items() if k != "key"})
    n_hits = int(res["p_value"].size)
    del res, block
    _release_memory()
    return {"key": key, "n_hits": n_hits}


def _release_memory() -> None:
    """Keep the resident size of a long scan flat (glibc only; a no-op elsewhere).

    glibc raises its mmap threshold to the size of the largest freed block (up to 32 MiB), after
    which the block temporaries (MiB-sized arrays of varying shapes) live in per-thread heap
    arenas that fragment: the resident size then creeps up with the number of blocks although
    nothing is retained. Fixing the threshold at 1 MiB (``mallopt(M_MMAP_THRESHOLD)``, once per
    process) returns every large temporary to the OS when it is freed, and ``malloc_trim``
    after each block releases the rest.
    """
    global _MALLOC
    if _MALLOC is None:
        try:
            import ctypes
            import ctypes.util

            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
            _MALLOC = libc
        except (OSError, AttributeError):
            _MALLOC = False
    if _MALLOC:
        _MALLOC.malloc_trim(0)


_MALLOC: Any = None


def trans_graph(
    plan: TransPlan,
    *,
    device: str = "cpu",
    store: Any = None,
    skip: Iterable[tuple[int, int]] = (),
) -> list[Any]:
    """One ``dask.delayed`` task per (variant block, phenotype block) tile not in ``skip``.

    Parameters
    ----------
    device
        ``"cpu"`` (numpy chunks) or ``"gpu"`` (the genotype dask array is mapped to cupy chunks
        and every kernel runs on the GPU).
    store
        A :class:`dqtl.io.trans_output.TransBlockStore`: tasks record their tile there and
        return a small summary; without it they return the hits.
    """
    import dask.array as da

    if device not in ("cpu", "gpu"):
        raise InputError(f"--device must be cpu or gpu, got {device!r}")
    if plan.genotypes is None:
        raise InputError("the trans plan has no genotypes: build it with plan_trans")
    genotypes = plan.genotypes
    arr = genotype_array(genotypes, plan.variants_per_block)
    if arr.shape[0] != plan.n_variants:
        raise InputError("genotypes changed between plan_trans and trans_graph")
    if device == "gpu":
        try:
            import cupy
        except ImportError:
            raise InputError("--device gpu needs CuPy (pip install cupy-cuda12x) and a CUDA GPU") from None
        arr = arr.map_blocks(cupy.asarray, dtype=arr.dtype,
                             meta=cupy.empty((0,) * arr.ndim, dtype=arr.dtype))
    blocks = arr.to_delayed().reshape(-1)
    if "variant_id" in genotypes:
        vid = genotypes["variant_id"].data
        if not isinstance(vid, da.Array):
            vid = da.from_array(np.asarray(vid), chunks=(arr.chunks[0],))
        vid_blocks = vid.rechunk((arr.chunks[0],)).to_delayed().reshape(-1)
    else:
        vid_blocks = [np.zeros(0, dtype=str)] * len(blocks)
    bounds = np.concatenate([[0], np.cumsum(arr.chunks[0])])
    tag = plan.fingerprint[:16]
    pblocks = [dask.delayed(pb, name=f"trans-phenotypes-{tag}-{j}", pure=True)
               for j, pb in enumerate(plan.phenotype_blocks)]
    perm = (dask.delayed(plan.permutation_block, name=f"trans-permutations-{tag}", pure=True)
            if plan.permutation_block is not None else None)
    skip = set(skip)
    task = dask.delayed(_block_task, pure=True)
    common = dict(sample_index=plan.genotype_sample_index, ploidy=plan.ploidy,
                  maf_threshold=plan.maf_threshold, store=store,
                  sketch_stride=sketch_stride(plan.n_variants, len(plan.phenotype_id)))
    out = []
    for b, blk in enumerate(blocks):
        v0 = int(bounds[b])
        for j, pb in enumerate(pblocks):
            if (b, j) not in skip:
                out.append(task(blk, vid_blocks[b], v0, pb, None, key=(b, j),
                                dask_key_name=f"trans-block-{tag}-{b}-{j}", **common))
        if perm is not None and (b, len(pblocks)) not in skip:
            j = len(pblocks)
            out.append(task(blk, vid_blocks[b], v0, None, perm, key=(b, j),
                            dask_key_name=f"trans-block-{tag}-{b}-{j}", **common))
    return out


# ----------------------------------------------------------------------------------------------
# API
# ----------------------------------------------------------------------------------------------
#: at most about this many tests of a trans scan are computed again exactly (row-wise float64)
#: for its QQ plot and lambda_GC: ~1.3e8 multiply-adds at 500 samples, whatever the scan
SKETCH_TESTS = 250_000


def sketch_stride(n_variants: int, n_phenotypes: int) -> int:
    """Every ``stride``-th variant's tests (all phenotypes) form the sample of the null for the
    trans QQ plot and lambda_GC: all tests up to :data:`SKETCH_TESTS`, about that many beyond.

    >>> sketch_stride(300, 804), sketch_stride(2394, 804), sketch_stride(1_000_000, 20_000)
    (1, 8, 80000)
    """
    return max(1, -(-int(n_variants) * int(n_phenotypes) // SKETCH_TESTS))


def _check_device(device: str) -> None:
    if device not in ("cpu", "gpu"):
        raise InputError(f"--device must be cpu or gpu, got {device!r}")


def map_trans(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None = None,
    *,
    pval_threshold: float = 1e-5,
    maf_threshold: float = 0.0,
    cis_window: int = 5_000_000,
    memory_limit: int | str = DEFAULT_MEMORY_LIMIT,
    variants_per_block: int | None = None,
    phenotypes_per_block: int | None = None,
    permutations: int = 0,
    seed: int = 0,
    device: str = "cpu",
    allow_sample_intersection: bool = False,
    study: StudyPlan | None = None,
) -> xr.Dataset:
    """trans scan in memory: every hit ``p <= pval_threshold`` outside the cis window.

    For large scans use :func:`run_trans`, which writes blocks to disk as they complete (bounded
    memory, resumable). Parameters as :func:`plan_trans`; ``device`` ``"cpu"`` or ``"gpu"``.
    Runs on the session's ``distributed.Client`` if one is active, else on local threads.

    Returns
    -------
    xarray.Dataset
        Dimension ``pairs`` (ordered by variant, then phenotype): ``variant_id``,
        ``phenotype_id``, ``p_value``, ``t_value``, ``beta``, ``beta_se``, ``af``, ``r``,
        ``q_value`` (BH over all ``n_tests`` tests), ``q_value_phenotype`` (BH per phenotype),
        and with permutations ``p_value_perm``, ``p_value_beta``. Dimension ``phenotypes``:
        ``tested_phenotype_id``, ``phenotype_n_tests``, ``phenotype_n_hits``. ``attrs``:
        ``n_tests``, ``n_hits``, ``pval_threshold``, ``r_threshold`` and ``dof`` (per group),
        and the run report.

    Examples
    --------
    >>> from dqtl.simulation import simulate
    >>> sim = simulate(n_samples=60, n_variants=300, n_phenotypes=8, seed=1)
    >>> res = map_trans(sim, sim, sim, pval_threshold=1e-3, cis_window=0)
    >>> int(res.attrs["n_tests"])
    2400
    """
    _check_device(device)
    plan = plan_trans(
        genotypes, phenotypes, covariates, pval_threshold=pval_threshold,
        maf_threshold=maf_threshold, cis_window=cis_window, memory_limit=memory_limit,
        variants_per_block=variants_per_block, phenotypes_per_block=phenotypes_per_block,
        permutations=permutations, seed=seed, allow_sample_intersection=allow_sample_intersection,
        study=study,
    )
    parts = compute(trans_graph(plan, device=device), label="trans blocks")
    return assemble_trans(parts, plan)


@dataclass
class TransSummary:
    """What a trans run wrote."""

    files: list[str]
    n_tests: int
    n_hits: int
    n_blocks: int
    n_blocks_skipped: int
    seconds: float
    summary: dict[str, Any]


def run_trans(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None,
    output_prefix: str,
    *,
    pval_threshold: float = 1e-5,
    maf_threshold: float = 0.0,
    cis_window: int = 5_000_000,
    memory_limit: int | str = DEFAULT_MEMORY_LIMIT,
    variants_per_block: int | None = None,
    phenotypes_per_block: int | None = None,
    permutations: int = 0,
    seed: int = 0,
    device: str = "cpu",
    output_formats: Sequence[str] = ("parquet",),
    phenotype_qvalues: bool = False,
    allow_sample_intersection: bool = False,
    input_token: str | None = None,
    keep_blocks: bool = False,
    study: StudyPlan | None = None,
) -> TransSummary:
    """Resumable, out-of-core trans scan writing ``OUTPUT_PREFIX.trans_qtl_pairs.parquet``.

    Block tasks record their hits under ``OUTPUT_PREFIX.trans_blocks/`` as they complete; a
    rerun of the same command (same inputs and parameters) skips the recorded blocks. When every
    block is recorded, the final files are streamed from the blocks and published atomically
    (:func:`dqtl.io.trans_output.write_trans_results`), then the block folder is removed
    (unless ``keep_blocks``). Results do not depend on the block sizes or the number of workers.

    Parameters
    ----------
    output_formats
        ``"parquet"`` and/or ``"zarr"`` (``OUTPUT_PREFIX.trans_qtl_pairs.zarr``).
    phenotype_qvalues
        Also write ``qval_phenotype`` (BH within each phenotype over its own tests).
    Other parameters
        As :func:`map_trans`.
    """
    from dqtl.io.trans_output import TransBlockStore, trans_output_paths

    _check_device(device)
    t0 = time.perf_counter()
    plan = plan_trans(
        genotypes, phenotypes, covariates, pval_threshold=pval_threshold,
        maf_threshold=maf_threshold, cis_window=cis_window, memory_limit=memory_limit,
        variants_per_block=variants_per_block, phenotypes_per_block=phenotypes_per_block,
        permutations=permutations, seed=seed, allow_sample_intersection=allow_sample_intersection,
        input_token=input_token, study=study,
    )
    keys = plan.block_keys()
    perm_keys = plan.permutation_keys()
    n_blocks = sum(len(k) for k in keys) + len(perm_keys)
    paths = trans_output_paths(output_prefix)
    store = TransBlockStore.open(
        paths["blocks"], fingerprint=plan.fingerprint,
        manifest={"n_blocks": n_blocks, "variants_per_block": plan.variants_per_block,
                  "phenotypes_per_block": plan.phenotypes_per_block,
                  "n_variant_blocks": plan.n_variant_blocks,
                  "n_phenotype_blocks": plan.n_phenotype_blocks,
                  "pval_threshold": plan.pval_threshold, "cis_window": plan.cis_window},
    )
    done = store.completed()
    log.info(
        "trans: %d phenotypes (%d groups, dof %s), %d samples, %d variants; %d blocks of %d "
        "variants x %d phenotypes; p <= %g (|r| >= %s), cis window %d bp",
        len(plan.phenotype_id), len(plan.group_dof), plan.group_dof.tolist(), plan.n_samples,
        plan.n_variants, n_blocks, plan.variants_per_block, plan.phenotypes_per_block,
        plan.pval_threshold, np.round(plan.group_r_star, 6).tolist(), plan.cis_window,
    )
    if done:
        log.info("trans: resuming; %d of %d blocks already recorded in %s are skipped",
                 len(done), n_blocks, store.path)
    tasks = trans_graph(plan, device=device, store=store, skip=done)
    compute(tasks, label="trans blocks")
    summary = {
        "pval_threshold": plan.pval_threshold,
        "r_threshold": plan.group_r_star.tolist(),
        "dof": plan.group_dof.tolist(),
        "cis_window": plan.cis_window,
        "maf_threshold": plan.maf_threshold,
        "n_samples": plan.n_samples,
        "n_phenotypes": len(plan.phenotype_id),
        "permutations": plan.permutations,
        "seed": plan.seed,
        "variants_per_block": plan.variants_per_block,
        "phenotypes_per_block": plan.phenotypes_per_block,
        "n_blocks": n_blocks,
        "report": {k: v for k, v in plan.report.items()},
    }
    out = write_trans_results(
        store, output_prefix=output_prefix, plan=plan, summary=summary, formats=output_formats,
        phenotype_qvalues=phenotype_qvalues,
    )
    if not keep_blocks:
        store.remove()
    secs = time.perf_counter() - t0
    log.info("trans: %d hits among %d tests (%d phenotypes with hits) in %.1f s -> %s",
             out["n_hits"], out["n_tests"], out["n_phenotypes_with_hits"], secs,
             ", ".join(out["files"]))
    return TransSummary(files=out["files"], n_tests=out["n_tests"], n_hits=out["n_hits"],
                        n_blocks=n_blocks, n_blocks_skipped=len(done), seconds=secs, summary=out)
