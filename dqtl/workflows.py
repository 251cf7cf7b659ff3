"""End-to-end workflows that compute and write result files (used by the CLI and examples).

The statistics live in :mod:`dqtl.association`; this module only orchestrates: one study plan
per run, the method's graph, writers on top, one atomic publish step
(:class:`dqtl.io.fs.Publication`). cis nominal pairs are written by the tasks that compute
them: each batch task writes its part where it runs, one task per contig concatenates the parts
into the contig file, and the client receives only counts.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
import xarray as xr

from dqtl import figures
from dqtl.association.cis import COUNTERS, CisBatch, cis_batches, cis_nominal_graph
from dqtl.compute import compute
from dqtl.io.fs import Publication, absolute, gzip_writer, join, open_file, storage_options
from dqtl.io.results import (
    CIS_PAIRS_SCHEMA,
    CisPairsPart,
    concat_parquet,
    from_tensorqtl_cis,
    parquet_options,
    to_tensorqtl_cis,
    to_tensorqtl_pairs,
)
from dqtl.io.variant_ids import variant_rows
from dqtl.study import StudyPlan, genotype_array, plan_study

__all__ = [
    "CisNominalSummary",
    "run_cis_nominal",
    "run_cis_permute",
    "run_cis_interaction",
    "run_cis_interaction_permute",
    "run_trans_interaction",
    "run_cis_independent",
    "run_finemap",
    "run_coloc",
    "read_cis_results",
]

log = logging.getLogger(__name__)


@dataclass
class CisNominalSummary:
    """What a cis-nominal run wrote and skipped."""

    files: list[str] = field(default_factory=list)
    n_pairs: int = 0
    n_phenotypes: int = 0
    n_samples: int = 0
    seconds: float = 0.0
    report: dict[str, Any] = field(default_factory=dict)


def concat_pairs_parts(summaries: list[dict[str, Any]], parts: list[str], path: str) -> dict[str, Any]:
    """Task: concatenate a contig's parts (batch order = final order) into its file; the
    contig's counts and the :class:`~dqtl.plot.PValueSketch` of its p-values (for the QQ plot,
    without reading the files again)."""
    from dqtl.plot import PValueSketch

    sketch = PValueSketch()
    n = concat_parquet(parts, path, CIS_PAIRS_SCHEMA, remove_parts=True,
                       on_batch=lambda b: sketch.add(b.column("pval_nominal").to_numpy(zero_copy_only=False)))
    out: dict[str, Any] = {k: int(sum(int(s[k]) for s in summaries)) for k in COUNTERS}
    out["n_pairs"] = n
    out["sketch"] = sketch
    return out


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
    allow_sample_intersection: bool = False,
    plan: StudyPlan | None = None,
) -> CisNominalSummary:
    """Run a cis-nominal scan and write ``{output_prefix}.cis_qtl_pairs.<contig>.parquet``.

    ``output_prefix`` is a local path or an fsspec URL. Batch tasks write parts beside the
    outputs (a folder every worker can reach), contig tasks concatenate them into staged files,
    and the files are moved into place together only when every contig has succeeded: a failed
    run leaves no partial output. Peak memory is one batch per thread, whatever the number of
    pairs.
    """
    t0 = time.perf_counter()
    if plan is None:
        plan = plan_study(genotypes, phenotypes, covariates, window=window,
                          maf_threshold=maf_threshold,
                          allow_sample_intersection=allow_sample_intersection)
    batches = cis_batches(plan)
    log.info(
        "cis nominal: %d phenotypes, %d samples, %d variants, dof %d, window %d bp, %d tasks",
        plan.n_phenotypes, plan.n_samples, plan.n_variants, plan.dof, plan.window, len(batches),
    )
    summary = CisNominalSummary(n_phenotypes=plan.n_phenotypes, n_samples=plan.n_samples)
    concat = dask.delayed(concat_pairs_parts, pure=False)
    with Publication() as pub:
        work = pub.scratch_dir(f"{output_prefix}.cis_qtl_pairs", "parts")
        part_paths = [join(work, f"part-{k:07d}.arrow") for k in range(len(batches))]
        graph = cis_nominal_graph(plan, dtype=dtype, variants_chunk_size=variants_chunk_size,
                                  batches=batches, sinks=[CisPairsPart(p) for p in part_paths])
        by_contig: dict[str, list[tuple[CisBatch, Any, str]]] = {c: [] for c in plan.contigs}
        for (batch, task), part in zip(graph, part_paths, strict=True):
            by_contig[batch.contig].append((batch, task, part))
        finals, tasks = [], []
        for contig, items in by_contig.items():
            final = f"{output_prefix}.cis_qtl_pairs.{contig}.parquet"
            tasks.append(concat([w for _, w, _ in items], [p for _, _, p in items], pub.stage(final)))
            finals.append(final)
        results = compute(tasks, label="cis nominal contigs")
        for contig, res in zip(by_contig, results, strict=True):
            log.info("contig %s: %d pairs", contig, res["n_pairs"])
            summary.n_pairs += res["n_pairs"]
        summary.files = finals
        _stage_qq(pub, [r["sketch"] for r in results], f"{output_prefix}.cis_qtl_pairs.qq.png",
                  "cis nominal pairs")
    counts = {k: sum(r[k] for r in results) for k in COUNTERS}
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


def _stage_qq(pub: Publication, sketches: list[Any], final: str, label: str) -> None:
    """QQ plot with lambda_GC of the p-values the ``sketches`` (one per contig) summarise, staged
    as ``final`` (drawn beside the run: :mod:`dqtl.figures`)."""
    from dqtl.plot import PValueSketch, plot_qq_sketch

    sketch = PValueSketch.merged(sketches)
    lam = sketch.lambda_gc()
    log.info("%s: lambda_GC %.3f over %d p-values", label, lam, sketch.n)
    figures.submit(pub, final, plot_qq_sketch, sketch, label=label, lambda_gc=lam)


def _stage_gene_plots(pub: Publication, cis_df: Any, plan: StudyPlan, output_prefix: str,
                      fdr: float) -> None:
    """Permutation results: the histogram of pval_beta with pi0, and a gene Manhattan plot."""
    import pandas as pd

    from dqtl.plot import plot_gene_manhattan, plot_pvalue_histogram

    pi0 = cis_df.attrs.get("pi0")
    figures.submit(pub, f"{output_prefix}.cis_qtl.pvalues.png", plot_pvalue_histogram,
                   cis_df["pval_beta"], pi0=pi0, label="pval_beta (beta approximation)",
                   title=f"{len(cis_df)} phenotypes")
    where = pd.DataFrame({"contig": plan.phenotype_contig, "position": plan.phenotype_start},
                         index=pd.Index(plan.phenotype_id.astype(str)))
    genes = cis_df.join(where, on="phenotype_id") if "phenotype_id" in cis_df else cis_df.iloc[:0]
    figures.submit(pub, f"{output_prefix}.cis_qtl.manhattan.png", plot_gene_manhattan,
                   genes.dropna(subset=["contig"]), fdr=fdr,
                   title=f"gene-level cis results, q <= {fdr:g} in colour")


def write_table_gz(df: Any, path: str) -> None:
    """A tab-separated, gzip-compressed table at a local path or URL."""
    with open_file(path, "wb") as raw, gzip_writer(raw) as gz:
        df.to_csv(gz, sep="\t", index=False, float_format="%.6g")


def _write_frame_parquet(df: Any, path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open_file(path, "wb") as f:
        table = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(table, f, **parquet_options(table.schema))


def run_cis_interaction(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None,
    interaction: Any,
    output_prefix: str,
    *,
    window: int = 1_000_000,
    maf_threshold: float = 0.0,
    maf_threshold_interaction: float = 0.05,
    allow_sample_intersection: bool = False,
    plan: StudyPlan | None = None,
    **_: Any,
) -> Any:
    """cis genotype x interaction scan (tensorQTL's interaction mode) written as
    ``{output_prefix}.cis_qtl_pairs.<contig>.parquet`` (tensorQTL's interaction columns) and
    ``{output_prefix}.cis_qtl_top_assoc.txt.gz`` (the strongest interaction per phenotype with
    eigenMT's ``tests_emt``, ``pval_emt`` and ``pval_adj_bh``). Batch tasks write their pairs
    where they run; nothing is published unless every contig succeeds."""
    from dqtl.association.interaction import (
        COUNTERS as ICOUNTERS,
    )
    from dqtl.association.interaction import (
        interaction_graph,
        interaction_terms,
        stat_columns,
        top_table,
    )
    from dqtl.io.results import interaction_pairs_schema

    t0 = time.perf_counter()
    if plan is None:
        plan = plan_study(genotypes, phenotypes, covariates, window=window,
                          maf_threshold=maf_threshold,
                          allow_sample_intersection=allow_sample_intersection)
    values, names = interaction_terms(plan, interaction)
    schema = interaction_pairs_schema(stat_columns(names))
    log.info("cis interaction: %d phenotypes, %d samples, %d term(s) (%s), dof %d, MAF filter per "
             "half %s", plan.n_phenotypes, plan.n_samples, len(names), ", ".join(names),
             plan.dof - 2 * len(names),
             maf_threshold_interaction if len(names) == 1 and maf_threshold_interaction > 0 else "off")

    def concat(results: list[dict[str, Any]], parts: list[str], path: str) -> int:
        return concat_parquet(parts, path, schema, remove_parts=True)

    concat_task = dask.delayed(concat, pure=False)
    with Publication() as pub:
        work = pub.scratch_dir(f"{output_prefix}.cis_qtl_pairs", "parts")
        batches = cis_batches(plan)
        part_paths = [join(work, f"part-{k:07d}.arrow") for k in range(len(batches))]
        graph = interaction_graph(plan, values, names,
                                  maf_threshold_interaction=maf_threshold_interaction,
                                  sinks=[CisPairsPart(p, schema) for p in part_paths])
        by_contig: dict[str, list[tuple[Any, str]]] = {c: [] for c in plan.contigs}
        for (batch, task), part in zip(graph, part_paths, strict=True):
            by_contig[batch.contig].append((task, part))
        finals, concats = [], []
        for contig, items in by_contig.items():
            final = f"{output_prefix}.cis_qtl_pairs.{contig}.parquet"
            concats.append(concat_task([t for t, _ in items], [p for _, p in items],
                                       pub.stage(final)))
            finals.append(final)
        out = compute([*concats, *[t for _, t in graph]], label="cis interaction")
        n_pairs = sum(int(n) for n in out[:len(concats)])
        batch_out = out[len(concats):]
        top = top_table([r for b in batch_out for r in b["top"]], names)
        write_table_gz(top, pub.stage(f"{output_prefix}.cis_qtl_top_assoc.txt.gz"))
    counts = {c: int(sum(int(b[c]) for b in batch_out)) for c in ICOUNTERS}
    log.info("wrote %d interaction pairs for %d phenotypes in %.1f s (%d variants below the "
             "per-half MAF, %d pairs with a singular design (statistics NaN), %d monomorphic, %d missing calls "
             "mean-imputed); %d phenotypes with pval_adj_bh <= 0.05", n_pairs, len(top),
             time.perf_counter() - t0, counts["n_interaction_maf_filtered"], counts["n_singular"],
             counts["n_monomorphic"], counts["n_imputed_calls"],
             int((top["pval_adj_bh"] <= 0.05).sum()) if len(top) else 0)
    top.attrs.update(counts, files=finals, n_pairs=n_pairs)
    return top


def run_cis_interaction_permute(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None,
    interaction: Any,
    output_prefix: str,
    *,
    permutations: Any = None,
    seed: int | None = 0,
    fdr: float = 0.05,
    qvalue_lambda: float | None = None,
    window: int = 1_000_000,
    maf_threshold: float = 0.0,
    maf_threshold_interaction: float = 0.05,
    allow_sample_intersection: bool = False,
) -> Any:
    """Gene-level interaction significance (Freedman-Lane permutations, window maximum, beta
    approximation, q-values) written as ``{output_prefix}.cis_qtl.txt.gz`` with a plot of
    ``pval_beta`` against ``pval_perm`` (``{output_prefix}.cis_qtl.png``)."""
    from dqtl.association.interaction import map_cis_interaction_permute

    nperm = 1000 if permutations is None else int(permutations.nperm_max)
    nperm_min = None if permutations is None else int(permutations.nperm_min)
    t0 = time.perf_counter()
    res = map_cis_interaction_permute(
        genotypes, phenotypes, covariates, interaction, nperm=nperm, nperm_min=nperm_min,
        seed=seed, window=window,
        maf_threshold=maf_threshold, maf_threshold_interaction=maf_threshold_interaction, fdr=fdr,
        qvalue_lambda=qvalue_lambda, allow_sample_intersection=allow_sample_intersection)
    with Publication() as pub:
        from dqtl.plot import plot_permutation_pvalues

        figures.submit(pub, f"{output_prefix}.cis_qtl.png", plot_permutation_pvalues, res, fdr=fdr,
                       title=f"genotype x interaction: {len(res)} phenotypes, "
                             f"{int((res['qval'] <= fdr).sum())} at FDR {fdr:g}")
        write_table_gz(res, pub.stage(f"{output_prefix}.cis_qtl.txt.gz"))
    log.info("cis interaction permutations: %d phenotypes, %d permutations each, %d with q <= %g "
             "in %.1f s", len(res), nperm, int((res["qval"] <= fdr).sum()), fdr,
             time.perf_counter() - t0)
    return res


def run_trans_interaction(genotypes: xr.Dataset, phenotypes: xr.Dataset,
                          covariates: xr.Dataset | None, interaction: Any, output_prefix: str,
                          **options: Any) -> Any:
    """trans genotype x interaction scan (:func:`dqtl.association.trans_interaction.
    map_trans_interaction`) written as ``{output_prefix}.trans_qtl_pairs.parquet`` (tensorQTL's
    interaction columns and ``qval``) with a JSON summary ``{output_prefix}.trans_summary.json``."""
    import json

    from dqtl.association.trans_interaction import map_trans_interaction

    t0 = time.perf_counter()
    hits = map_trans_interaction(genotypes, phenotypes, covariates, interaction, **options)
    summary = {"n_pairs": len(hits), **{k: v for k, v in hits.attrs.items()},
               "n_qval_05": int((hits["qval"] <= 0.05).sum()) if len(hits) else 0}
    with Publication() as pub:
        _write_frame_parquet(hits, pub.stage(f"{output_prefix}.trans_qtl_pairs.parquet"))
        with open_file(pub.stage(f"{output_prefix}.trans_summary.json"), "w") as f:
            json.dump(summary, f, indent=2, default=float)
    log.info("trans interaction: %d pairs with pval_gi <= %g of %d tests (%d with q <= 0.05; %d "
             "variants below the per-half MAF) in %.1f s", len(hits), hits.attrs["pval_threshold"],
             hits.attrs["n_tests"], summary["n_qval_05"], hits.attrs["n_interaction_maf_filtered"],
             time.perf_counter() - t0)
    return hits


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
    allow_sample_intersection: bool = False,
    plan: StudyPlan | None = None,
    publication: Publication | None = None,
) -> Any:
    """Permutation pass; writes ``{prefix}.cis_qtl.txt.gz``, ``{prefix}.cis_qtl.signif_pairs.parquet``
    and the plot ``{prefix}.cis_qtl.png`` (beta-approximated vs empirical p-values).

    The significant pairs are the nominal pairs of significant phenotypes (or of every member of a
    significant group) with ``pval_nominal <= pval_nominal_threshold`` of their gene. The files
    appear together only when all are complete (staged into ``publication`` when given, which
    the caller commits).
    """
    from dqtl.association import signif_pairs
    from dqtl.association.permutation import PermutationSpec, permutation_pass, with_groups

    t0 = time.perf_counter()
    if plan is None:
        plan = plan_study(genotypes, phenotypes, covariates, window=window,
                          maf_threshold=maf_threshold,
                          allow_sample_intersection=allow_sample_intersection)
    spec = permutations if isinstance(permutations, PermutationSpec) else PermutationSpec.parse(permutations, seed=seed)
    grouped = plan if phenotype_groups is None else with_groups(plan, phenotype_groups)
    pub = publication or Publication()

    def draw(table: Any) -> None:
        """The figures, drawn (beside the run) while the top variants' IDs and the significant
        pairs are read: they need the p- and q-values only."""
        from dqtl.plot import plot_permutation_pvalues

        genes = to_tensorqtl_cis(table)
        n_sig = int((genes["qval"] <= fdr).sum())
        figures.submit(pub, f"{output_prefix}.cis_qtl.png", plot_permutation_pvalues, genes, fdr=fdr,
                       title=f"{len(genes)} phenotypes, {n_sig} significant at FDR {fdr:g}")
        _stage_gene_plots(pub, genes, plan, output_prefix, fdr)

    try:
        # the tasks keep each phenotype's candidate significant pairs (association/signif_pairs.py)
        res, rows = permutation_pass(grouped, spec, dtype=dtype, fdr=fdr, qvalue_lambda=qvalue_lambda,
                                     pairs_bound=signif_pairs.BOUND, before_ids=draw)
        cis_df = to_tensorqtl_cis(res)  # the file's columns
        sig = cis_df[cis_df["qval"] <= fdr]
        pdf = signif_pairs.significant_pairs(grouped, cis_df, rows, fdr, signif_pairs.BOUND)
        if pdf is None:  # p_t above the tasks' bound: a nominal pass over the significant phenotypes
            if len(sig):  # (none significant: the empty table, no pass)
                log.info("significant pairs: a nominal pass (genome-wide threshold %.3g above %g)",
                         cis_df.attrs.get("pval_threshold", np.nan), signif_pairs.BOUND)
            pdf = _significant_pairs(genotypes, phenotypes, covariates, plan, cis_df, sig,
                                     phenotype_groups, dtype)
        write_table_gz(cis_df, pub.stage(f"{output_prefix}.cis_qtl.txt.gz"))
        _write_frame_parquet(pdf.reset_index(drop=True),
                             pub.stage(f"{output_prefix}.cis_qtl.signif_pairs.parquet"))
        if publication is None:
            pub.commit()
    except BaseException:
        pub.abort()
        raise
    log.info(
        "permutations: %d phenotypes, %d significant at FDR %.2g (pi0 %.3f, p threshold %.4g), "
        "%d significant pairs, %.1f s", len(cis_df), len(sig), fdr, cis_df.attrs.get("pi0", np.nan),
        cis_df.attrs.get("pval_threshold", np.nan), len(pdf), time.perf_counter() - t0,
    )
    return res


def _significant_pairs(genotypes: xr.Dataset, phenotypes: xr.Dataset, covariates: xr.Dataset | None,
                       plan: StudyPlan, cis_df: Any, sig: Any, phenotype_groups: Any, dtype: Any) -> Any:
    """The nominal pairs of significant phenotypes (or of every member of a significant group)
    with ``pval_nominal <= pval_nominal_threshold`` of their gene."""
    import pandas as pd

    from dqtl.association.cis import map_cis_nominal

    if phenotype_groups is not None:
        groups = pd.Series(dict(phenotype_groups)) if not isinstance(phenotype_groups, pd.Series) else phenotype_groups
        groups.index = groups.index.astype(str)
        thr = sig.set_index("group_id")["pval_nominal_threshold"]
        members = groups[groups.astype(str).isin(thr.index.astype(str))]
        gene_thr = pd.Series(thr.loc[members.astype(str)].to_numpy(), index=members.index)
    else:
        gene_thr = sig.set_index("phenotype_id")["pval_nominal_threshold"]
    if not len(gene_thr):
        return pd.DataFrame(columns=[*to_tensorqtl_pairs(xr.Dataset({k: ("pairs", np.zeros(0)) for k in (
            "phenotype_id", "variant_id", "start_distance", "af", "ma_samples", "ma_count",
            "p_value", "beta", "beta_se")})).columns, "pval_nominal_threshold"])
    pairs = map_cis_nominal(genotypes, phenotypes, covariates, dtype=dtype,
                            plan=plan.select(gene_thr.index.to_numpy(dtype=str)))
    # the pairs come phenotype by phenotype: one threshold lookup per phenotype, and the table
    # is built for the kept pairs only (string columns of every pair cost more than the scan)
    ids = pairs["phenotype_id"].values
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, np.intp)
    thr = np.repeat(gene_thr.reindex(ids[starts]).to_numpy(dtype=float), np.diff(np.r_[starts, len(ids)]))
    keep = np.flatnonzero(pairs["p_value"].values <= thr)
    pdf = to_tensorqtl_pairs(pairs.isel(pairs=keep))
    pdf["pval_nominal_threshold"] = thr[keep]  # its gene's (its group's) threshold
    return pdf


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
    allow_sample_intersection: bool = False,
) -> Any:
    """Independent signals; writes ``{prefix}.cis_independent_qtl.txt.gz``.

    ``cis_results`` is a ``cis_qtl.txt.gz`` (local path or URL) from a permutation pass with the
    same seed and permutations; without it the permutation pass runs first, and its files and
    the signals are published together.
    """
    from dqtl.association.independent import map_cis_independent

    plan = plan_study(genotypes, phenotypes, covariates, window=window, maf_threshold=maf_threshold,
                      allow_sample_intersection=allow_sample_intersection)
    pub = Publication()
    if cis_results:
        res = read_cis_results(cis_results)
    else:
        res = run_cis_permute(
            genotypes, phenotypes, covariates, output_prefix, permutations=permutations, seed=seed,
            fdr=fdr, qvalue_lambda=qvalue_lambda, phenotype_groups=phenotype_groups, dtype=dtype,
            plan=plan, publication=pub,
        )
    with pub:  # the permutation pass's files and the signals are published together
        ind = map_cis_independent(
            genotypes, phenotypes, covariates, res, fdr=fdr, permutations=permutations,
            seed=seed, phenotype_groups=phenotype_groups, dtype=dtype, plan=plan,
        )
        write_table_gz(to_tensorqtl_cis(ind), pub.stage(f"{output_prefix}.cis_independent_qtl.txt.gz"))
    return ind


def read_cis_results(path: str) -> Any:
    """A ``cis_qtl.txt.gz`` (dqtl's or tensorQTL's; local or URL) as a gene-level Dataset."""
    import pandas as pd

    from dqtl.errors import InputError

    try:
        df = pd.read_csv(absolute(path), sep="\t", storage_options=storage_options(path) or None)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise FileNotFoundError(f"permutation results {path} do not exist") from None
        raise InputError(f"cannot read permutation results {path}: {exc}") from None
    need = {"phenotype_id", "variant_id", "pval_beta", "qval"}
    if not need <= set(df.columns):
        raise InputError(
            f"{path} lacks columns {sorted(need - set(df.columns))}; expected the cis_qtl.txt.gz of "
            f"'dqtl cis --mode permute' (or tensorQTL with q-values)"
        )
    return from_tensorqtl_cis(df)


def run_finemap(
    genotypes: xr.Dataset,
    phenotypes: xr.Dataset,
    covariates: xr.Dataset | None,
    output_prefix: str,
    *,
    cis_results: str | None = None,
    fdr: float = 0.05,
    window: int = 1_000_000,
    maf_threshold: float = 0.0,
    max_effects: int = 10,
    coverage: float = 0.95,
    min_abs_corr: float = 0.5,
    allow_sample_intersection: bool = False,
) -> Any:
    """SuSiE fine-mapping of eGenes (``q_value <= fdr`` in ``cis_results``) or of every tested
    phenotype; writes ``{prefix}.susie_cs.txt.gz`` (``phenotype_id, cs_id, variant_id, pip,
    cs_coverage, cs_min_abs_corr, cs_size``) and ``{prefix}.susie_pips.parquet``
    (``phenotype_id, variant_id, pip`` for every variant of every fine-mapped gene), together.
    """
    import pandas as pd

    from dqtl.errors import InputError
    from dqtl.finemap.mapping import map_finemap

    t0 = time.perf_counter()
    plan = plan_study(genotypes, phenotypes, covariates, window=window, maf_threshold=maf_threshold,
                      allow_sample_intersection=allow_sample_intersection)
    ids = None
    if cis_results:
        res = read_cis_results(cis_results)
        q = res["q_value"].values.astype(float)
        ids = res["phenotype_id"].values.astype(str)[q <= fdr]
        if ids.size == 0:
            raise InputError(f"{cis_results}: no eGene at FDR <= {fdr}; nothing to fine-map")
        log.info("finemap: %d eGenes at FDR %.2g from %s", ids.size, fdr, cis_results)
    ds = map_finemap(genotypes, phenotypes, covariates, phenotype_ids=ids, max_effects=max_effects,
                     coverage=coverage, min_abs_corr=min_abs_corr, plan=plan)
    cs = pd.DataFrame({
        "phenotype_id": ds["cs_phenotype_id"].values, "cs_id": ds["cs_id"].values,
        "variant_id": ds["cs_variant_id"].values, "pip": ds["cs_pip"].values,
        "cs_coverage": ds["cs_coverage"].values, "cs_min_abs_corr": ds["cs_min_abs_corr"].values,
        "cs_size": ds["cs_size"].values,
    })
    pips = pd.DataFrame({"phenotype_id": ds["pip_phenotype_id"].values,
                         "variant_id": ds["pip_variant_id"].values, "pip": ds["pip"].values})
    with Publication() as pub:
        write_table_gz(cs, pub.stage(f"{output_prefix}.susie_cs.txt.gz"))
        _write_frame_parquet(pips, pub.stage(f"{output_prefix}.susie_pips.parquet"))
    log.info("finemap: %d genes, %d credible sets (%d variants), %.1f s",
             int(ds.attrs["n_phenotypes"]), cs["cs_id"].nunique(), len(cs), time.perf_counter() - t0)
    return ds


def run_coloc(
    gwas_path: str,
    eqtl_prefix: str,
    genotypes: xr.Dataset,
    output_prefix: str,
    *,
    method: str = "abf",
    fdr: float = 0.05,
    eqtl_n: int | None = None,
    gwas_type: str = "quant",
    gwas_s: float | None = None,
    gwas_n: float | None = None,
    p1: float = 1e-4,
    p2: float = 1e-4,
    p12: float | None = None,
    ld_path: str | None = None,
    max_effects: int = 10,
    plot_pp_h4: float = 0.8,
) -> Any:
    """Colocalise every eGene of an eQTL run with a GWAS (``method``: ``abf``, ``susie`` or
    ``both``), as a graph over genes; writes ``{output_prefix}.coloc.txt.gz`` (one row per gene
    for ``abf``, one per pair of eQTL/GWAS credible sets for ``susie``; columns
    :data:`dqtl.finemap.colocalize.SUMMARY_COLUMNS`) and a locus plot
    ``{output_prefix}.coloc.<gene>.png`` for each gene with a ``PP.H4 > plot_pp_h4``.

    The eQTL side is read from the files of ``dqtl cis``: ``{eqtl_prefix}.cis_qtl_pairs.*.parquet``
    (nominal statistics) and, when present, ``{eqtl_prefix}.cis_qtl.txt.gz`` (eGenes at ``fdr``;
    otherwise every gene of the pairs). GWAS alleles are harmonised against ``genotypes``. For
    ``susie``, each trait is fitted by SuSiE-RSS (``max_effects`` effects) with LD computed from
    ``genotypes`` (all its samples) over the gene's shared variants; the GWAS uses the LD matrix
    at ``ld_path`` instead when given. ``p12`` defaults to each method's coloc default (1e-5 for
    abf, 5e-6 for susie).
    """
    import glob

    import pandas as pd
    import pyarrow.parquet as pq

    from dqtl.errors import InputError
    from dqtl.finemap.colocalize import (
        SUMMARY_COLUMNS,
        coloc_graph,
        gwas_site_variants,
        harmonise_gwas,
    )
    from dqtl.io.fs import exists
    from dqtl.io.sumstats import read_gwas_sumstats, read_ld_matrix
    from dqtl.plot import save_figure

    methods = {"abf": ("abf",), "susie": ("susie",), "both": ("abf", "susie")}[method]
    gwas = read_gwas_sumstats(gwas_path)
    ld = read_ld_matrix(ld_path) if ld_path else None
    if "susie" in methods and gwas_n is None and "n" not in gwas:
        raise InputError(f"{gwas_path}: --method {method} needs the GWAS sample size: an n column "
                         "or --gwas-n")
    files = sorted(glob.glob(glob.escape(eqtl_prefix) + ".cis_qtl_pairs.*.parquet"))
    if not files:
        raise FileNotFoundError(f"--eqtl {eqtl_prefix}: no {eqtl_prefix}.cis_qtl_pairs.*.parquet "
                                "(run dqtl cis --mode nominal with this prefix first)")
    genes = None
    if exists(f"{eqtl_prefix}.cis_qtl.txt.gz"):
        res = read_cis_results(f"{eqtl_prefix}.cis_qtl.txt.gz")
        q = res["q_value"].values.astype(float)
        genes = set(res["phenotype_id"].values.astype(str)[q <= fdr].tolist())
        if not genes:
            raise InputError(f"{eqtl_prefix}.cis_qtl.txt.gz: no eGene at FDR <= {fdr}")
    cols = ["phenotype_id", "variant_id", "af", "slope", "slope_se"]
    parts = []
    for f in files:
        table = pq.read_table(f, columns=cols,
                              filters=[("phenotype_id", "in", sorted(genes))] if genes else None)
        parts.append(table.to_pandas())
    pairs = pd.concat(parts, ignore_index=True).rename(columns={"slope": "beta", "slope_se": "beta_se"})
    if pairs.empty:
        raise InputError(f"--eqtl {eqtl_prefix}: no pairs for the selected genes")
    variants = gwas_site_variants(genotypes, gwas)
    pairs["variant_row"] = variant_rows(genotypes, pairs["variant_id"], source=f"--eqtl {eqtl_prefix}")
    unknown = pairs["variant_row"] < 0
    if unknown.any():
        raise InputError(f"--eqtl {eqtl_prefix}: {int(unknown.sum())} eQTL variants (e.g. "
                         f"{pairs['variant_id'][unknown].iloc[0]}) are not in --genotypes: give the "
                         "genotypes the eQTL run used")
    harmonised, report = harmonise_gwas(gwas, variants)
    log.info("coloc: GWAS %d variants: %d kept (%d swapped alleles flipped), %d strand-ambiguous "
             "dropped, %d allele mismatches dropped, %d not in the genotypes", report["gwas_variants"],
             report["kept"], report["swapped_alleles_flipped"], report["strand_ambiguous_dropped"],
             report["allele_mismatch_dropped"], report["not_in_genotypes"])
    if harmonised.empty or not pairs["variant_id"].isin(harmonised["variant_id"]).any():
        raise InputError(f"{gwas_path}: no GWAS variant overlaps the eQTL variants after allele "
                         "harmonisation (check the genome build and contig names)")
    n = int(eqtl_n or genotypes.sizes["samples"])
    tasks = coloc_graph(pairs, harmonised, genotype_array(genotypes), methods=methods,
                        ploidy=int(genotypes.sizes.get("ploidy", 2)), ld_gwas=ld, n_samples=n,
                        gwas_type=gwas_type, gwas_s=gwas_s, gwas_n=gwas_n, p1=p1, p2=p2,
                        p12_abf=1e-5 if p12 is None else p12,
                        p12_susie=5e-6 if p12 is None else p12, L=max_effects)
    # eqtl_sdY = 1 (the kernel's default): normalized (inverse-normal transformed) expression
    out = compute(tasks, label="coloc genes", blas_threads=1)
    summary = pd.DataFrame([r for part in out for r in part["rows"]], columns=SUMMARY_COLUMNS)
    details = {k: v for part in out for k, v in part["details"].items()}
    cs_file = f"{eqtl_prefix}.susie_cs.txt.gz"
    cs = pd.read_csv(cs_file, sep="\t") if exists(cs_file) else None
    best = summary.groupby("phenotype_id", sort=False)["PP.H4.abf"].max()
    g = harmonised.set_index("variant_id")
    with Publication() as pub:
        write_table_gz(summary, pub.stage(f"{output_prefix}.coloc.txt.gz"))
        for gene, pp4 in best[best > plot_pp_h4].items():
            d = pairs[(pairs["phenotype_id"] == gene) & pairs["variant_id"].isin(g.index)]
            rows = summary[(summary["phenotype_id"] == gene) & (summary["PP.H4.abf"] == pp4)]
            members = set() if cs is None else set(cs.loc[cs["phenotype_id"] == gene, "variant_id"])
            ax = _locus_plot(genotypes, variants, d, g, str(rows["top_snp"].iloc[0]), members,
                             details.get(str(gene)),
                             title=f"{gene}: PP.H4 = {pp4:.3f} ({rows['method'].iloc[0]})")
            save_figure(ax, pub.stage(f"{output_prefix}.coloc.{gene}.png"))
    log.info("coloc: %d genes (%s), %d with PP.H4 > 0.8", summary["phenotype_id"].nunique(),
             method, int((best > 0.8).sum()))
    for note, count in summary["note"].dropna().value_counts().items():
        log.info("coloc: %d genes: %s", count, note)
    summary.attrs["harmonisation"] = report
    return summary


def _locus_plot(genotypes: xr.Dataset, variants: Any, pairs: Any, gwas: Any, lead: str,
                members: set[str], susie: dict[str, Any] | None, *, title: str) -> Any:
    """The locus plot of one gene: -log10 p of both traits, r² with the lead from the store,
    credible sets ringed and, after ``--method susie``, both traits' PIPs."""
    import pandas as pd
    from scipy import stats

    from dqtl.kernels.genotypes import decode_block
    from dqtl.plot import plot_locus

    snp = pairs["variant_id"].astype(str).to_numpy()
    index = pd.Index(variants["variant_id"])
    rows = index.get_indexer(snp)
    lo, hi = int(rows.min()), int(rows.max()) + 1
    block = np.asarray(genotype_array(genotypes)[lo:hi].compute())
    G = decode_block(block, np.arange(block.shape[1]), ploidy=int(genotypes.sizes.get("ploidy", 2))).G
    G = G[rows - lo]
    lead_row = G[int(np.flatnonzero(snp == lead)[0])]
    Gc = G - G.mean(axis=1, keepdims=True)
    lc = lead_row - lead_row.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (Gc @ lc) / (np.linalg.norm(Gc, axis=1) * np.linalg.norm(lc))
    gw = gwas.loc[snp]
    z_gwas = gw["beta"].to_numpy(dtype=float) / np.sqrt(gw["varbeta"].to_numpy(dtype=float))
    z_eqtl = pairs["beta"].to_numpy(dtype=float) / pairs["beta_se"].to_numpy(dtype=float)
    if susie is not None:
        members = members | susie["cs_eqtl"] | susie["cs_gwas"]
    region = pd.DataFrame({
        "variant_id": snp,
        "position": variants["position"].to_numpy()[rows],
        "p_eqtl": 2 * stats.norm.sf(np.abs(z_eqtl)),
        "p_gwas": 2 * stats.norm.sf(np.abs(z_gwas)),
        "r2": np.nan_to_num(r * r),
        "in_cs": np.isin(snp, sorted(members)),
    })
    if susie is not None:
        pos = pd.Index(susie["snp"]).get_indexer(snp)
        region["pip_eqtl"] = np.where(pos >= 0, susie["pip_eqtl"][pos], np.nan)
        region["pip_gwas"] = np.where(pos >= 0, susie["pip_gwas"][pos], np.nan)
    return plot_locus(region, lead=lead, title=title)
