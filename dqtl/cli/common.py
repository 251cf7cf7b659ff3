"""Helpers shared by sub-commands: input loading, scheduler selection, argument types."""

from __future__ import annotations

import argparse
import contextlib
import logging
import tempfile
from collections.abc import Iterator
from glob import escape as glob_escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import xarray as xr


log = logging.getLogger("dqtl")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def non_negative_int(text: str) -> int:
    try:
        v = int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return v


def add_scheduler_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scheduler-address", metavar="ADDR", default=None,
        help="run on this dask.distributed scheduler (e.g. tcp://host:8786); default: local threads",
    )
    p.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def add_study_args(p: argparse.ArgumentParser, *, window: bool = True, maf: bool = True) -> None:
    """The options every study plan takes: covariates, the cis window, MAF, sample intersection
    (``window``/``maf`` False: commands without their own cis window or MAF filter)."""
    p.add_argument("--covariates", metavar="FILE", default=None,
                   help="covariates (tensorQTL layout or samples x covariates)")
    p.add_argument("--categorical-covariates", metavar="NAME[,NAME]", default="",
                   help="covariates to one-hot encode although their values are numbers (e.g. a "
                        "batch coded 1, 2, 3); columns with no numeric value are categorical anyway")
    if window:
        p.add_argument("--window", type=non_negative_int, default=1_000_000,
                       help="cis window half-width in bp (default 1000000)")
    if maf:
        p.add_argument("--maf-threshold", type=float, default=0.0,
                       help="skip variants with minor allele frequency below this (default 0)")
    p.add_argument("--allow-sample-intersection", action="store_true",
                   help="analyse the samples shared by all inputs instead of failing on a mismatch")


def add_genotype_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--multiallelic", choices=["error", "drop", "split"], default="error",
        help="variants with more than one ALT allele: error (default), drop them (counted in "
             "the log) or split them into one biallelic variant per ALT allele (as 'bcftools "
             "norm -m -any'; IDs become ID_ALT)",
    )
    p.add_argument(
        "--genotype-cache", metavar="DIR", default=None,
        help="where VCF/PLINK/BGEN input converted on the fly is kept and reused by later runs on "
             "the same unchanged files (default: $DQTL_GENOTYPE_CACHE or ~/.cache/dqtl/genotypes; "
             "'none': a temporary store per run)",
    )
    p.add_argument(
        "--genotype-format", choices=["vcf", "plink", "pgen", "bgen"], default=None,
        help="format of GENOTYPES when it is not a VCF Zarr store and its prefix matches several",
    )
    p.add_argument(
        "--variants-chunk-size", type=positive_int, default=None,
        help="variants per task (default: the store's chunking)",
    )


@contextlib.contextmanager
def scheduler(address: str | None, *, progress: bool = True) -> Iterator[Any]:
    """Run the block on a distributed Client connected to ``address`` (it becomes the session's
    default client, which :func:`dqtl.compute.compute` uses), or on local threads; with
    ``progress`` the computes inside show their progress. Yields the client or None.
    """
    from dqtl.compute import show_progress

    with show_progress(progress):
        if not address:
            import dask
            import dask.threaded

            # dask's threads, named by their function: with no scheduler set (or one named by a
            # string) every compute imports distributed to look for a client (0.13 s)
            with dask.config.set(scheduler=dask.threaded.get):
                yield None
            return
        from distributed import Client

        try:
            client = Client(address, timeout="30s")
        except OSError as exc:
            raise OSError(f"cannot connect to the dask scheduler at {address}: {exc}") from None
        link = client.dashboard_link if client.scheduler_info().get("services", {}).get("dashboard") \
            else None
        log.info("connected to the dask scheduler at %s (%d workers)%s", address,
                 len(client.scheduler_info().get("workers", {})),
                 f"; dashboard: {link}" if link else "; no dashboard (start the scheduler with "
                 "bokeh installed: pip install 'daskqtl[distributed]')")
        try:
            yield client
        finally:
            client.close()


@contextlib.contextmanager
def genotypes_from(path: str, *, fmt: str | None, progress: bool) -> Iterator[xr.Dataset]:
    """Open a VCF Zarr store (local path or URL), or convert VCF/PLINK/PGEN/BGEN into a
    temporary store first."""
    from dqtl.io.convert import load_genotypes
    from dqtl.io.fs import exists, is_url

    if is_url(path) and not path.startswith("file://"):
        if not exists(path):  # a missing bucket or credentials raise their own message
            raise FileNotFoundError(f"genotypes {path} do not exist (expected a VCF Zarr store)")
        yield load_genotypes(path, format=fmt, show_progress=progress)
        return
    if path.startswith("file://"):
        path = path[len("file://"):]
    p = Path(path)
    if not p.exists() and not any(p.parent.glob(glob_escape(p.name) + ".*")):
        raise FileNotFoundError(f"genotypes {path} do not exist (expected a VCF Zarr store, VCF, PLINK 1/2 or BGEN)")
    from dqtl.io.genotypes import is_zarr_store

    if is_zarr_store(p):
        yield load_genotypes(path, format=fmt, show_progress=progress)
        return
    cache = genotype_cache_dir()
    if cache is None:
        with tempfile.TemporaryDirectory(prefix="dqtl-genotypes-") as tmp:
            yield load_genotypes(path, format=fmt, cache_dir=tmp, show_progress=progress)
        return
    import hashlib

    key = hashlib.sha1(str(p.expanduser().resolve()).encode()).hexdigest()[:16]
    where = cache / key
    log.info("genotype input %s: converted store cached in %s (reused while the input is unchanged)",
             path, where)
    yield load_genotypes(path, format=fmt, cache_dir=where, show_progress=progress)


def genotype_cache_dir() -> Path | None:
    """The folder of converted genotype stores (``--genotype-cache``, ``$DQTL_GENOTYPE_CACHE``,
    ``~/.cache/dqtl/genotypes``), or None for a temporary store per run (``none``)."""
    import os

    import dask

    value = dask.config.get("dqtl.genotype_cache", None) or os.environ.get("DQTL_GENOTYPE_CACHE")
    if value is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "dqtl" / "genotypes"
    if str(value).lower() == "none":
        return None
    return Path(value).expanduser()


def read_study_covariates(args: argparse.Namespace, phenotypes: Any) -> Any:
    """The run's covariates (``--covariates``, ``--categorical-covariates``) or None."""
    if not args.covariates:
        return None
    from dqtl.io.phenotypes import read_covariates

    names = [n for n in str(getattr(args, "categorical_covariates", "") or "").split(",") if n]
    return read_covariates(args.covariates, sample_ids=phenotypes["sample_id"].values, categorical=names)
