"""The trans scan's plan: the study plan (:mod:`dqtl.study`) plus block layout and thresholds.

:func:`plan_trans` builds the run's :class:`~dqtl.study.StudyPlan` (aligned samples, residualized
unit-norm phenotypes grouped by missing-value pattern, cis exclusion ranges) once, then adds the
correlation threshold of each group, block sizes from a memory budget, the synthetic permuted
phenotypes and a fingerprint of everything that changes a result.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
import xarray as xr

from dqtl.errors import InputError
from dqtl.kernels.stats import r_threshold
from dqtl.kernels.trans import (
    DECODE_BYTES,
    DECODE_ROWS,
    TILE_PHENOTYPES,
    TILE_VARIANTS,
    GroupTile,
    PermutationBlock,
    PhenotypeBlock,
)
from dqtl.study import StudyPlan, plan_study

__all__ = ["TransPlan", "plan_trans", "choose_block_sizes", "DEFAULT_MEMORY_LIMIT"]

log = logging.getLogger(__name__)

_FINGERPRINT_VERSION = "dqtl-trans-2"
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
    genotypes: xr.Dataset | None = field(default=None, repr=False)  # the study's genotypes

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
    one float32 product tile (:data:`~dqtl.kernels.trans.TILE_VARIANTS` x
    :data:`~dqtl.kernels.trans.TILE_PHENOTYPES`) and the float64 temporaries of
    :data:`~dqtl.kernels.trans.DECODE_ROWS` decoded variants; per variant, the raw
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
    study: StudyPlan | None = None,
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
    study
        The run's :class:`~dqtl.study.StudyPlan` when already built (its window is the cis
        exclusion; built with ``cis=False``).
    """
    from dask.utils import parse_bytes

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

    if study is None:
        study = plan_study(genotypes, phenotypes, covariates, window=cis_window, cis=False,
                           maf_threshold=maf_threshold,
                           allow_sample_intersection=allow_sample_intersection)
    genotypes = study.genotypes
    n = study.n_samples
    n_variants = study.n_variants
    groups = study.groups
    report = dict(study.report)
    n_tested = study.n_phenotypes
    lo, hi = study.window_lo, study.window_hi  # cis exclusion ranges (empty when cis_window is 0)

    # ---- groups: dof and r*
    group_dof = np.array([g.dof for g in groups], dtype=np.int64)
    group_r = np.atleast_1d(r_threshold(pval_threshold, group_dof)) if len(groups) else np.zeros(0)
    phen_group = study.group_of()

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
            contiguous = rows[-1] - rows[0] + 1 == rows.size  # then a view, no copy
            P = g.P_hat[rows[0]:rows[-1] + 1] if contiguous else np.ascontiguousarray(g.P_hat[rows])
            tiles.append(GroupTile(
                index=idx.astype(np.int64), sample_index=g.sample_index,
                P=P, p_norm=g.p_norm[rows], Q=g.Q, dof=int(g.dof),
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
            R = g.basis.transform(Y)
            R /= np.linalg.norm(R, axis=1, keepdims=True)
            sidx_l.append(g.sample_index)
            P_l.append(R)
            Q_l.append(g.Q)
        perm_block = PermutationBlock(tuple(sidx_l), tuple(P_l), tuple(Q_l))

    # ---- fingerprint of everything that changes a result
    h = hashlib.sha256()
    _hash_update(
        h, _FINGERPRINT_VERSION, input_token or _genotype_token(genotypes), tuple(garr.shape),
        str(garr.dtype), study.genotype_sample_index, study.variant_position, study.variant_contig, study.contig_id,
        study.phenotype_id, *[g.P_raw for g in groups],
        study.covariates if study.covariates is not None else "no-covariates", lo, hi,
        pval_threshold, maf_threshold, cis_window, permutations, seed, v_b, p_b,
    )
    report.update({
        "n_samples": n, "n_variants": n_variants, "n_phenotypes": n_tested,
        "n_groups": len(groups), "variants_per_block": v_b, "phenotypes_per_block": p_b,
        "memory_limit": mem,
    })
    return TransPlan(
        phenotype_id=study.phenotype_id, phenotype_blocks=blocks, permutation_block=perm_block,
        phenotype_group=phen_group, group_dof=group_dof, group_r_star=group_r,
        genotype_sample_index=study.genotype_sample_index,
        sample_id=study.sample_id,
        n_variants=n_variants, variants_per_block=v_b, phenotypes_per_block=p_b,
        pval_threshold=float(pval_threshold), maf_threshold=float(maf_threshold),
        cis_window=int(cis_window), ploidy=ploidy, permutations=int(permutations), seed=int(seed),
        fingerprint=h.hexdigest(), report=report, genotypes=study.genotypes,
    )


