"""Convert VCF/BCF, PLINK 1, PLINK 2 (pgen) and BGEN genotypes into VCF Zarr stores.

VCF/BCF and PLINK 1 go through bio2zarr (``vcf2zarr`` and ``plink2zarr``); PLINK 2 is read with
``pgenlib`` and BGEN with ``cbgen``, and both are written here, one variant chunk at a time, in the
same layout (sgkit / VCF Zarr naming, see :mod:`dqtl.io.genotypes`).

Allele convention: dosages count the ALT allele. For PLINK 1 the counted allele A1 (``.bim``
column 5) is ALT and A2 (column 6) is REF: bio2zarr 0.2.1's PLINK reader already does this
(``variant_allele = [A2, A1]``, a ``.bed`` code 00 = homozygous A1 becomes ``[1, 1]``), and on the
bundled GEUVADIS data the dosages from ``.bed``, ``.pgen`` and ``.vcf.gz`` are identical. For BGEN
the first allele is REF and the dosage counts the other alleles (the convention of bgen-reader,
sgkit and UK Biobank); for PLINK 2 the dosage counts the non-REF alleles.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import xarray as xr

from dqtl.errors import InputError
from dqtl.io.atomic import atomic_dir
from dqtl.io.genotype_inputs import (
    DEFAULT_SAMPLES_CHUNK,
    FORMATS,
    GenotypeInput,
    check_plink1,
    check_vcf,
    resolve_input,
)
from dqtl.io.genotypes import check_variant_order, is_zarr_store, open_genotypes
from dqtl.io.native_readers import BgenSource, PgenSource

__all__ = ["FORMATS", "GenotypeInput", "resolve_input", "convert", "load_genotypes",
           "source_signature"]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# the Zarr writer for dqtl's own sources
# --------------------------------------------------------------------------------------------


def _compressor(zarr_format: int, *, bitshuffle: bool) -> Any:
    import numcodecs
    from zarr.codecs import BloscCodec, BloscShuffle

    if zarr_format == 2:
        shuffle = numcodecs.Blosc.BITSHUFFLE if bitshuffle else numcodecs.Blosc.SHUFFLE
        return numcodecs.Blosc(cname="zstd", clevel=7, shuffle=shuffle)
    return BloscCodec(
        cname="zstd",
        clevel=7,
        shuffle=BloscShuffle.bitshuffle if bitshuffle else BloscShuffle.shuffle,
    )


def _create_array(
    group: Any, name: str, dims: list[str], shape: tuple[int, ...], chunks: tuple[int, ...],
    dtype: Any, zarr_format: int, description: str,
) -> Any:
    import numcodecs

    kwargs: dict[str, Any] = {}
    is_str = dtype == "T"
    if zarr_format == 3:
        kwargs["dimension_names"] = dims
    elif is_str:
        kwargs["filters"] = [numcodecs.VLenUTF8()]
    bitshuffle = np.dtype(dtype).itemsize == 1 if not is_str else False
    arr = group.create_array(
        name, shape=shape, chunks=chunks, dtype=dtype, fill_value=None,
        compressors=[_compressor(zarr_format, bitshuffle=bitshuffle)], **kwargs,
    )
    attrs: dict[str, Any] = {"description": description}
    if zarr_format == 2:
        attrs["_ARRAY_DIMENSIONS"] = dims
    arr.attrs.update(attrs)
    return arr


def _open_source(gi: GenotypeInput, metafile: str) -> Any:
    return PgenSource(gi) if gi.format == "pgen" else BgenSource(gi, Path(metafile))


_worker_source: Any = None  # set in each worker process by _init_worker


def _init_worker(gi: GenotypeInput, metafile: str) -> None:
    global _worker_source
    _worker_source = _open_source(gi, metafile)


def _write_chunk_in_worker(*args: Any) -> None:
    _write_chunk(_worker_source, *args)


def _write_chunk(
    source: Any, store: str, v0: int, v1: int, max_alleles: int, with_dosage: bool
) -> None:
    """Read variants [v0, v1) and write them into the store."""
    import zarr

    block = source.read_block(v0, v1, max_alleles, with_dosage)
    values = {
        "variant_id": block.variant_id,
        "variant_id_mask": np.isin(block.variant_id, ["", "."]),
        "variant_allele": block.variant_allele,
        "call_genotype": block.call_genotype,
        "call_genotype_mask": block.call_genotype < 0,
        "call_genotype_phased": block.call_genotype_phased,
    }
    if with_dosage and block.call_dosage is not None:
        values["call_dosage"] = block.call_dosage
    for name, value in values.items():
        zarr.open_array(store, path=name, mode="r+")[v0:v1] = value


def _write_store(
    gi: GenotypeInput, store: Path, workdir: Path, *, variants_chunk_size: int,
    samples_chunk_size: int | None, zarr_format: int, worker_processes: int, show_progress: bool,
) -> None:
    """Write a VCF Zarr store from a pgen or bgen input, one variant chunk per task."""

    metafile = str(workdir / "bgen.metafile")
    source = _open_source(gi, metafile)
    try:
        _write_from(source, gi, metafile, store, variants_chunk_size=variants_chunk_size,
                    samples_chunk_size=samples_chunk_size, zarr_format=zarr_format,
                    worker_processes=worker_processes, show_progress=show_progress)
    finally:
        source.close()


def _write_from(
    source: Any, gi: GenotypeInput, metafile: str, store: Path, *, variants_chunk_size: int,
    samples_chunk_size: int | None, zarr_format: int, worker_processes: int, show_progress: bool,
) -> None:
    import zarr
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    scan = source.scan()
    m, n = len(scan.variant_position), len(scan.sample_id)
    if m == 0 or n == 0:
        raise InputError(f"{gi.format} input {str(gi.path)!r} has {m} variants and {n} samples")
    check_variant_order(
        scan.variant_contig, scan.variant_position, np.array(scan.contig_id), source=str(gi.path)
    )
    vc = min(variants_chunk_size, m)
    sc = min(samples_chunk_size or DEFAULT_SAMPLES_CHUNK, n)
    buffer_bytes = vc * n * 12
    try:
        import psutil

        if buffer_bytes > psutil.virtual_memory().available // 2:
            log.warning(
                "converting %s buffers %.1f GiB per variant chunk (%d variants x %d samples); "
                "lower variants_chunk_size if memory runs out",
                gi.path, buffer_bytes / 2**30, vc, n,
            )
    except ImportError:  # pragma: no cover - psutil is a dependency
        pass

    from dqtl import __version__

    root = zarr.open_group(store, mode="w-", zarr_format=cast(Literal[2, 3], zarr_format))
    root.attrs.update({"vcf_zarr_version": "0.5", "source": f"dqtl-{__version__}"})
    fmt = zarr_format
    contig_dtype = np.int8 if len(scan.contig_id) < 128 else np.int32
    pos_dtype = np.int32 if scan.variant_position.max() < 2**31 else np.int64
    a = _create_array(root, "sample_id", ["samples"], (n,), (sc,), "T", fmt, "Sample IDs")
    a[:] = scan.sample_id.astype(object)
    k = len(scan.contig_id)
    a = _create_array(root, "contig_id", ["contigs"], (k,), (k,), "T", fmt, "Contig names")
    a[:] = np.array(scan.contig_id, dtype=object)
    a = _create_array(
        root, "variant_contig", ["variants"], (m,), (vc,), contig_dtype, fmt,
        "Contig/chromosome index for each variant",
    )
    a[:] = scan.variant_contig.astype(contig_dtype)
    a = _create_array(
        root, "variant_position", ["variants"], (m,), (vc,), pos_dtype, fmt,
        "The reference position (1-based)",
    )
    a[:] = scan.variant_position.astype(pos_dtype)
    _create_array(root, "variant_id", ["variants"], (m,), (vc,), "T", fmt, "Variant IDs")
    _create_array(root, "variant_id_mask", ["variants"], (m,), (vc,), bool, fmt, "ID is missing")
    _create_array(
        root, "variant_allele", ["variants", "alleles"], (m, scan.max_alleles),
        (vc, scan.max_alleles), "T", fmt, "List of the reference and alternate alleles",
    )
    gdims, gshape, gchunks = ["variants", "samples", "ploidy"], (m, n, 2), (vc, sc, 2)
    _create_array(root, "call_genotype", gdims, gshape, gchunks, np.int8, fmt, "Hard calls")
    _create_array(root, "call_genotype_mask", gdims, gshape, gchunks, bool, fmt, "Call < 0")
    _create_array(
        root, "call_genotype_phased", gdims[:2], (m, n), (vc, sc), bool, fmt, "Call is phased"
    )
    if not scan.has_dosage:
        log.info("%s has no dosages beyond its hard calls: call_dosage not written", gi.path)
    else:
        _create_array(
            root, "call_dosage", gdims[:2], (m, n), (vc, sc), np.float32, fmt,
            "Expected ALT (non-REF) allele count; NaN = missing",
        )

    starts = list(range(0, m, vc))
    args = [(str(store), s, min(s + vc, m), scan.max_alleles, scan.has_dosage) for s in starts]
    from rich.console import Console

    from dqtl.compute import interactive

    progress = Progress(  # on stderr, and only on a terminal (a log line otherwise)
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeRemainingColumn(), disable=not (show_progress and interactive()), transient=False,
        console=Console(stderr=True),
    )
    with progress:
        task = progress.add_task(f"{gi.format}2zarr", total=m)
        if worker_processes > 0:
            with concurrent.futures.ProcessPoolExecutor(
                worker_processes, initializer=_init_worker, initargs=(gi, metafile)
            ) as pool:
                futures = {pool.submit(_write_chunk_in_worker, *a): a for a in args}
                for fut in concurrent.futures.as_completed(futures):
                    fut.result()
                    progress.advance(task, futures[fut][2] - futures[fut][1])
        else:
            for a in args:
                _write_chunk(source, *a)
                progress.advance(task, a[2] - a[1])


# --------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _workdir(output: Path) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.work.", dir=output.parent) as tmp:
        yield Path(tmp)


def _check_output(output: Path, force: bool) -> None:
    if not output.exists() and not output.is_symlink():
        return
    if not force:
        raise InputError(
            f"output {str(output)!r} already exists: choose another path, or replace it with "
            "--force (force=True in Python)"
        )
    if output.is_dir() and any(output.iterdir()) and not is_zarr_store(output):
        raise InputError(
            f"output {str(output)!r} is a non-empty directory that is not a Zarr store; "
            "refusing to replace it even with force: choose another path"
        )


def _positive(name: str, value: Any, *, allow_none: bool = False, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InputError(f"{name} must be an integer >= {low}, got {value!r}")


def convert(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    format: str | None = None,
    variants_chunk_size: int = 10_000,
    samples_chunk_size: int | None = None,
    worker_processes: int = 0,
    show_progress: bool = True,
    zarr_format: int | None = None,
    force: bool = False,
) -> Path:
    """Convert VCF/BCF, PLINK 1, PLINK 2 or BGEN genotypes into a VCF Zarr store.

    Parameters
    ----------
    input : str or path-like
        A genotype file or the prefix its files share (see :func:`resolve_input`).
    output : str or path-like
        Directory of the Zarr store to write. It appears atomically (written beside it, then
        renamed) and is never left half-written.
    format : {"vcf", "plink", "pgen", "bgen"}, optional
        Input format; detected from the file names when unset.
    variants_chunk_size : int, default 10_000
        Variants per Zarr chunk.
    samples_chunk_size : int, optional
        Samples per Zarr chunk (default: 10,000, or all samples when fewer).
    worker_processes : int, default 0
        Worker processes (0 = convert in this process). With more than 0 the calling script
        needs an ``if __name__ == "__main__":`` guard.
    show_progress : bool, default True
        Show a progress bar on stderr.
    zarr_format : {2, 3}, optional
        Zarr format of the store (default 2, bio2zarr's default).
    force : bool, default False
        Replace an existing output store.

    Returns
    -------
    pathlib.Path
        The store written, with variables ``call_genotype`` (variants, samples, ploidy) int8,
        ``call_genotype_mask``, ``call_genotype_phased``, ``variant_contig``, ``contig_id``,
        ``variant_position``, ``variant_id``, ``variant_allele`` (REF first), ``sample_id`` and,
        where the input has dosages (PLINK 2 dosages, BGEN probabilities),
        ``call_dosage`` (variants, samples) float32 ALT dosage.

    Raises
    ------
    InputError
        Missing, malformed, unsorted or ambiguous input, bad options, or an existing output.

    Examples
    --------
    >>> from importlib.resources import files
    >>> import tempfile, pathlib
    >>> prefix = files("dqtl.data") / "geuvadis" / "geuvadis_ceu90_maf01"
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "geuvadis.vcz"
    >>> convert(str(prefix), out, format="pgen", show_progress=False).name
    'geuvadis.vcz'
    """
    gi = resolve_input(input, format=format)
    output = Path(output).expanduser()
    _positive("variants_chunk_size", variants_chunk_size)
    _positive("samples_chunk_size", samples_chunk_size, allow_none=True)
    _positive("worker_processes", worker_processes, allow_zero=True)
    if zarr_format not in (None, 2, 3):
        raise InputError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    fmt = zarr_format or 2
    _check_output(output, force)
    if gi.format == "plink":
        check_plink1(gi)
    elif gi.format == "vcf":
        check_vcf(gi)
    t0 = time.perf_counter()
    log.info("converting %s (%s) to %s", gi.path, gi.format, output)
    from dqtl.compute import interactive

    show_progress = show_progress and interactive()  # bio2zarr's bars only on a terminal
    with atomic_dir(output) as tmp, _workdir(output) as work:
        tmp.rmdir()  # the writers create the store directory themselves
        try:
            if gi.format == "vcf":
                from bio2zarr import vcf as b2z_vcf

                b2z_vcf.convert(
                    [str(gi.path)], str(tmp), variants_chunk_size=variants_chunk_size,
                    samples_chunk_size=samples_chunk_size, worker_processes=worker_processes,
                    show_progress=show_progress, icf_path=str(work / "icf"), zarr_format=fmt,
                )
            elif gi.format == "plink":
                from bio2zarr import plink as b2z_plink

                b2z_plink.convert(
                    str(gi.path)[: -len(".bed")], str(tmp),
                    variants_chunk_size=variants_chunk_size,
                    samples_chunk_size=samples_chunk_size, worker_processes=worker_processes,
                    show_progress=show_progress, zarr_format=fmt,
                )
            else:
                _write_store(
                    gi, tmp, work, variants_chunk_size=variants_chunk_size,
                    samples_chunk_size=samples_chunk_size, zarr_format=fmt,
                    worker_processes=worker_processes, show_progress=show_progress,
                )
        except InputError:
            raise
        except (ImportError, MemoryError):
            raise
        except Exception as exc:
            msg = " ".join(str(exc).split())
            if not msg:  # a bare exception from a reader: the file is not what its header says
                msg = (f"the reader failed ({type(exc).__name__}) on content it could not decode; "
                       "the file is damaged or not what its name says: check it (e.g. "
                       "'bcftools view FILE > /dev/null', 'plink2 --validate')")
            raise InputError(
                f"could not convert {gi.format} input {str(gi.path)!r}: {msg}"
            ) from exc
        _stamp(tmp, gi)
    log.info("wrote %s in %.1f s", output, time.perf_counter() - t0)
    return output


def source_signature(gi: GenotypeInput) -> dict[str, Any]:
    """Name, size and modification time of the input files (to recognise a cached store)."""
    paths = [gi.path, *(p for p in gi.files.values() if p is not None)]
    return {
        "format": gi.format,
        "files": [
            {"path": str(p.resolve()), "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
            for p in paths
        ],
    }


def _stamp(store: Path, gi: GenotypeInput) -> None:
    import zarr

    root = zarr.open_group(store, mode="r+")
    root.attrs["dqtl_source"] = source_signature(gi)
    from dqtl.io.integrity import record_stored_chunks

    record_stored_chunks(store)


def load_genotypes(
    source: str | os.PathLike[str] | xr.Dataset,
    *,
    format: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    chunks: int | None = None,
    show_progress: bool = False,
) -> xr.Dataset:
    """Open genotypes from a store, a Dataset, or VCF/PLINK/PGEN/BGEN files (converted first).

    Parameters
    ----------
    source : str, path-like or xarray.Dataset
        A Zarr store or Dataset (opened with :func:`open_genotypes`), or a genotype file or
        prefix (converted with :func:`dqtl.io.convert.convert`).
    format : {"vcf", "plink", "pgen", "bgen"}, optional
        Input format of a file or prefix that several formats share.
    cache_dir : str or path-like, optional
        Where converted stores live (default: a temporary directory removed when the process
        exits). A store converted earlier from the same, unchanged files is reused.
    chunks : int, optional
        Variants per dask chunk.
    show_progress : bool, default False
        Show conversion progress.

    Returns
    -------
    xarray.Dataset
        As :func:`open_genotypes`.
    """
    if isinstance(source, xr.Dataset):
        return open_genotypes(source, chunks=chunks)
    path = os.fspath(source)
    if "://" in path or is_zarr_store(path):
        return open_genotypes(path, chunks=chunks)
    gi = resolve_input(path, format=format)
    if cache_dir is None:  # a store for this process only: removed when it exits
        cache = Path(tempfile.mkdtemp(prefix="dqtl-geno-"))
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
    else:
        cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    stem = gi.path.name
    for suffix in (".gz", ".bgz", ".vcf", ".bcf", ".bed", ".pgen", ".bgen"):
        stem = stem.removesuffix(suffix)
    store = cache / f"{stem}.{gi.format}.vcz"
    if is_zarr_store(store):
        import zarr

        try:
            stamp = zarr.open_group(str(store), mode="r").attrs.get("dqtl_source")
        except Exception:  # a damaged cache entry is simply rebuilt
            stamp = None
        if stamp == source_signature(gi):
            log.info("using cached genotype store %s", store)
            return open_genotypes(store, chunks=chunks)
    convert(gi.path, store, format=gi.format, force=True, show_progress=show_progress)
    return open_genotypes(store, chunks=chunks)
