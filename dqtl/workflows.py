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

__all__ = ["CisNominalSummary", "run_cis_nominal", "run_cis_permute", "run_cis_independent"]

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


def _write_table_gz(df: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.6g", compression="gzip")


def run_cis_permute(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None,
    output_prefix: str,
    *,
    permutations: Any = 10_000,
    seed: int | None = 0,
    fdr: float = 0.05,
    qvalue_lambda: float | None = None,
    window: int = 1_000_000,
    maf_threshold: float = 0.0,
    phenotype_groups: Any = None,
    dtype: Any = np.float64,
    client: Any = None,
    allow_sample_intersection: bool = False,
    progress: bool = False,
) -> Any:
    """Permutation pass; writes ``{prefix}.cis_qtl.txt.gz``, ``{prefix}.cis_qtl_signif_pairs.parquet``
    and the plot ``{prefix}.cis_qtl.png`` (beta-approximated vs empirical p-values).

    The significant pairs are the nominal pairs of significant phenotypes (or of every member of a
    significant group) with ``pval_nominal <= pval_nominal_threshold`` of their gene. Both files
    appear only when both are complete.
    """
    import pandas as pd

    from dqtl.association.cis import map_cis_nominal
    from dqtl.association.permutation import map_cis_permutations

    t0 = time.perf_counter()
    cis_df = map_cis_permutations(
        genotypes, phenotypes, covariates, permutations=permutations, seed=seed, window=window,
        maf_threshold=maf_threshold, fdr=fdr, qvalue_lambda=qvalue_lambda,
        phenotype_groups=phenotype_groups, dtype=dtype, client=client, progress=progress,
        allow_sample_intersection=allow_sample_intersection,
    )
    sig = cis_df[cis_df["qval"] <= fdr]
    if phenotype_groups is not None:
        groups = pd.Series(dict(phenotype_groups)) if not isinstance(phenotype_groups, pd.Series) else phenotype_groups
        groups.index = groups.index.astype(str)
        thr = sig.set_index("group_id")["pval_nominal_threshold"]
        members = groups[groups.astype(str).isin(thr.index.astype(str))]
        gene_thr = pd.Series(thr.loc[members.astype(str)].to_numpy(), index=members.index)
    else:
        gene_thr = sig.set_index("phenotype_id")["pval_nominal_threshold"]
    if len(gene_thr):
        sel = np.isin(phenotypes["phenotype_id"].values.astype(str), gene_thr.index.to_numpy(dtype=str))
        pairs = map_cis_nominal(
            genotypes, phenotypes.isel(phenotypes=np.nonzero(sel)[0]), covariates, window=window,
            maf_threshold=maf_threshold, dtype=dtype, client=client,
            allow_sample_intersection=allow_sample_intersection,
        )
        pdf = to_tensorqtl_pairs(pairs)
        pdf = pdf[pdf["pval_nominal"].to_numpy() <= gene_thr.reindex(pdf["phenotype_id"]).to_numpy()]
        pdf = pdf.merge(cis_df[["phenotype_id", "pval_nominal_threshold"]] if phenotype_groups is None
                        else gene_thr.rename("pval_nominal_threshold").rename_axis("phenotype_id").reset_index(),
                        on="phenotype_id", how="left")
    else:
        pdf = pd.DataFrame(columns=[*to_tensorqtl_pairs(xr.Dataset({k: ("pairs", np.zeros(0)) for k in (
            "phenotype_id", "variant_id", "start_distance", "af", "ma_samples", "ma_count",
            "p_value", "beta", "beta_se")})).columns, "pval_nominal_threshold"])
    from dqtl.plot import plot_permutation_pvalues

    ax = plot_permutation_pvalues(cis_df, fdr=fdr)
    ax.set_title(f"{len(cis_df)} phenotypes, {len(sig)} significant at FDR {fdr:g}")
    with contextlib.ExitStack() as stack:
        ax.figure.savefig(stack.enter_context(atomic_path(Path(f"{output_prefix}.cis_qtl.png"))), dpi=110,
                          bbox_inches="tight", format="png")
        _write_table_gz(cis_df, stack.enter_context(atomic_path(Path(f"{output_prefix}.cis_qtl.txt.gz"))))
        write_parquet(pdf.reset_index(drop=True), stack.enter_context(atomic_path(Path(f"{output_prefix}.cis_qtl_signif_pairs.parquet"))))
    log.info(
        "permutations: %d phenotypes, %d significant at FDR %.2g (pi0 %.3f, p threshold %.4g), "
        "%d significant pairs, %.1f s", len(cis_df), len(sig), fdr, cis_df.attrs.get("pi0", np.nan),
        cis_df.attrs.get("pval_threshold", np.nan), len(pdf), time.perf_counter() - t0,
    )
    return cis_df


def run_cis_independent(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None,
    output_prefix: str,
    *,
    cis_results: str | None = None,
    permutations: Any = 10_000,
    seed: int | None = 0,
    fdr: float = 0.05,
    qvalue_lambda: float | None = None,
    window: int = 1_000_000,
    maf_threshold: float = 0.0,
    phenotype_groups: Any = None,
    dtype: Any = np.float64,
    client: Any = None,
    allow_sample_intersection: bool = False,
    progress: bool = False,
) -> Any:
    """Independent signals; writes ``{prefix}.cis_independent_qtl.txt.gz``.

    ``cis_results`` is a ``cis_qtl.txt.gz`` from a permutation pass with the same seed and
    permutations; without it the permutation pass runs first (and is written too).
    """
    import pandas as pd

    from dqtl.association.independent import map_cis_independent
    from dqtl.errors import InputError

    if cis_results:
        try:
            cis_df = pd.read_csv(cis_results, sep="\t")
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            if isinstance(exc, FileNotFoundError):
                raise FileNotFoundError(f"permutation results {cis_results} do not exist") from None
            raise InputError(f"cannot read permutation results {cis_results}: {exc}") from None
        need = {"phenotype_id", "variant_id", "pval_beta", "qval"}
        if not need <= set(cis_df.columns):
            raise InputError(
                f"{cis_results} lacks columns {sorted(need - set(cis_df.columns))}; expected the "
                f"cis_qtl.txt.gz of 'dqtl cis --mode permute' (or tensorQTL with q-values)"
            )
    else:
        cis_df = run_cis_permute(
            genotypes, phenotypes, covariates, output_prefix, permutations=permutations, seed=seed,
            fdr=fdr, qvalue_lambda=qvalue_lambda, window=window, maf_threshold=maf_threshold,
            phenotype_groups=phenotype_groups, dtype=dtype, client=client,
            allow_sample_intersection=allow_sample_intersection, progress=progress,
        )
    ind = map_cis_independent(
        genotypes, phenotypes, covariates, cis_df, fdr=fdr, permutations=permutations, seed=seed,
        window=window, maf_threshold=maf_threshold, phenotype_groups=phenotype_groups, dtype=dtype,
        client=client, progress=progress, allow_sample_intersection=allow_sample_intersection,
    )
    _write_table_gz(ind, Path(f"{output_prefix}.cis_independent_qtl.txt.gz"))
    return ind
