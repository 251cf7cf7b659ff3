"""trans-eQTL scan: every variant against every phenotype, keeping the hits ``p <= threshold``.

Graph layer and API. :func:`plan_trans` computes the small eager metadata (aligned samples,
residualized unit-norm phenotypes grouped by missing-value pattern, cis exclusion ranges, the
correlation threshold of each group, block sizes from a memory budget, a fingerprint of the
inputs). :func:`trans_graph` tiles the block kernel
(:func:`dqtl.association.trans_kernels.trans_block`) over ``variant blocks x phenotype blocks``:
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
:mod:`dqtl.io.trans_output`).

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

import hashlib
import logging
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
import xarray as xr

from dqtl.association.cis import _covariate_matrix, _genotype_array, prepare_phenotype_groups
from dqtl.association.trans_kernels import (
    DECODE_BYTES,
    DECODE_ROWS,
    HIT_FIELDS,
    TILE_PHENOTYPES,
    TILE_VARIANTS,
    GroupTile,
    PermutationBlock,
    PhenotypeBlock,
    bh_by_phenotype,
    permutation_null_columns,
    r_threshold,
    trans_block,
)
from dqtl.errors import InputError
from dqtl.io.genotypes import normalize_contig

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

_FINGERPRINT_VERSION = "dqtl-trans-1"
#: default memory budget of one block task
DEFAULT_MEMORY_LIMIT = "1GiB"


@dataclass
class TransPlan:
    """Eager metadata of a trans scan (small: IDs, residualized phenotypes, block layout)."""

    phenotype_id: np.ndarray  # (tested phenotypes,) str
    phenotype_blocks: list[PhenotypeBlock]
    permutation_block: PermutationBlock | None
    phenotype_group: np.ndarray  # (tested phenotypes,) group index
    group_dof: np.ndarray  # (groups,)
    group_r_star: np.ndarray  # (groups,)
    genotype_sample_index: np.ndarray
    sample_id: np.ndarray
    n_variants: int
    variants_per_block: int
    phenotypes_per_block: int
    pval_threshold: float
    maf_threshold: float
    cis_window: int
    ploidy: int
    permutations: int
    seed: int
    fingerprint: str
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return len(self.sample_id)

    @property
    def n_variant_blocks(self) -> int:
        return -(-self.n_variants // self.variants_per_block)

    @property
    def n_phenotype_blocks(self) -> int:
        return len(self.phenotype_blocks)

    def block_keys(self) -> list[list[tuple[int, int]]]:
        """Keys ``(variant block, phenotype block)`` grouped by variant block."""
        return [[(b, j) for j in range(self.n_phenotype_blocks)] for b in range(self.n_variant_blocks)]

    def permutation_keys(self) -> list[tuple[int, int]]:
        if self.permutation_block is None:
            return []
        return [(b, self.n_phenotype_blocks) for b in range(self.n_variant_blocks)]


def choose_block_sizes(
    *,
    n_samples: int,
    n_genotype_samples: int,
    genotype_bytes_per_sample: int,
    n_phenotypes: int,
    memory_limit: int,
    store_chunk: int | None = None,
    n_groups: int = 1,
    n_variants: int | None = None,
    parallelism: int = 1,
    n_permutations: int = 0,
) -> tuple[int, int]:
    """Variants and phenotypes per block task so that one task fits ``memory_limit`` bytes.

    A task holds its phenotype block (float64, ``p_b n`` values), a float32 phenotype tile,
    one float32 product tile (:data:`~dqtl.association.trans_kernels.TILE_VARIANTS` x
    :data:`~dqtl.association.trans_kernels.TILE_PHENOTYPES`) and the float64 temporaries of
    :data:`~dqtl.association.trans_kernels.DECODE_ROWS` decoded variants; per variant, the raw
    genotypes (``genotype_bytes_per_sample`` per genotype sample: ploidy for int8 calls, 4 for
    float32 dosages; counted twice: read and rechunk) and the float32 unit rows of each
    missing-value group. The phenotype block takes at most 40 % of the budget; the block of
    synthetic permuted phenotypes (``n_permutations`` per group) must fit beside the variants
    too. With ``--device gpu`` the same budget applies to GPU memory. With ``n_variants`` and ``parallelism`` (threads), blocks are small enough to give
    every thread two. Variant blocks are whole multiples (or even divisions) of the store's
    chunk, so each stored chunk is read once. The budget covers block data, not the
    interpreter.

    Returns
    -------
    (variants_per_block, phenotypes_per_block)

    Raises
    ------
    InputError
        If the budget cannot hold a block of 16 variants and one phenotype.
    """
    n = max(n_samples, 1)
    p_row = 8 * n
    p_b = int(min(max(n_phenotypes, 1), max(1, (0.4 * memory_limit) // p_row)))
    tile = min(p_b, TILE_PHENOTYPES)
    # phenotype block + float32 tile, product tile + its mask, float64 decode temporaries
    step = max(8, min(DECODE_ROWS, DECODE_BYTES // (8 * max(n_genotype_samples, 1))))
    fixed = (max(p_b, n_permutations * n_groups) * p_row + tile * 4 * n + TILE_VARIANTS * tile * 6
             + step * n_genotype_samples * 8 * 8)
    per_variant = 2 * n_genotype_samples * genotype_bytes_per_sample + n_groups * (4 * n + 32)
    v_b = int((memory_limit - fixed) // per_variant)
    if v_b < 16:
        need = fixed + 16 * per_variant
        raise InputError(
            f"--memory-limit {memory_limit} bytes is too small for a trans block of {n} samples "
            f"(need at least {need} bytes, about {need / 2**20:.0f} MiB); raise --memory-limit"
        )
    v_b = min(v_b, 1 << 17)
    if n_variants and parallelism > 1:
        # enough blocks to keep every thread busy (two per thread)
        v_b = min(v_b, max(TILE_VARIANTS, -(-n_variants // (2 * parallelism))))
    return _align_to_chunk(v_b, store_chunk), int(p_b)


def _align_to_chunk(v_b: int, store_chunk: int | None) -> int:
    """Round a block size down to a multiple, or an even division, of the store's chunk."""
    if not store_chunk:
        return int(v_b)
    if v_b >= store_chunk:
        return int((v_b // store_chunk) * store_chunk)
    return int(-(-store_chunk // -(-store_chunk // v_b)))


def _local_threads() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _hash_update(h: Any, *arrays: Any) -> None:
    for a in arrays:
        if isinstance(a, np.ndarray):
            if a.dtype.kind in "OU":
                h.update("\x1f".join(map(str, a.ravel().tolist())).encode())
            else:
                h.update(str((a.dtype.str, a.shape)).encode())
                h.update(np.ascontiguousarray(a).tobytes())
        else:
            h.update(repr(a).encode())
        h.update(b"\x1e")


def _genotype_token(genotypes: xr.Dataset) -> str:
    name = "call_dosage" if "call_dosage" in genotypes else "call_genotype"
    data = genotypes[name].data
    return str(getattr(data, "name", None) or dask.base.tokenize(data))


def plan_trans(
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
    allow_sample_intersection: bool = False,
    input_token: str | None = None,
) -> TransPlan:
    """Align inputs and compute the eager metadata of a trans scan.

    Parameters
    ----------
    genotypes, phenotypes, covariates
        As for :func:`dqtl.association.cis.map_cis_nominal`.
    pval_threshold
        Keep pairs with ``p <= pval_threshold`` (in (0, 1]).
    maf_threshold
        Skip variants with ``min(af, 1 - af)`` below this (0: keep all polymorphic variants).
    cis_window
        Exclude pairs whose variant lies within this many bp of the phenotype's TSS (or body);
        0 disables the exclusion.
    memory_limit
        Memory budget of one block task (bytes or a string such as ``"2GiB"``); sets the block
        sizes (:func:`choose_block_sizes`) unless they are given.
    variants_per_block, phenotypes_per_block
        Explicit block sizes.
    permutations, seed
        Synthetic permuted phenotypes per missing-value group for ``pval_beta`` (0: none).
    input_token
        A signature of the genotype source (:func:`dqtl.io.trans_output.input_signature`) for
        the fingerprint; default: the dask name of the genotype array.
    """
    from dask.utils import parse_bytes

    from dqtl.association.residualize import Residualizer
    from dqtl.io.phenotypes import align_samples

    if not (0 < pval_threshold <= 1):
        raise InputError(f"--pval-threshold must be in (0, 1], got {pval_threshold}")
    if not 0 <= maf_threshold < 0.5:
        raise InputError(f"--maf-threshold must be in [0, 0.5), got {maf_threshold}")
    if cis_window < 0:
        raise InputError(f"--cis-window must be >= 0 (0 disables the cis exclusion), got {cis_window}")
    if permutations < 0:
        raise InputError(f"--permutations must be >= 0, got {permutations}")
    try:
        mem = int(parse_bytes(memory_limit)) if isinstance(memory_limit, str) else int(memory_limit)
    except (ValueError, TypeError):
        raise InputError(f"--memory-limit: expected a size such as 2GiB or 500MB, got {memory_limit!r}") from None
    for name, v in (("variants_per_block", variants_per_block), ("phenotypes_per_block", phenotypes_per_block)):
        if v is not None and v < 1:
            raise InputError(f"{name} must be a positive number, got {v}")

    pidx, gidx, cidx = align_samples(
        phenotypes["sample_id"].values,
        genotypes["sample_id"].values,
        None if covariates is None else covariates["sample_id"].values,
        intersect=allow_sample_intersection,
    )
    n = len(pidx)
    if n < 3:
        raise InputError(f"too few samples: {n} shared samples, need at least 3")

    vpos = np.asarray(genotypes["variant_position"].values).astype(np.int64)
    vcon = np.asarray(genotypes["variant_contig"].values).astype(np.int64)
    contig_id = np.asarray(genotypes["contig_id"].values).astype(str)
    n_variants = int(vpos.size)
    if n_variants == 0:
        raise InputError("the genotype store has no variants")

    pid_all = np.asarray(phenotypes["phenotype_id"].values).astype(str)
    vals = np.asarray(phenotypes["phenotype_values"].values, dtype=np.float64)[:, pidx]
    C, cov_ids = _covariate_matrix(covariates, cidx)
    kept, groups, base, report = prepare_phenotype_groups(
        vals, C, cov_ids, keep=np.ones(len(pid_all), dtype=bool), phenotype_ids=pid_all,
    )
    report = dict(report)
    n_tested = len(kept)

    # ---- cis exclusion ranges (global variant index [lo, hi)), as tensorQTL's filter_cis
    lo = np.zeros(n_tested, dtype=np.int64)
    hi = np.zeros(n_tested, dtype=np.int64)
    if cis_window > 0:
        from dqtl.io.genotypes import check_variant_order

        check_variant_order(vcon, vpos, contig_id, source="genotypes")
        change = np.flatnonzero(np.diff(vcon)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [n_variants]])
        crange = {int(vcon[a]): (int(a), int(b)) for a, b in zip(starts, ends, strict=True)}
        norm = {normalize_contig(c): i for i, c in enumerate(contig_id)}
        pcon = np.asarray(phenotypes["phenotype_contig"].values).astype(str)[kept]
        start = np.asarray(phenotypes["phenotype_start"].values).astype(np.int64)[kept]
        end = np.asarray(phenotypes["phenotype_end"].values).astype(np.int64)[kept]
        for i in range(n_tested):
            c = norm.get(normalize_contig(pcon[i]), -1)
            if c < 0 or c not in crange:
                continue
            a, b = crange[c]
            pos = vpos[a:b]
            lo[i] = a + np.searchsorted(pos, start[i] + 1 - cis_window, side="left")
            hi[i] = a + np.searchsorted(pos, end[i] + cis_window, side="right")

    # ---- groups: dof and r*
    group_dof = np.array([g.dof for g in groups], dtype=np.int64)
    group_r = np.atleast_1d(r_threshold(pval_threshold, group_dof)) if len(groups) else np.zeros(0)
    phen_group = np.full(n_tested, -1, dtype=np.int64)
    for gi, g in enumerate(groups):
        phen_group[g.index] = gi
    if (phen_group < 0).any():  # explained by covariates: not tested
        keep_rows = np.flatnonzero(phen_group >= 0)
        remap = np.full(n_tested, -1, dtype=np.int64)
        remap[keep_rows] = np.arange(keep_rows.size)
        for g in groups:
            g.index = remap[g.index]
        kept, lo, hi, phen_group = kept[keep_rows], lo[keep_rows], hi[keep_rows], phen_group[keep_rows]
        n_tested = len(kept)
        report["phenotypes_tested"] = n_tested

    # ---- block sizes
    name = "call_dosage" if "call_dosage" in genotypes else "call_genotype"
    garr = genotypes[name]
    ploidy = int(genotypes.sizes.get("ploidy", 2))
    chunks = getattr(garr.data, "chunks", None)
    store_chunk = int(max(chunks[0])) if chunks else None
    v_b, p_b = choose_block_sizes(
        n_samples=n, n_genotype_samples=int(genotypes.sizes["samples"]),
        genotype_bytes_per_sample=ploidy * garr.dtype.itemsize if garr.ndim == 3 else garr.dtype.itemsize,
        n_phenotypes=n_tested, memory_limit=mem,
        store_chunk=store_chunk, n_groups=len(groups), n_variants=n_variants,
        parallelism=1 if variants_per_block else _local_threads(), n_permutations=permutations,
    )
    v_b = int(variants_per_block or min(v_b, n_variants))
    p_b = int(phenotypes_per_block or p_b)

    # ---- phenotype blocks: contiguous ranges of tested phenotypes, split by group
    blocks: list[PhenotypeBlock] = []
    for s in range(0, n_tested, p_b):
        e = min(s + p_b, n_tested)
        tiles = []
        for gi, g in enumerate(groups):
            rows = np.flatnonzero((g.index >= s) & (g.index < e))
            if rows.size == 0:
                continue
            idx = g.index[rows]
            tiles.append(GroupTile(
                index=idx.astype(np.int64), sample_index=g.sample_index,
                P=np.ascontiguousarray(g.P_hat[rows]), p_norm=g.p_norm[rows], Q=g.Q, dof=int(g.dof),
                r_star=float(group_r[gi]), cis_lo=lo[idx], cis_hi=hi[idx],
            ))
        blocks.append(PhenotypeBlock(start=s, stop=e, groups=tuple(tiles)))

    # ---- synthetic permuted phenotypes per group
    perm_block = None
    if permutations:
        import scipy.stats

        sidx_l, P_l, Q_l = [], [], []
        for g in groups:
            ng = n if g.sample_index is None else len(g.sample_index)
            mask = np.zeros(n, dtype=bool)
            mask[slice(None) if g.sample_index is None else g.sample_index] = True
            key = zlib.crc32(np.packbits(mask).tobytes())
            rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(key,)))
            q = scipy.stats.norm.ppf(np.arange(1, ng + 1) / (ng + 1))
            Y = np.stack([rng.permutation(q) for _ in range(permutations)])
            R = Residualizer(Q=g.Q, dof=g.dof).transform(Y)
            R /= np.linalg.norm(R, axis=1, keepdims=True)
            sidx_l.append(g.sample_index)
            P_l.append(R)
            Q_l.append(g.Q)
        perm_block = PermutationBlock(tuple(sidx_l), tuple(P_l), tuple(Q_l))

    # ---- fingerprint of everything that changes a result
    h = hashlib.sha256()
    _hash_update(
        h, _FINGERPRINT_VERSION, input_token or _genotype_token(genotypes), tuple(garr.shape),
        str(garr.dtype), np.asarray(gidx, dtype=np.int64), vpos, vcon, contig_id,
        pid_all[kept], vals[kept], C if C is not None else "no-covariates", lo, hi,
        pval_threshold, maf_threshold, cis_window, permutations, seed, v_b, p_b,
    )
    report.update({
        "n_samples": n, "n_variants": n_variants, "n_phenotypes": n_tested,
        "n_groups": len(groups), "variants_per_block": v_b, "phenotypes_per_block": p_b,
        "memory_limit": mem,
    })
    return TransPlan(
        phenotype_id=pid_all[kept], phenotype_blocks=blocks, permutation_block=perm_block,
        phenotype_group=phen_group, group_dof=group_dof, group_r_star=group_r,
        genotype_sample_index=np.asarray(gidx, dtype=np.int64),
        sample_id=np.asarray(phenotypes["sample_id"].values).astype(str)[pidx],
        n_variants=n_variants, variants_per_block=v_b, phenotypes_per_block=p_b,
        pval_threshold=float(pval_threshold), maf_threshold=float(maf_threshold),
        cis_window=int(cis_window), ploidy=ploidy, permutations=int(permutations), seed=int(seed),
        fingerprint=h.hexdigest(), report=report,
    )


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
) -> dict[str, Any]:
    """Run :func:`trans_block` on one tile; record it in ``store`` or return it."""
    if store is not None and store.block_path(key).exists():
        return {"key": key, "skipped": True}
    _release_memory()
    res = trans_block(block, v0, sample_index, phenotypes, ploidy=ploidy,
                      maf_threshold=maf_threshold, permutations=permutations)
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
    genotypes: xr.Dataset,
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
    arr = _genotype_array(genotypes, plan.variants_per_block)
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
                  maf_threshold=plan.maf_threshold, store=store)
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


def _compute(tasks: Sequence[Any], *, client: Any = None, progress: bool = False,
             blas_threads: int | None = 1) -> list[dict[str, Any]]:
    """Compute the tasks on a distributed ``client`` or the local threaded scheduler.

    Locally each dask thread runs one task with single-threaded BLAS (``blas_threads``): the
    cores then also share the decoding and the hit search, not only the GEMM.
    """
    if not tasks:
        return []
    t0 = time.perf_counter()
    if client is not None:
        from distributed import as_completed

        futures = client.compute(list(tasks))
        done = 0
        for _f in as_completed(futures):
            done += 1
            if progress and (done % max(1, len(futures) // 20) == 0 or done == len(futures)):
                log.info("trans: %d/%d blocks (%.0f s)", done, len(futures), time.perf_counter() - t0)
        return list(client.gather(futures))
    import contextlib

    with contextlib.ExitStack() as stack:
        if blas_threads:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=blas_threads, user_api="blas"))
        if progress:
            import sys

            from dask.diagnostics import ProgressBar

            stack.enter_context(ProgressBar(out=sys.stderr))
        return list(dask.compute(*tasks, scheduler="threads"))


# ----------------------------------------------------------------------------------------------
# API
# ----------------------------------------------------------------------------------------------
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
    client: Any = None,
    allow_sample_intersection: bool = False,
    progress: bool = False,
) -> xr.Dataset:
    """trans scan in memory: every hit ``p <= pval_threshold`` outside the cis window.

    For large scans use :func:`run_trans`, which writes blocks to disk as they complete (bounded
    memory, resumable). Parameters as :func:`plan_trans`; ``device`` ``"cpu"`` or ``"gpu"``,
    ``client`` a ``distributed.Client`` (default: local threads).

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
    from dqtl.multitest import bh

    _check_device(device)
    plan = plan_trans(
        genotypes, phenotypes, covariates, pval_threshold=pval_threshold,
        maf_threshold=maf_threshold, cis_window=cis_window, memory_limit=memory_limit,
        variants_per_block=variants_per_block, phenotypes_per_block=phenotypes_per_block,
        permutations=permutations, seed=seed, allow_sample_intersection=allow_sample_intersection,
    )
    tasks = trans_graph(plan, genotypes, device=device)
    parts = _compute(tasks, client=client, progress=progress)
    n_ph = len(plan.phenotype_id)
    n_tests = np.zeros(n_ph, dtype=np.int64)
    hits = [p for p in parts if p["key"][1] < plan.n_phenotype_blocks]
    for p in hits:
        n_tests[p["phenotype_start"] : p["phenotype_start"] + p["n_tests"].size] += p["n_tests"]
    fields = [*HIT_FIELDS, "variant_id"]
    cat = {k: np.concatenate([p[k] for p in hits]) if hits else np.zeros(0) for k in fields}
    order = np.lexsort((cat["phenotype_index"], cat["variant_index"]))
    cat = {k: v[order] for k, v in cat.items()}
    ph = cat["phenotype_index"].astype(np.int64)
    m = int(n_tests.sum())
    data: dict[str, Any] = {
        "variant_id": ("pairs", cat["variant_id"].astype(str)),
        "phenotype_id": ("pairs", plan.phenotype_id[ph]),
        "p_value": ("pairs", cat["p_value"]),
        "t_value": ("pairs", cat["t_value"]),
        "beta": ("pairs", cat["beta"]),
        "beta_se": ("pairs", cat["beta_se"]),
        "af": ("pairs", cat["af"]),
        "r": ("pairs", cat["r"]),
        "q_value": ("pairs", bh(cat["p_value"], n_tests=max(m, ph.size)) if ph.size else cat["p_value"]),
        "q_value_phenotype": ("pairs", bh_by_phenotype(cat["p_value"], ph, n_tests)),
        "tested_phenotype_id": ("phenotypes", plan.phenotype_id),
        "phenotype_n_tests": ("phenotypes", n_tests),
        "phenotype_n_hits": ("phenotypes", np.bincount(ph, minlength=n_ph).astype(np.int64)),
    }
    attrs: dict[str, Any] = {}
    if plan.permutation_block is not None:
        perm_parts = [p for p in parts if p["key"][1] == plan.n_phenotype_blocks]
        mx = np.max(np.stack([p["perm_max_abs_r"] for p in perm_parts]), axis=0)
        pp, pb, fits = permutation_null_columns(mx, cat["p_value"], cat["r"], plan.phenotype_group[ph], plan.group_dof)
        data["p_value_perm"] = ("pairs", pp)
        data["p_value_beta"] = ("pairs", pb)
        attrs["permutation_null"] = fits
    counters = ("n_variants", "n_valid", "n_monomorphic", "n_maf_filtered", "n_imputed_calls",
                "n_variants_imputed")
    first = [p for p in parts if p["key"][1] == 0]
    ds = xr.Dataset(data)
    ds.attrs.update({k: v for k, v in plan.report.items() if not isinstance(v, list | dict)})
    ds.attrs.update({c: int(sum(int(p[c]) for p in first)) for c in counters})
    ds.attrs.update(
        n_tests=m, n_hits=int(ph.size), pval_threshold=plan.pval_threshold,
        r_threshold=plan.group_r_star.tolist(), dof=plan.group_dof.tolist(),
        cis_window=plan.cis_window, maf_threshold=plan.maf_threshold, **attrs,
    )
    return ds


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
    client: Any = None,
    output_formats: Sequence[str] = ("parquet",),
    phenotype_qvalues: bool = False,
    allow_sample_intersection: bool = False,
    input_token: str | None = None,
    progress: bool = False,
    keep_blocks: bool = False,
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
    from dqtl.io.trans_output import TransBlockStore, trans_output_paths, write_trans_results

    _check_device(device)
    t0 = time.perf_counter()
    plan = plan_trans(
        genotypes, phenotypes, covariates, pval_threshold=pval_threshold,
        maf_threshold=maf_threshold, cis_window=cis_window, memory_limit=memory_limit,
        variants_per_block=variants_per_block, phenotypes_per_block=phenotypes_per_block,
        permutations=permutations, seed=seed, allow_sample_intersection=allow_sample_intersection,
        input_token=input_token,
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
    tasks = trans_graph(plan, genotypes, device=device, store=store, skip=done)
    _compute(tasks, client=client, progress=progress)
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
        store, output_prefix=output_prefix, variant_blocks=keys, permutation_keys=perm_keys,
        phenotype_id=plan.phenotype_id, phenotype_group=plan.phenotype_group,
        group_dof=plan.group_dof, summary=summary, formats=output_formats,
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
