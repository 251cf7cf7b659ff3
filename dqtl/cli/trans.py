"""``dqtl trans``: genome-wide trans-eQTL scan (resumable, out-of-core, distributed, CPU or GPU)."""

from __future__ import annotations

import argparse
import logging

from dqtl.cli.common import (
    add_genotype_args,
    add_scheduler_args,
    add_study_args,
    genotypes_from,
    non_negative_int,
    positive_int,
    read_study_covariates,
    scheduler,
)

log = logging.getLogger("dqtl")


def _probability(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a p-value in (0, 1], got {text!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"expected a p-value in (0, 1], got {text!r}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "trans",
        help="trans-eQTL mapping (all variants x all phenotypes)",
        description=(
            "trans-eQTL scan: every variant against every phenotype; writes the pairs with "
            "p <= --pval-threshold outside the cis window to OUTPUT_PREFIX.trans_qtl_pairs.parquet "
            "(variant_id, phenotype_id, pval, b, b_se, af, qval; qval = BH over all tests), "
            "OUTPUT_PREFIX.trans_phenotype_tests.parquet (tests and hits per phenotype) and "
            "OUTPUT_PREFIX.trans_summary.json. Completed blocks are recorded in "
            "OUTPUT_PREFIX.trans_blocks/: rerunning the same command after a crash skips them."
        ),
    )
    p.add_argument("genotypes", metavar="GENOTYPES", help="VCF Zarr store, or VCF/BCF, PLINK 1/2 prefix, BGEN")
    p.add_argument("phenotypes", metavar="PHENOTYPES", help="phenotype BED (.bed, .bed.gz, .bed.parquet)")
    p.add_argument("output_prefix", metavar="OUTPUT_PREFIX")
    add_study_args(p, window=False)  # trans has --cis-window, the exclusion
    p.add_argument("--pval-threshold", type=_probability, default=1e-5,
                   help="keep pairs with p <= this (default 1e-5)")
    p.add_argument("--cis-window", type=non_negative_int, default=5_000_000,
                   help="exclude pairs within this many bp of the phenotype's TSS/body; 0 disables "
                        "(default 5000000)")
    p.add_argument("--memory-limit", default="1GiB", metavar="SIZE",
                   help="memory budget of one block task, e.g. 2GiB; sets the block sizes (default 1GiB)")
    p.add_argument("--phenotypes-per-block", type=positive_int, default=None,
                   help="phenotypes per block task (default: from --memory-limit)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                   help="run the block kernels on the CPU (numpy) or a CUDA GPU (CuPy)")
    p.add_argument("--output-format", choices=["parquet", "zarr", "both"], default="parquet",
                   help="pairs as parquet, as a Zarr store OUTPUT_PREFIX.trans_qtl_pairs.zarr, or both")
    p.add_argument("--phenotype-qvalues", action="store_true",
                   help="also write qval_phenotype: BH within each phenotype over its own tests")
    p.add_argument("--permutations", type=non_negative_int, default=0,
                   help="synthetic permuted phenotypes for pval_perm/pval_beta columns "
                        "(genome-wide null of a gene's minimum p; assumes normal-transformed "
                        "phenotypes; default 0 = off)")
    p.add_argument("--seed", type=int, default=0, help="seed of the permutations (default 0)")
    p.add_argument("--regress-cis", metavar="FILE", default=None,
                   help="cis_independent_qtl.txt.gz (every signal) or cis_qtl.txt.gz (eGenes at q <= "
                        "0.05): regress each phenotype on the genotypes of its own cis signals (with "
                        "the covariates) before the scan, as eQTLGen")
    p.add_argument("--hotspot-min-targets", type=non_negative_int, default=5, metavar="K",
                   help="a variant with at least K targets at q <= 0.05 is a hotspot (default 5; 0: "
                        "no hotspot table and plots)")
    p.add_argument("--interaction", metavar="FILE", default=None,
                   help="genotype x interaction scan with one term (tensorQTL's format): keep pairs "
                        "with pval_gi <= --pval-threshold, BH over all tests; writes "
                        "OUTPUT_PREFIX.trans_qtl_pairs.parquet with tensorQTL's interaction columns")
    p.add_argument("--maf-threshold-interaction", type=float, default=0.05, metavar="F",
                   help="with --interaction: MAF >= F in both halves of the samples split on the "
                        "term (default 0.05)")
    p.add_argument("--keep-blocks", action="store_true",
                   help="keep OUTPUT_PREFIX.trans_blocks/ after writing the final files")
    add_genotype_args(p)
    add_scheduler_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dqtl.association.trans import run_trans
    from dqtl.errors import InputError
    from dqtl.io.fs import check_bucket
    from dqtl.io.phenotypes import read_phenotype_bed
    from dqtl.io.trans_output import input_signature

    progress = not args.no_progress
    check_bucket(args.output_prefix)  # fail before any work when the output bucket is missing
    phen = read_phenotype_bed(args.phenotypes)
    cov = read_study_covariates(args, phen)
    formats = ("parquet", "zarr") if args.output_format == "both" else (args.output_format,)
    if args.interaction:
        if args.regress_cis:
            raise InputError("--regress-cis is not available with --interaction")
        return _run_interaction(args, phen, cov)
    token = input_signature(args.genotypes)
    with genotypes_from(args.genotypes, fmt=args.genotype_format, progress=progress) as geno, \
            scheduler(args.scheduler_address, progress=progress):
        if args.regress_cis:
            from dqtl.association.cis_regress import cis_signals, read_signals, regress_cis

            phen = regress_cis(geno, phen, cov, cis_signals(read_signals(args.regress_cis)),
                               allow_sample_intersection=args.allow_sample_intersection)
        run_trans(
            geno, phen, cov, args.output_prefix, pval_threshold=args.pval_threshold,
            maf_threshold=args.maf_threshold, cis_window=args.cis_window,
            memory_limit=args.memory_limit, variants_per_block=args.variants_chunk_size,
            phenotypes_per_block=args.phenotypes_per_block, permutations=args.permutations,
            seed=args.seed, device=args.device, output_formats=formats,
            phenotype_qvalues=args.phenotype_qvalues,
            allow_sample_intersection=args.allow_sample_intersection, input_token=token,
            keep_blocks=args.keep_blocks,
        )
        if args.hotspot_min_targets and "parquet" in formats:
            _hotspots(args, geno, phen)
    return 0


def _hotspots(args: argparse.Namespace, geno, phen) -> None:  # noqa: ANN001
    import numpy as np
    import pandas as pd

    from dqtl.hotspots import write_hotspots

    pairs = pd.read_parquet(f"{args.output_prefix}.trans_qtl_pairs.parquet",
                            columns=["variant_id", "phenotype_id", "pval", "qval"])
    # positions of the hit variants only, one chunk of variant IDs at a time (never all IDs)
    wanted = set(pairs["variant_id"].astype(str))
    vid = geno["variant_id"].data
    chunks = vid.chunks[0] if hasattr(vid, "chunks") else (len(vid),)
    found: list[int] = []
    start = 0
    for size in chunks:
        ids = np.asarray(vid[start:start + size]).astype(str)
        found.extend((start + np.flatnonzero(np.isin(ids, list(wanted)))).tolist())
        start += size
    rows = np.asarray(found, dtype=np.int64)
    contigs = np.asarray(geno["contig_id"].values).astype(str)
    variants = pd.DataFrame({
        "variant_id": np.asarray(vid[rows] if len(rows) else np.zeros(0, dtype=str)).astype(str),
        "contig": contigs[np.asarray(geno["variant_contig"].data[rows]).astype(np.int64)],
        "position": np.asarray(geno["variant_position"].data[rows]).astype(np.int64)})
    from dqtl.io.genotypes import normalize_contig

    genes = pd.DataFrame({"phenotype_id": np.asarray(phen["phenotype_id"].values).astype(str),
                          "contig": [normalize_contig(c) for c in np.asarray(phen["phenotype_contig"].values).astype(str)],
                          "start": np.asarray(phen["phenotype_start"].values).astype(np.int64),
                          "end": np.asarray(phen["phenotype_end"].values).astype(np.int64)})
    variants["contig"] = [normalize_contig(c) for c in variants["contig"]]
    write_hotspots(args.output_prefix, pairs, variants, genes, min_targets=args.hotspot_min_targets)


def _run_interaction(args: argparse.Namespace, phen, cov) -> int:  # noqa: ANN001
    from dask.utils import parse_bytes

    from dqtl.errors import InputError
    from dqtl.io.phenotypes import read_interaction
    from dqtl.workflows import run_trans_interaction

    for flag, bad in (("--permutations", args.permutations), ("--phenotype-qvalues", args.phenotype_qvalues),
                      ("--device gpu", args.device == "gpu"), ("--output-format zarr",
                                                                 args.output_format != "parquet")):
        if bad:
            raise InputError(f"{flag} is not available with --interaction")
    if not 0 <= args.maf_threshold_interaction < 0.5:
        raise InputError("--maf-threshold-interaction must be in [0, 0.5)")
    terms = read_interaction(args.interaction)
    try:
        budget = int(parse_bytes(args.memory_limit))
    except ValueError:
        raise InputError(f"--memory-limit: not a size: {args.memory_limit!r}") from None
    progress = not args.no_progress
    with genotypes_from(args.genotypes, fmt=args.genotype_format, progress=progress) as geno, \
            scheduler(args.scheduler_address, progress=progress):
        run_trans_interaction(geno, phen, cov, terms, args.output_prefix,
                              pval_threshold=args.pval_threshold, cis_window=args.cis_window,
                              maf_threshold=args.maf_threshold,
                              maf_threshold_interaction=args.maf_threshold_interaction,
                              memory_limit=budget, variants_per_block=args.variants_chunk_size,
                              allow_sample_intersection=args.allow_sample_intersection)
    return 0
