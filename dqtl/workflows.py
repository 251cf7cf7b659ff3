"""End-to-end workflows that compute and write result files (used by the CLI and examples).

The statistics live in :mod:`dqtl.association`; this module only orchestrates: plan, graph,
compute contig by contig (so memory holds one contig's pairs at a time), write atomically.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from dqtl.association.cis import (
    assemble_pairs,
    cis_nominal_graph,
    compute_parts,
    plan_cis,
    summarize_counts,
)
from dqtl.io.atomic import atomic_path
from dqtl.io.results import to_tensorqtl_pairs, write_parquet

__all__ = ["CisNominalSummary", "run_cis_nominal"]

log = logging.getLogger(__name__)


@dataclass
class CisNominalSummary:
    """What a cis-nominal run wrote and skipped."""

    files: list[Path] = field(default_factory=list)
    n_pairs: int = 0
    n_phenotypes: int = 0
    n_samples: int = 0
    seconds: float = 0.0
    report: dict[str, Any] = field(default_factory=dict)


def run_cis_nominal(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None,
    output_prefix: str,
    *,
    window: int = 1_000_000,
    maf_threshold: float = 0.0,
    variants_chunk_size: int | None = None,
    dtype: Any = np.float64,
    client: Any = None,
    allow_sample_intersection: bool = False,
    progress: bool = False,
) -> CisNominalSummary:
    """Run a cis-nominal scan and write ``{output_prefix}.cis_qtl_pairs.<contig>.parquet``.

    All files are written to temporary paths and renamed into place only when every contig has
    succeeded, so a failed run leaves no partial output.
    """
    t0 = time.perf_counter()
    plan = plan_cis(genotypes, phenotypes, covariates, window=window,
                    allow_sample_intersection=allow_sample_intersection)
    graph = cis_nominal_graph(plan, genotypes, maf_threshold=maf_threshold,
                              variants_chunk_size=variants_chunk_size, dtype=dtype)
    log.info(
        "cis nominal: %d phenotypes, %d samples, %d variants, dof %d, window %d bp",
        len(plan.phenotype_id), plan.n_samples, len(plan.variant_id), plan.report["dof"], plan.window,
    )
    summary = CisNominalSummary(n_phenotypes=len(plan.phenotype_id), n_samples=plan.n_samples)
    cache: dict[Any, dict[str, np.ndarray]] = {}
    with contextlib.ExitStack() as stack:
        for contig, tasks in graph.items():
            parts = compute_parts(tasks, client=client, progress=progress, cache=cache)
            df = to_tensorqtl_pairs(assemble_pairs(plan, parts, contig=contig))
            path = Path(f"{output_prefix}.cis_qtl_pairs.{contig}.parquet")
            write_parquet(df, stack.enter_context(atomic_path(path)))
            summary.files.append(path)
            summary.n_pairs += len(df)
            log.info("contig %s: %d pairs", contig, len(df))
    counts = summarize_counts(list(cache.values()), plan)
    summary.report = {**plan.report, **counts}
    summary.seconds = time.perf_counter() - t0
    log.info(
        "wrote %d pairs for %d phenotypes in %.1f s to %s.cis_qtl_pairs.*.parquet (%d monomorphic "
        "variants skipped, %d below MAF, %d missing calls mean-imputed in %d variants)",
        summary.n_pairs, summary.n_phenotypes, summary.seconds, output_prefix,
        counts["n_monomorphic"], counts["n_maf_filtered"], counts["n_imputed_calls"],
        counts["n_variants_imputed"],
    )
    return summary
