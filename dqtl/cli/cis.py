"""``dqtl cis``: cis-eQTL mapping (nominal pass)."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING

from dqtl.cli.common import (
    add_genotype_args,
    add_scheduler_args,
    add_study_args,
    genotypes_from,
    read_study_covariates,
    scheduler,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("dqtl")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cis",
        help="cis-eQTL mapping",
        description=(
            "cis-eQTL mapping. --mode nominal writes every variant-phenotype pair within the window "
            "as OUTPUT_PREFIX.cis_qtl_pairs.<chr>.parquet; --mode permute writes "
            "OUTPUT_PREFIX.cis_qtl.txt.gz and OUTPUT_PREFIX.cis_qtl.signif_pairs.parquet; "
            "--mode independent writes OUTPUT_PREFIX.cis_independent_qtl.txt.gz (tensorQTL's columns)."
        ),
    )
    p.add_argument("genotypes", metavar="GENOTYPES", help="VCF Zarr store, or VCF/BCF, PLINK 1/2 prefix, BGEN")
    p.add_argument("phenotypes", metavar="PHENOTYPES", help="phenotype BED (.bed, .bed.gz, .bed.parquet)")
    p.add_argument("output_prefix", metavar="OUTPUT_PREFIX")
    p.add_argument("--mode", choices=["nominal", "permute", "independent"], default="nominal",
                   help="nominal: all pairs; permute: gene-level empirical/beta p-values and q-values; "
                        "independent: forward-backward conditionally independent signals of eGenes")
    p.add_argument("--permutations", default="10000", metavar="N|MIN,MAX",
                   help="permutations per phenotype: N fixed, or MIN,MAX adaptive (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shared sample permutations (default 0)")
    p.add_argument("--fdr", type=float, default=0.05, help="FDR for eGenes (default 0.05)")
    p.add_argument("--qvalue-lambda", type=float, default=None, metavar="L",
                   help="fixed lambda for Storey's pi0 (default: smoother over 0.05..0.95)")
    p.add_argument("--phenotype-groups", metavar="FILE", default=None,
                   help="two columns, no header: phenotype_id, group_id (e.g. isoforms of a gene)")
    p.add_argument("--cis-results", metavar="FILE", default=None,
                   help="--mode independent: the cis_qtl.txt.gz of a permute run with the same seed")
    p.add_argument("--interaction", metavar="FILE", default=None,
                   help="genotype x interaction mapping (tensorQTL's format: sample<TAB>value without "
                        "a header, or a header and one column per term): --mode nominal writes "
                        "tensorQTL's interaction columns and OUTPUT_PREFIX.cis_qtl_top_assoc.txt.gz "
                        "(eigenMT); --mode permute gives gene-level permutation p-values of the "
                        "strongest interaction")
    p.add_argument("--contexts", metavar="FILE", default=None,
                   help="map every context (sample<TAB>context: population, tissue, sex ...) in one "
                        "run: per-context outputs OUTPUT_PREFIX.<context>.*, plus "
                        "OUTPUT_PREFIX.contexts.meta_pairs.parquet (nominal) or "
                        "OUTPUT_PREFIX.contexts.txt.gz with context-specific calls and plots (permute)")
    p.add_argument("--maf-threshold-interaction", type=float, default=0.05, metavar="F",
                   help="with one --interaction term: MAF >= F in both halves of the samples split "
                        "on the term's value (default 0.05; 0 turns it off)")
    p.add_argument("--precision", choices=["float64", "float32"], default="float64",
                   help="precision of the genotype x phenotype product (default float64)")
    add_study_args(p)
    add_genotype_args(p)
    add_scheduler_args(p)
    p.set_defaults(func=run, figures=draws_figures, figure_imports=figure_imports)


def read_phenotype_groups(path: str) -> pd.Series:
    """Two-column phenotype -> group table (tab-separated, no header), as tensorQTL's."""
    import pandas as pd

    from dqtl.errors import InputError
    from dqtl.io.phenotypes import check_unique

    try:
        df = pd.read_csv(path, sep="\t", header=None, dtype=str)
    except FileNotFoundError:
        raise FileNotFoundError(f"phenotype groups file {path} does not exist") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read phenotype groups {path}: {exc}") from None
    if df.shape[1] != 2 or df.isna().any().any():
        raise InputError(
            f"{path}: expected two tab-separated columns (phenotype_id, group_id) and no header, "
            f"found {df.shape[1]} columns"
        )
    check_unique(df[0].to_numpy(), what="phenotype IDs", where=path)
    return pd.Series(df[1].to_numpy(), index=df[0].to_numpy())


def draws_figures(args: argparse.Namespace) -> bool:
    """Whether the run starts a figure process (:mod:`dqtl.figures`): runs whose figures can be
    drawn beside the command (permutations: three figures while the significant pairs and the
    tables are made; an independent run that runs its permutation pass; an interaction
    permutation run) or whose matplotlib import it hides (a nominal run: its one figure, the QQ
    plot, comes last; the process imports matplotlib while the command imports its own stack,
    and draws the plot while the command writes its report: 2.55-2.80 -> 2.30-2.45 s at array
    density, 4 alternating runs).
    Not contexts (drawn in the command), interaction pairs or an independent run from given
    permutation results (no figures)."""
    if args.contexts or (args.mode == "nominal" and args.interaction):
        return False
    return not (args.mode == "independent" and args.cis_results)


def figure_imports(args: argparse.Namespace) -> tuple[str, ...]:
    """Modules the figure process imports before its first job: pandas for the permutation
    figures (their data frames); a nominal run's QQ plot needs numpy only (the process then
    costs ~40 MiB less)."""
    return () if args.mode == "nominal" else ("pandas",)


def run(args: argparse.Namespace) -> int:
    from dqtl.association.permutation import PermutationSpec
    from dqtl.errors import InputError
    from dqtl.io.fs import check_bucket
    from dqtl.io.phenotypes import read_phenotype_bed
    from dqtl.workflows import (
        run_cis_independent,
        run_cis_interaction,
        run_cis_interaction_permute,
        run_cis_nominal,
        run_cis_permute,
    )

    progress = not args.no_progress
    check_bucket(args.output_prefix)  # fail before any work when the output bucket is missing
    if not 0 < args.fdr < 1:
        raise InputError(f"--fdr must be in (0, 1), got {args.fdr}")
    if args.qvalue_lambda is not None and not 0 <= args.qvalue_lambda < 1:
        raise InputError(f"--qvalue-lambda must be in [0, 1), got {args.qvalue_lambda}")
    spec = PermutationSpec.parse(args.permutations, seed=args.seed) if args.mode != "nominal" else None
    if args.cis_results and args.mode != "independent":
        raise InputError("--cis-results is only used with --mode independent")
    phen = read_phenotype_bed(args.phenotypes)
    cov = read_study_covariates(args, phen)
    groups = read_phenotype_groups(args.phenotype_groups) if args.phenotype_groups else None
    if groups is not None and args.mode == "nominal":
        raise InputError("--phenotype-groups applies to --mode permute and independent")
    contexts = None
    if args.contexts:
        from dqtl.contexts import read_contexts

        if args.interaction or groups is not None or args.mode == "independent":
            raise InputError("--contexts works with --mode nominal or permute, without "
                             "--interaction and --phenotype-groups")
        contexts = read_contexts(args.contexts)
    interaction = None
    if args.interaction:
        from dqtl.io.phenotypes import read_interaction

        if args.mode == "independent":
            raise InputError("--interaction works with --mode nominal and permute")
        if groups is not None:
            raise InputError("--interaction cannot be combined with --phenotype-groups")
        if not 0 <= args.maf_threshold_interaction < 0.5:
            raise InputError(f"--maf-threshold-interaction must be in [0, 0.5), got "
                             f"{args.maf_threshold_interaction}")
        interaction = read_interaction(args.interaction)
    import numpy as np

    dtype = np.float32 if args.precision == "float32" else np.float64
    with genotypes_from(args.genotypes, fmt=args.genotype_format, progress=progress) as geno, \
            scheduler(args.scheduler_address, progress=progress):
        common = dict(window=args.window, maf_threshold=args.maf_threshold, dtype=dtype,
                      allow_sample_intersection=args.allow_sample_intersection)
        if contexts is not None:
            from dqtl.contexts import run_cis_contexts

            run_cis_contexts(geno, phen, cov, contexts, args.output_prefix, mode=args.mode,
                             permutations=spec, seed=args.seed, fdr=args.fdr,
                             qvalue_lambda=args.qvalue_lambda, **common)
        elif interaction is not None and args.mode == "nominal":
            run_cis_interaction(geno, phen, cov, interaction, args.output_prefix,
                                maf_threshold_interaction=args.maf_threshold_interaction,
                                window=args.window, maf_threshold=args.maf_threshold,
                                allow_sample_intersection=args.allow_sample_intersection)
        elif interaction is not None:
            run_cis_interaction_permute(
                geno, phen, cov, interaction, args.output_prefix, permutations=spec,
                seed=args.seed, fdr=args.fdr, qvalue_lambda=args.qvalue_lambda,
                maf_threshold_interaction=args.maf_threshold_interaction, window=args.window,
                maf_threshold=args.maf_threshold, allow_sample_intersection=args.allow_sample_intersection)
        elif args.mode == "nominal":
            run_cis_nominal(geno, phen, cov, args.output_prefix,
                            variants_chunk_size=args.variants_chunk_size, **common)
        elif args.mode == "permute":
            run_cis_permute(geno, phen, cov, args.output_prefix, permutations=spec, seed=args.seed,
                            fdr=args.fdr, qvalue_lambda=args.qvalue_lambda, phenotype_groups=groups, **common)
        else:
            run_cis_independent(geno, phen, cov, args.output_prefix, cis_results=args.cis_results,
                                permutations=spec, seed=args.seed, fdr=args.fdr,
                                qvalue_lambda=args.qvalue_lambda, phenotype_groups=groups, **common)
    return 0
