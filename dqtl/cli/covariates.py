"""``dqtl covariates``: one tensorQTL covariate file from known covariates, genotype PCs and factors."""

from __future__ import annotations

import argparse
import logging

from dqtl.cli.common import (
    add_genotype_args,
    add_scheduler_args,
    genotypes_from,
    positive_int,
    scheduler,
)

log = logging.getLogger("dqtl")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "covariates",
        help="combine known covariates, genotype PCs and hidden factors",
        description=(
            "Combine covariate sources into OUTPUT in tensorQTL's covariate layout (covariates x "
            "samples, first column 'id'): --known covariates, --genotype-pcs N principal "
            "components of --genotypes (LD-pruned common variants, named PC1..PCN) and --factors "
            "(e.g. from 'dqtl factors'). Samples are aligned by ID, in the order of the first "
            "source given (known, factors, genotypes); constant covariates and covariates "
            "collinear with the others (column-pivoted QR) are dropped with a log line."
        ),
    )
    p.add_argument("output", metavar="OUTPUT", help="combined covariates file")
    p.add_argument("--known", metavar="FILE", default=None,
                   help="known covariates (tensorQTL layout or samples x covariates)")
    p.add_argument("--factors", metavar="FILE", default=None,
                   help="hidden factors (tensorQTL layout, e.g. written by 'dqtl factors')")
    p.add_argument("--genotype-pcs", type=positive_int, default=None, metavar="N",
                   help="add N genotype principal components (needs --genotypes)")
    p.add_argument("--genotypes", metavar="GENOTYPES", default=None,
                   help="VCF Zarr store, or VCF/BCF, PLINK 1/2 prefix, BGEN, for --genotype-pcs")
    p.add_argument("--pca-maf-min", type=float, default=0.05, help="genotype PCs: minimum MAF (default 0.05)")
    p.add_argument("--pca-r2-max", type=float, default=0.2, help="genotype PCs: LD pruning r^2 (default 0.2)")
    p.add_argument("--pca-window", type=positive_int, default=200,
                   help="genotype PCs: LD pruning window in variants (default 200)")
    p.add_argument("--seed", type=int, default=0, help="genotype PCs: randomized SVD seed (default 0)")
    add_genotype_args(p)
    add_scheduler_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import pandas as pd

    from dqtl.errors import InputError
    from dqtl.io.atomic import atomic_path
    from dqtl.io.fs import check_bucket, is_url
    from dqtl.io.phenotypes import read_covariates
    from dqtl.preprocess.factors import combine_covariates
    from dqtl.preprocess.pca import genotype_pcs

    out = args.output
    if not is_url(out) and Path(out).is_dir():
        raise InputError(f"OUTPUT: {out} is a directory; expected a file path")
    check_bucket(out)
    if args.genotype_pcs and not args.genotypes:
        raise InputError("--genotype-pcs needs --genotypes (the genotypes to compute PCs from)")
    if args.genotypes and not args.genotype_pcs:
        raise InputError("--genotypes is only used with --genotype-pcs N")
    if not (args.known or args.factors or args.genotype_pcs):
        raise InputError("nothing to combine: give --known, --factors and/or --genotype-pcs N --genotypes")
    sources, names = [], []
    if args.known:
        sources.append(read_covariates(args.known))
        names.append(f"--known {args.known}")
    if args.factors:
        ref = sources[0]["sample_id"].values if sources else None
        sources.append(read_covariates(args.factors, sample_ids=ref))
        names.append(f"--factors {args.factors}")
    if args.genotype_pcs:
        with genotypes_from(args.genotypes, fmt=args.genotype_format,
                            progress=not args.no_progress) as geno, \
                scheduler(args.scheduler_address, progress=not args.no_progress):
            if sources:
                from dqtl.io.samples import index_samples

                index_samples(sources[0]["sample_id"].values, geno["sample_id"].values,
                              where="--genotypes", reference="covariate samples", problem="are not genotyped",
                              fix="genotype PCs need every sample's genotypes")
            pca = genotype_pcs(geno, n_components=args.genotype_pcs, maf_min=args.pca_maf_min,
                               r2_max=args.pca_r2_max, ld_prune_window=args.pca_window,
                               seed=args.seed, variants_chunk_size=args.variants_chunk_size)
        sources.append(pca.to_covariates(prefix="PC"))
        names.append(f"--genotype-pcs {args.genotype_pcs}")
        log.info("covariates: %d genotype PCs from %d samples x %d LD-pruned variants",
                 args.genotype_pcs, pca.scores.shape[0], pca.loadings.shape[0])
    combined = combine_covariates(*sources, names=names)
    # constant/collinear covariates were dropped with a log line by the residualizer's QR
    values = combined["covariate_values"].values.T
    df = pd.DataFrame(values, columns=combined["sample_id"].values.astype(str))
    df.insert(0, "id", combined["covariate_id"].values.astype(str))
    with atomic_path(out) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.10g")
    log.info("covariates: wrote %d covariates x %d samples to %s", df.shape[0], df.shape[1] - 1, out)
    return 0
