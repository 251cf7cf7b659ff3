"""``dqtl factors``: hidden factors of expression (PEER-equivalent or expression PCs)."""

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

DEFAULT_CANDIDATES = "0,5,10,15,20,30,45,60"


def _n_factors(text: str) -> int | str:
    if text in ("auto", "discovery"):
        return text
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, 'auto' or 'discovery', got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, 'auto' or 'discovery', got {text!r}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "factors",
        help="hidden factors of expression (PEER-equivalent or PCA)",
        description=(
            "Learn hidden factors from a phenotype BED and write them to OUTPUT in tensorQTL's "
            "covariate layout (factors x samples, first column 'id'). --method peer fits a "
            "PEER-equivalent variational Bayes factor model (ARD prior; known --covariates in the "
            "model, not in the output); --method pca writes expression PCs. --n-factors auto uses "
            "the GTEx rule (<150 samples: 15, <250: 30, <350: 45, else 60); --n-factors discovery "
            "maps a gene subset with each of --candidates factors (needs --genotypes) and keeps "
            "the number with the most eGenes, writing OUTPUT.discovery.tsv and "
            "OUTPUT.discovery.png."
        ),
    )
    p.add_argument("phenotypes", metavar="PHENOTYPES", help="phenotype BED (.bed, .bed.gz, .bed.parquet)")
    p.add_argument("output", metavar="OUTPUT", help="factors file (tensorQTL covariate layout)")
    p.add_argument("--method", choices=["peer", "pca"], default="peer",
                   help="peer: variational Bayes factor analysis with ARD (default); pca: expression PCs")
    p.add_argument("--n-factors", type=_n_factors, default="auto", metavar="N|auto|discovery",
                   help="number of factors (default auto: GTEx rule by sample size)")
    p.add_argument("--covariates", metavar="FILE", default=None,
                   help="known covariates included in the PEER model (tensorQTL layout or samples x covariates)")
    p.add_argument("--max-iter", type=positive_int, default=1000, help="PEER iterations at most (default 1000)")
    p.add_argument("--tol", type=float, default=1e-6, help="PEER: relative ELBO change to stop at (default 1e-6)")
    p.add_argument("--seed", type=int, default=0, help="seed (gene subset of --n-factors discovery; default 0)")
    p.add_argument("--genotypes", metavar="GENOTYPES", default=None,
                   help="--n-factors discovery: VCF Zarr store, or VCF/BCF, PLINK 1/2 prefix, BGEN")
    p.add_argument("--candidates", default=DEFAULT_CANDIDATES, metavar="K1,K2,...",
                   help=f"--n-factors discovery: numbers of factors to try (default {DEFAULT_CANDIDATES})")
    p.add_argument("--discovery-genes", type=positive_int, default=500,
                   help="--n-factors discovery: genes mapped per candidate (default 500)")
    p.add_argument("--window", type=positive_int, default=1_000_000,
                   help="--n-factors discovery: cis window in bp (default 1000000)")
    add_genotype_args(p)
    add_scheduler_args(p)
    p.set_defaults(func=run)


def _candidates(text: str) -> list[int]:
    from dqtl.errors import InputError

    try:
        vals = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        vals = []
    if not vals or vals[0] < 0:
        raise InputError(f"--candidates: expected comma-separated non-negative integers, found {text!r}")
    return vals


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dqtl.errors import InputError
    from dqtl.io.fs import Publication, check_bucket, is_url
    from dqtl.io.phenotypes import read_covariates, read_phenotype_bed
    from dqtl.preprocess.factor_discovery import choose_n_factors_by_discovery, plot_discovery_curve
    from dqtl.preprocess.factors import expression_pcs, gtex_n_factors, peer_factors

    out = args.output
    if not is_url(out) and Path(out).is_dir():
        raise InputError(f"OUTPUT: {out} is a directory; expected a file path")
    check_bucket(out)
    if not args.tol > 0:
        raise InputError(f"--tol must be > 0, got {args.tol}")
    if args.n_factors == "discovery" and not args.genotypes:
        raise InputError("--n-factors discovery needs --genotypes to map eQTLs with each candidate")
    if args.genotypes and args.n_factors != "discovery":
        raise InputError("--genotypes is only used with --n-factors discovery")
    candidates = _candidates(args.candidates) if args.n_factors == "discovery" else []
    phen = read_phenotype_bed(args.phenotypes)
    n = phen.sizes["samples"]
    cov = read_covariates(args.covariates, sample_ids=phen["sample_id"].values) if args.covariates else None
    if cov is not None:
        from dqtl.io.samples import index_samples

        index_samples(phen["sample_id"].values, cov["sample_id"].values, where="--covariates",
                      problem="have no covariates", fix="give covariates for every sample of PHENOTYPES")
    n_cov = 0 if cov is None else cov.sizes["covariates"]
    limit = n - n_cov - 2  # leave residual degrees of freedom
    if limit < 1:
        raise InputError(
            f"PHENOTYPES: {n} samples and {n_cov} covariates leave no room for hidden factors; "
            "add samples or drop covariates"
        )
    curve = None
    if args.n_factors == "auto":
        k = gtex_n_factors(n)
        if k > limit:
            log.warning("factors: the GTEx rule gives %d factors but %d samples with %d covariates "
                        "allow at most %d; using %d", k, n, n_cov, limit, limit)
            k = limit
        log.info("factors: %d samples -> %d factors (GTEx rule)", n, k)
    elif args.n_factors == "discovery":
        usable = [c for c in candidates if c <= limit]
        if not usable:
            raise InputError(f"--candidates: all of {candidates} exceed the {limit} factors that "
                             f"{n} samples allow")
        with genotypes_from(args.genotypes, fmt=args.genotype_format,
                            progress=not args.no_progress) as geno, \
                scheduler(args.scheduler_address, progress=not args.no_progress):
            curve = choose_n_factors_by_discovery(
                geno, phen, cov, usable, subset=args.discovery_genes, method=args.method,
                window=args.window, seed=args.seed, max_iter=args.max_iter, tol=args.tol,
            )
        k = curve.best
        log.info("factors: discovery curve %s -> %d factors",
                 ", ".join(f"{a}:{b}" for a, b in zip(curve.n_factors, curve.n_egenes, strict=True)), k)
        if k == 0:
            log.warning("factors: no hidden factor improved discovery; writing 1 factor")
            k = 1
    else:
        k = int(args.n_factors)
        if k > limit:
            raise InputError(
                f"--n-factors: {k} factors with {n_cov} covariates need more than {k + n_cov + 1} "
                f"samples, found {n}; use at most {limit}"
            )
    if args.method == "peer":
        res = peer_factors(phen, n_factors=k, covariates=cov, max_iter=args.max_iter,
                           tol=args.tol, seed=args.seed)
        log.info("factors: PEER %d factors in %d iterations (%s), ELBO %.6g", k, res.n_iter,
                 "converged" if res.converged else "not converged", res.elbo[-1])
    else:
        res = expression_pcs(phen, k)
        evr = res.explained_variance_ratio
        log.info("factors: %d expression PCs explain %.1f%% of the variance", k,
                 100 * float(evr.sum()) if evr is not None else float("nan"))
    # the factors and (discovery) the curve and its plot appear together, or none of them
    with Publication() as pub:
        res.to_frame().to_csv(pub.stage(out), sep="\t", index=False, float_format="%.10g")
        if curve is not None:
            curve.to_frame().to_csv(pub.stage(f"{out}.discovery.tsv"), sep="\t", index=False)
            ax = plot_discovery_curve(curve)
            ax.figure.savefig(pub.stage(f"{out}.discovery.png"), format="png", dpi=120,
                              bbox_inches="tight")
            from dqtl.plot import close_figure

            close_figure(ax.figure)
    log.info("factors: wrote %s", out)
    return 0
