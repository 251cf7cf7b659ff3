"""``dqtl convert INPUT OUTPUT``: genotypes (VCF/BCF, PLINK 1, PLINK 2, BGEN) to a VCF Zarr store."""

from __future__ import annotations

import argparse
import logging
from typing import Any

log = logging.getLogger("dqtl.cli.convert")

_EPILOG = """\
INPUT is a genotype file or the prefix its files share:
  VCF/BCF  data.vcf.gz (+ .tbi/.csi index), data.bcf (+ .csi)
  PLINK 1  data.bed/.bim/.fam (A1, the counted allele, becomes ALT)
  PLINK 2  data.pgen/.pvar/.psam (dosages kept as call_dosage)
  BGEN     data.bgen (+ optional data.sample; dosage of the second allele)
Use --format when a prefix has several. OUTPUT is written atomically.
"""


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``convert`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "convert",
        help="convert VCF/BCF, PLINK 1/2 or BGEN genotypes to a VCF Zarr store",
        description="Convert genotypes to a VCF Zarr store (sgkit data model).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="INPUT", help="genotype file or shared prefix")
    p.add_argument("output", metavar="OUTPUT", help="Zarr store directory to write")
    p.add_argument(
        "--format", default=None, metavar="{vcf,plink,pgen,bgen}",
        help="input format (default: detected from the file names)",
    )
    p.add_argument(
        "--variants-chunk-size", type=int, default=10_000, metavar="N",
        help="variants per Zarr chunk (default: %(default)s)",
    )
    p.add_argument(
        "--samples-chunk-size", type=int, default=None, metavar="N",
        help="samples per Zarr chunk (default: 10000 or all samples)",
    )
    p.add_argument(
        "--zarr-format", type=int, default=None, choices=(2, 3),
        help="Zarr format of the store (default: 2)",
    )
    p.add_argument(
        "--workers", type=int, default=0, metavar="N",
        help="worker processes (default: 0, convert in this process)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing OUTPUT store")
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``dqtl convert`` with parsed arguments; returns the exit code."""
    import tempfile

    from dqtl.errors import InputError
    from dqtl.io.convert import convert
    from dqtl.io.fs import check_bucket, exists, is_url, localized_fileset, upload

    remote_out = is_url(args.output) and not args.output.startswith("file://")
    if remote_out:
        check_bucket(args.output)
        if exists(args.output) and not args.force:
            raise InputError(f"OUTPUT {args.output} exists; pass --force to replace it")
    with localized_fileset(args.input, what="INPUT") as source, \
            tempfile.TemporaryDirectory(prefix="dqtl-convert-") as work:
        target = f"{work}/store.vcz" if remote_out else args.output.removeprefix("file://")
        out = convert(
            source,
            target,
            format=args.format,
            variants_chunk_size=args.variants_chunk_size,
            samples_chunk_size=args.samples_chunk_size,
            worker_processes=args.workers,
            show_progress=not args.no_progress,
            zarr_format=args.zarr_format,
            force=args.force,
        )
        if remote_out:  # built locally, then uploaded whole
            upload(out, args.output)
            out = args.output
    log.info("genotype store written: %s", out)
    return 0
