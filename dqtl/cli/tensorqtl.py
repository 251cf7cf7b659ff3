"""``dqtl tensorqtl``: tensorQTL's command line, run by dqtl (a tensorQTL user switches in one line).

``python -m tensorqtl GENOTYPES PHENOTYPES PREFIX --mode cis ...`` becomes
``dqtl tensorqtl GENOTYPES PHENOTYPES PREFIX --mode cis ...``: the same options with tensorQTL's
spellings and defaults (mode ``cis``, 10,000 permutations, ``--seed`` unset: a seed is drawn and
logged, genotype prefixes resolved preferring pgen, then PLINK 1 bed, ``-o/--output_dir``), and
tensorQTL's output file names and columns (dqtl's extra columns after tensorQTL's), including
``PREFIX.cis_qtl.signif_pairs.parquet`` and the log ``PREFIX.tensorQTL.<mode>.log``. The work is
done by the native sub-commands (``dqtl cis``, ``dqtl trans``); options dqtl lacks are one clear
error line; GPU memory options (``--batch_size``, ``--chunk_size``) are accepted and not needed.
"""

from __future__ import annotations

import argparse
import logging
import os

from dqtl.cli.common import add_scheduler_args

log = logging.getLogger("dqtl")

MODES = ["cis", "cis_nominal", "cis_independent", "cis_susie", "trans", "trans_susie"]

#: tensorQTL options dqtl does not implement, and what to do instead
UNSUPPORTED = {
    "paired_covariate": "a phenotype-specific covariate is not supported; add it to --covariates "
                        "per phenotype run, or drop it",
    "logp": "p-values are written as p (float64 keeps p down to 1e-308); drop --logp",
    "return_dense": "dense trans output is not written; use the sparse output (drop --return_dense)",
    "return_r2": "r2 is not written; it is t^2 / (t^2 + dof) from pval and the dof",
    "susie_loci": "trans_susie is not supported; fine-map cis with 'dqtl finemap'",
    "disable_beta_approx": "the beta approximation is always computed (pval_beta); pval_perm is "
                           "beside it: drop --disable_beta_approx",
    "best_only": "every pair is written; keep the cis_qtl_top_assoc.txt.gz for the leads",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tensorqtl",
        help="tensorQTL's command line and outputs, run by dqtl (drop-in)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("genotype_path", help="genotypes: PLINK 2/1 prefix (pgen preferred), VCF, BGEN "
                                         "or a VCF Zarr store")
    p.add_argument("phenotypes", help="phenotype BED (.bed, .bed.gz, .bed.parquet)")
    p.add_argument("prefix", help="prefix of the output file names")
    p.add_argument("--mode", default="cis", choices=MODES, help="default: cis (permutations)")
    p.add_argument("--covariates", default=None)
    p.add_argument("--paired_covariate", default=None)
    p.add_argument("--permutations", type=int, default=10000)
    p.add_argument("--interaction", default=None)
    p.add_argument("--cis_output", default=None)
    p.add_argument("--phenotype_groups", default=None)
    p.add_argument("--window", type=int, default=1000000)
    p.add_argument("--pval_threshold", type=float, default=1e-5)
    p.add_argument("--logp", action="store_true")
    p.add_argument("--maf_threshold", type=float, default=0.0)
    p.add_argument("--maf_threshold_interaction", type=float, default=0.05)
    p.add_argument("--dosages", action="store_true")
    p.add_argument("--return_dense", action="store_true")
    p.add_argument("--return_r2", action="store_true")
    p.add_argument("--best_only", action="store_true")
    p.add_argument("--output_text", action="store_true")
    p.add_argument("--batch_size", type=int, default=20000)
    p.add_argument("--chunk_size", default=None)
    p.add_argument("--susie_loci", default=None)
    p.add_argument("--disable_beta_approx", action="store_true")
    p.add_argument("--warn_monomorphic", action="store_true")
    p.add_argument("--max_effects", type=int, default=10)
    p.add_argument("--fdr", type=float, default=0.05)
    p.add_argument("--qvalue_lambda", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("-o", "--output_dir", default=".")
    add_scheduler_args(p)
    # a figure process (dqtl.figures) for the permutation mode (its figures are drawn while the
    # significant pairs and tables are made) and the nominal mode (its QQ plot: the process
    # hides matplotlib's import; numpy only, no pandas, for that plot)
    p.set_defaults(func=run, figures=lambda a: a.mode == "cis" or (a.mode == "cis_nominal"
                                                                   and not a.interaction),
                   figure_imports=lambda a: () if a.mode == "cis_nominal" else ("pandas",),
                   run_log=lambda a: os.path.join(
        a.output_dir, f"{a.prefix}.tensorQTL.{a.mode}.log"))


def resolve_genotypes(path: str) -> tuple[str, str | None]:
    """tensorQTL's order for a prefix: pgen, then PLINK 1 bed; anything else as dqtl resolves it."""
    if os.path.exists(f"{path}.pgen"):
        return path, "pgen"
    if os.path.exists(f"{path}.bed"):
        return path, "plink"
    return path, None


def native_argv(args: argparse.Namespace, seed: int) -> list[str]:
    """The native ``dqtl cis``/``dqtl trans`` command line of a tensorQTL command line."""
    from dqtl.errors import InputError

    given = [k for k in UNSUPPORTED if getattr(args, k)]
    if given:
        k = given[0]
        raise InputError(f"tensorQTL option --{k}: {UNSUPPORTED[k]}")
    if args.mode in ("cis_susie", "trans_susie"):
        raise InputError(f"--mode {args.mode}: run 'dqtl finemap GENOTYPES PHENOTYPES PREFIX "
                         "--covariates FILE' (SuSiE per eGene, tensorQTL's susie.map semantics)")
    geno, fmt = resolve_genotypes(args.genotype_path)
    out = os.path.join(args.output_dir, args.prefix)
    common = ["--maf-threshold", repr(args.maf_threshold)]
    if args.covariates:
        common += ["--covariates", args.covariates]
    if fmt:
        common += ["--genotype-format", fmt]
    if args.scheduler_address:
        common += ["--scheduler-address", args.scheduler_address]
    if args.no_progress:
        common.append("--no-progress")
    if args.mode == "trans":
        if args.phenotype_groups or args.cis_output:
            raise InputError("--mode trans: --phenotype_groups and --cis_output apply to cis modes")
        argv = ["trans", geno, args.phenotypes, out, "--pval-threshold", repr(args.pval_threshold),
                *common]
        if args.interaction:
            argv += ["--interaction", args.interaction]
        return argv
    cis = ["cis", geno, args.phenotypes, out, "--window", str(args.window), *common]
    perm = ["--permutations", str(args.permutations), "--seed", str(seed), "--fdr", repr(args.fdr)]
    if args.qvalue_lambda is not None:
        perm += ["--qvalue-lambda", repr(args.qvalue_lambda)]
    if args.phenotype_groups and args.mode != "cis_nominal":
        perm += ["--phenotype-groups", args.phenotype_groups]
    if args.mode == "cis":
        if args.interaction:
            raise InputError("--mode cis with --interaction: tensorQTL maps interactions in "
                             "--mode cis_nominal; use that mode")
        return [*cis, "--mode", "permute", *perm]
    if args.mode == "cis_nominal":
        argv = [*cis, "--mode", "nominal"]
        if args.interaction:
            argv += ["--interaction", args.interaction, "--maf-threshold-interaction",
                     repr(args.maf_threshold_interaction)]
        return argv
    if not args.cis_output or not os.path.exists(args.cis_output):
        raise InputError("--mode cis_independent needs --cis_output: the cis_qtl.txt.gz of a "
                         "--mode cis run (with q-values)")
    return [*cis, "--mode", "independent", "--cis-results", args.cis_output, *perm]


def _check_cis_output(path: str) -> None:
    import pandas as pd

    from dqtl.errors import InputError

    if not os.path.exists(path):
        raise InputError(f"--cis_output {path} does not exist; give the cis_qtl.txt.gz of a "
                         "--mode cis run")
    try:
        head = pd.read_csv(path, sep="\t", nrows=2)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--cis_output {path}: not a tab-separated table ({exc})") from None
    missing = {"qval", "pval_nominal_threshold", "pval_nominal", "pval_beta"} - set(head.columns)
    if missing:
        raise InputError(f"--cis_output {path}: no {', '.join(sorted(missing))} columns; give the "
                         "cis_qtl.txt.gz of a --mode cis run with q-values")


def significant_pairs(cis_output: str, pairs_prefix: str, fdr: float, groups: str | None) -> object:
    """tensorQTL's ``post.get_significant_pairs``: pairs of FDR-significant phenotypes (or groups)
    with ``pval_nominal < pval_nominal_threshold``, with ``min_pval_nominal`` and ``pval_beta``."""
    import glob

    import numpy as np
    import pandas as pd

    from dqtl.errors import InputError

    res = pd.read_csv(cis_output, sep="\t", index_col=0)
    if "qval" not in res or "pval_nominal_threshold" not in res:
        raise InputError(f"--cis_output {cis_output}: no qval / pval_nominal_threshold columns; "
                         "give the cis_qtl.txt.gz of a --mode cis run with q-values")
    cols = ["pval_nominal_threshold", "pval_nominal", "pval_beta"]
    group_s = None
    if groups:
        group_s = pd.read_csv(groups, sep="\t", header=None, index_col=0).iloc[:, 0].astype(str)
        df = res.loc[res["qval"] <= fdr, [*cols, "group_id"]].set_index("group_id")
    else:
        df = res.loc[res["qval"] <= fdr, cols].copy()
    df = df.rename(columns={"pval_nominal": "min_pval_nominal"})
    thr = df["pval_nominal_threshold"].to_dict()
    out = []
    for f in sorted(glob.glob(glob.escape(pairs_prefix) + ".cis_qtl_pairs.*.parquet")):
        nom = pd.read_parquet(f)
        key = "phenotype_id"
        if group_s is not None:
            nom.insert(1, "group_id", nom["phenotype_id"].map(group_s))
            key = "group_id"
        nom = nom[nom[key].isin(set(df.index))]
        limit = np.array([thr.get(k, np.nan) for k in nom[key].astype(str)], dtype=np.float64)
        out.append(nom[nom["pval_nominal"].to_numpy() < limit])
    sig = pd.concat(out, axis=0) if out else pd.DataFrame()
    return sig.merge(df, left_on=key if out else None, right_index=True).reset_index(drop=True) \
        if out else sig


def run(args: argparse.Namespace) -> int:
    import secrets

    from dqtl.cli.main import build_parser

    if args.mode == "cis_nominal" and args.cis_output:
        _check_cis_output(args.cis_output)  # before the scan: a bad file must not leave pairs
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    log.info("dqtl tensorqtl: tensorQTL --mode %s run by dqtl", args.mode)
    if args.seed is None and args.mode in ("cis", "cis_independent"):
        log.info("--seed not given: permutations use the drawn seed %d (pass --seed %d to repeat "
                 "this run)", seed, seed)
    if args.batch_size != 20000 or args.chunk_size is not None:
        log.info("--batch_size/--chunk_size are GPU/memory settings of tensorQTL; dqtl streams the "
                 "genotypes in blocks and does not need them")
    argv = native_argv(args, seed)
    log.info("native command: dqtl %s", " ".join(argv))
    native = build_parser().parse_args(argv)
    rc = int(native.func(native) or 0)
    out = os.path.join(args.output_dir, args.prefix)
    if rc == 0 and args.mode == "cis_nominal" and args.cis_output:
        from dqtl.io.fs import Publication

        sig = significant_pairs(args.cis_output, out, args.fdr, args.phenotype_groups)
        with Publication() as pub:
            sig.to_parquet(pub.stage(f"{out}.cis_qtl.signif_pairs.parquet"))  # type: ignore[attr-defined]
        log.info("%d significant pairs", len(sig))  # type: ignore[arg-type]
    if rc == 0 and args.mode == "trans" and args.output_text:
        import pandas as pd

        from dqtl.io.fs import Publication

        pq = f"{out}.trans_qtl_pairs.parquet"
        with Publication() as pub:
            pd.read_parquet(pq).to_csv(pub.stage(f"{out}.trans_qtl_pairs.txt.gz"), sep="\t",
                                       index=False, float_format="%.6g", compression="gzip")
        os.remove(pq)  # written by this run a moment ago; tensorQTL writes only the text file
    return rc
