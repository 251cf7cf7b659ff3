"""``dqtl example``: the main job on the bundled GEUVADIS example data."""

from __future__ import annotations

import argparse
import logging
from importlib import resources
from pathlib import Path

log = logging.getLogger("dqtl")


def example_data_dir() -> Path:
    """Folder of the bundled GEUVADIS example (90 CEU samples, chr1-2 SNPs, 804 genes)."""
    return Path(str(resources.files("dqtl.data") / "geuvadis"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "example",
        help="run the main job on the bundled GEUVADIS example data",
        description=(
            "Convert the bundled GEUVADIS PLINK 2 genotypes to a VCF Zarr store, run cis-eQTL "
            "nominal mapping with its covariates, and write the pairs and a plot to OUTDIR."
        ),
    )
    p.add_argument("outdir", metavar="OUTDIR")
    p.add_argument("--scheduler-address", metavar="ADDR", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run, run_log=lambda a: f"{a.outdir.rstrip('/')}/geuvadis.dqtl.example.log")


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from dqtl.cli.common import scheduler
    from dqtl.io.atomic import atomic_path
    from dqtl.io.convert import convert
    from dqtl.io.genotypes import open_genotypes
    from dqtl.io.phenotypes import read_covariates, read_phenotype_bed
    from dqtl.plot import plot_cis_distance
    from dqtl.workflows import run_cis_nominal

    data = example_data_dir()
    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    store = out / "geuvadis.vcz"
    if not store.exists():
        log.info("converting %s to %s", data / "geuvadis_ceu90_maf01.pgen", store)
        convert(data / "geuvadis_ceu90_maf01", store, format="pgen", show_progress=progress)
    geno = open_genotypes(store)
    phen = read_phenotype_bed(data / "expression.bed.gz")
    cov = read_covariates(data / "covariates.txt", sample_ids=phen["sample_id"].values)
    with scheduler(args.scheduler_address, progress=progress):
        summary = run_cis_nominal(geno, phen, cov, str(out / "geuvadis"))
    pairs = pd.concat([pd.read_parquet(f) for f in summary.files], ignore_index=True)
    top = pairs.loc[pairs.groupby("phenotype_id")["pval_nominal"].idxmin()].sort_values("pval_nominal")
    with atomic_path(out / "geuvadis.top_pairs.tsv") as tmp:
        top.to_csv(tmp, sep="\t", index=False)
    ax = plot_cis_distance(pairs)
    ax.set_title(f"GEUVADIS CEU (n={summary.n_samples}): {summary.n_pairs} cis pairs")
    with atomic_path(out / "geuvadis.cis_nominal.png") as tmp:
        ax.figure.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    log.info("example done: results in %s (top pairs: geuvadis.top_pairs.tsv, plot: geuvadis.cis_nominal.png)", out)
    return 0
