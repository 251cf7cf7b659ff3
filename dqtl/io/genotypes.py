"""Open VCF Zarr / sgkit genotype stores as lazy xarray Datasets in dqtl's data model.

The Dataset returned by :func:`open_genotypes` has dims ``variants``, ``samples``, ``ploidy``,
``alleles``, ``contigs`` and the variables

- ``call_genotype`` (variants, samples, ploidy) int, -1 = missing, -2 = not present (dask),
- ``call_dosage`` (variants, samples) float32 ALT dosage, NaN = missing (optional, dask),
- ``variant_allele`` (variants, alleles) str, REF first; ``variant_id`` (variants,) str (dask;
  a variant without an ID, ``.``, is named ``CONTIG:POSITION:REF:ALT``: :mod:`dqtl.io.variant_ids`),
- ``variant_contig`` (variants,) int index into ``contig_id`` (contigs,) str,
  ``variant_position`` (variants,) int64 (1-based) and ``sample_id`` (samples,) str, in memory
  (strings are numpy object arrays of Python ``str``, as in sgkit).

Variants are sorted by contig (each contig one contiguous block) and position.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import xarray as xr

from dqtl.errors import InputError
from dqtl.io.variant_ids import MISSING_IDS, alt_counts, ids_at, missing_mask, name_missing_ids
from dqtl.variables import GENOTYPE_OPTIONAL, GENOTYPE_REQUIRED, validate

__all__ = [
    "open_genotypes",
    "contig_names",
    "normalize_contig",
    "is_zarr_store",
    "check_variant_order",
]

log = logging.getLogger(__name__)

_EAGER = ("sample_id", "contig_id", "variant_contig", "variant_position")
# bio2zarr marks "no value here" (e.g. a DS entry for an absent ALT) with this NaN payload
_FLOAT32_FILL_BITS = np.int32(0x7F800002)


def is_zarr_store(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a local directory holding a Zarr (format 2 or 3) group."""
    p = Path(path)
    return p.is_dir() and ((p / ".zgroup").is_file() or (p / "zarr.json").is_file())


def normalize_contig(name: Any) -> str:
    """Contig name without a leading ``chr`` (any case); ``M``/``MT`` become ``MT``.

    >>> [normalize_contig(c) for c in ["chr1", "1", "CHRX", "chrM", "MT", "Chr2"]]
    ['1', '1', 'X', 'MT', 'MT', '2']
    """
    s = str(name).strip()
    if len(s) > 3 and s[:3].lower() == "chr":
        s = s[3:]
    up = s.upper()
    if up in ("M", "MT"):
        return "MT"
    if up in ("X", "Y"):
        return up
    return s


def contig_names(ds: xr.Dataset) -> np.ndarray:
    """The contig names of a genotype Dataset, as a str array indexed by ``variant_contig``."""
    if "contig_id" not in ds:
        raise InputError("genotype Dataset has no variable contig_id (contigs,): open it with "
                         "dqtl.io.genotypes.open_genotypes")
    return _str_array(ds["contig_id"].values)


def check_variant_order(
    variant_contig: np.ndarray,
    variant_position: np.ndarray,
    contig_id: np.ndarray,
    *,
    source: str,
) -> None:
    """Raise :class:`InputError` unless variants are grouped by contig and sorted by position.

    Parameters
    ----------
    variant_contig : (variants,) int array
    variant_position : (variants,) int array
    contig_id : (contigs,) str array
    source : str
        Name of the input, for the message.
    """
    c = np.asarray(variant_contig)
    p = np.asarray(variant_position, dtype=np.int64)
    if c.size < 2:
        return
    fix = "sort it ('bcftools sort', or 'plink2 --sort-vars' then --make-pgen/--make-bed)"
    starts = np.r_[0, np.flatnonzero(c[1:] != c[:-1]) + 1]
    block_contigs = c[starts]
    if len(np.unique(block_contigs)) != len(block_contigs):
        seen: set[int] = set()
        for start, code in zip(starts, block_contigs, strict=True):
            if code in seen:
                raise InputError(
                    f"genotypes {source!r}: the variants of contig {str(contig_id[code])!r} are not "
                    f"contiguous (it starts again at variant {start}); variants must be sorted by "
                    f"contig and position: {fix}"
                )
            seen.add(int(code))
    bad = np.flatnonzero((c[1:] == c[:-1]) & (p[1:] < p[:-1]))
    if bad.size:
        i = int(bad[0]) + 1
        raise InputError(
            f"genotypes {source!r}: variants are not sorted: variant {i} on contig "
            f"{str(contig_id[c[i]])!r} at position {p[i]} comes after position {p[i - 1]}; "
            f"variants must be sorted by position within each contig: {fix}"
        )


def _str_array(values: Any) -> np.ndarray:
    """A fixed-width str array from str, bytes, object or numpy StringDType values."""
    v = np.asarray(values)
    if v.dtype.kind in "US":
        return v.astype(str)
    items = [x.decode() if isinstance(x, bytes) else str(x) for x in v.ravel().tolist()]
    return np.array(items, dtype=str).reshape(v.shape)


def _sum_alt_dosages(values: np.ndarray) -> np.ndarray:
    """Sum per-ALT dosages over the last axis, treating bio2zarr's fill value as absent."""
    v = np.asarray(values, dtype=np.float32)
    fill = v.view(np.int32) == _FLOAT32_FILL_BITS
    return np.where(fill, np.float32(0), v).sum(-1, dtype=np.float32)


def _is_dask(var: xr.DataArray) -> bool:
    return var.chunks is not None


def _multiallelic(ds: xr.Dataset, name: str) -> xr.Dataset:
    """Variants with more than one ALT allele, by the dask config ``dqtl.multiallelic`` (the CLI's
    ``--multiallelic``): ``"error"`` (default) names their count and the fix; ``"drop"`` drops
    and counts them; ``"split"`` splits each into one biallelic variant per ALT allele, as
    ``bcftools norm -m -any`` does (allele k becomes 1 in the k-th record, the other ALT
    alleles 0; IDs ``ID_ALT`` keep them unique). Their calls would otherwise be tested as one
    "non-REF" dosage. ``"keep"`` (library only) opens the store as it is, for inspecting a
    conversion."""
    import dask

    policy = dask.config.get("dqtl.multiallelic", "error")
    if policy == "keep" or "variant_allele" not in ds or ds["variant_allele"].ndim != 2 \
            or ds["variant_allele"].shape[1] <= 2:
        return ds
    n_alt = alt_counts(ds["variant_allele"])  # a chunk at a time: no whole allele table
    multi = n_alt > 1
    n = int(multi.sum())
    if n == 0:
        return ds
    first = int(np.flatnonzero(multi)[0])
    example = str(ids_at(ds, [first])[0])
    if example in MISSING_IDS:  # no ID (named after this check): where it is
        example = f"{ds['contig_id'].values[ds['variant_contig'].values[first]]}:{ds['variant_position'].values[first]}"
    if policy == "split":
        return _split_multiallelic(ds, name, np.asarray(ds["variant_allele"].values, dtype=object), n_alt)
    if policy != "drop":
        raise InputError(
            f"{name}: {n} variants have more than one ALT allele (e.g. {example}); pass "
            "--multiallelic split to test each ALT allele as its own variant, --multiallelic drop "
            "to skip them, or split them before converting ('bcftools norm -m -any')")
    log.warning("%s: %d multiallelic variants dropped (e.g. %s)", name, n, example)
    return ds.isel(variants=np.flatnonzero(~multi))


def _recode_alt(gt: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """Allele codes of a split record: ``alt`` -> 1, other ALT alleles -> 0 (REF), missing kept."""
    a = alt.reshape((-1,) + (1,) * (gt.ndim - 1))
    return np.where(gt < 0, gt, (gt == a)).astype(gt.dtype)


def _pick_alt_dosage(values: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """The dosage of ALT allele ``alt`` (1-based, per variant) from per-ALT dosages."""
    v = np.asarray(values, dtype=np.float32)
    fill = v.view(np.int32) == _FLOAT32_FILL_BITS
    onehot = np.arange(1, v.shape[-1] + 1) == alt.reshape((-1,) + (1,) * (v.ndim - 1))
    return np.where(fill | ~onehot, np.float32(0), v).sum(-1, dtype=np.float32)


def _split_multiallelic(ds: xr.Dataset, name: str, alleles: np.ndarray,
                        n_alt: np.ndarray) -> xr.Dataset:
    """One biallelic record per ALT allele (see :func:`_multiallelic`); lazy for call arrays."""
    multi = n_alt > 1
    if "call_dosage" in ds or ("call_DS" in ds and ds["call_DS"].ndim == 2):
        raise InputError(
            f"{name}: {int(multi.sum())} multiallelic variants have dosages summed over their ALT "
            "alleles (call_dosage), which cannot be split; convert from a VCF with per-ALT DS, "
            "split before converting ('bcftools norm -m -any'), or pass --multiallelic drop")
    rows = np.repeat(np.arange(len(n_alt)), n_alt)
    alt = np.concatenate([np.arange(1, k + 1) for k in n_alt]).astype(np.int64)
    out = ds.isel(variants=rows)
    vchunks = out["call_genotype"].chunks[0] if out["call_genotype"].chunks else None
    alt_da = xr.DataArray(alt, dims="variants")
    if vchunks is not None:
        alt_da = alt_da.chunk({"variants": vchunks})
    gt = out["call_genotype"]
    out["call_genotype"] = xr.apply_ufunc(
        _recode_alt, gt, alt_da, dask="parallelized", output_dtypes=[gt.dtype],
        keep_attrs=True)
    if "call_DS" in out and out["call_DS"].ndim == 3:
        d = out["call_DS"]
        out["call_DS"] = xr.apply_ufunc(
            _pick_alt_dosage, d, alt_da.chunk({"variants": d.chunks[0]}) if d.chunks else alt_da,
            input_core_dims=[[d.dims[2]], []], dask="parallelized", output_dtypes=[np.float32])
    new_alleles = np.full((len(rows), alleles.shape[1]), "", dtype=object)
    new_alleles[:, 0] = alleles[rows, 0]
    new_alleles[:, 1] = alleles[rows, alt]
    out["variant_allele"] = (("variants", "alleles"), new_alleles)  # Python strings, as read
    has_id = ~missing_mask(out)  # records without an ID are named after the split
    split = multi[rows] & has_id
    ids = np.asarray(out["variant_id"].values).astype(object)
    ids[split] = [f"{i}_{a}" for i, a in zip(ids[split], new_alleles[split, 1], strict=True)]
    uniq, counts = np.unique(ids[has_id].astype(str), return_counts=True)
    if (counts > 1).any():
        raise InputError(
            f"{name}: splitting multiallelic variants gives duplicated variant IDs (e.g. "
            f"{uniq[counts > 1][0]!r}); give the variants unique IDs first ('bcftools annotate "
            "--set-id') or pass --multiallelic drop")
    out["variant_id"] = ("variants", ids)
    log.warning("%s: %d multiallelic variants split into %d biallelic records (IDs ID_ALT)",
                name, int(multi.sum()), int(n_alt[multi].sum()))
    return out


def _finalize(ds: xr.Dataset, name: str, chunks: int | None) -> xr.Dataset:
    """Validate a genotype Dataset and bring it into the data model (see module docstring)."""
    try:
        calls = "call_genotype" if ("call_genotype" in ds or "call_dosage" not in ds) else "call_dosage"
        validate(ds, (calls, *GENOTYPE_REQUIRED), source=name)
        validate(ds, [v for v in GENOTYPE_OPTIONAL if v in ds.variables], source=name)
    except InputError as exc:
        raise InputError(
            f"{exc}; is it a VCF Zarr store written by bio2zarr/dqtl convert (or an sgkit "
            "genotype Dataset)?"
        ) from None
    if ds.sizes["variants"] == 0 or ds.sizes["samples"] == 0:
        raise InputError(
            f"{name} has {ds.sizes['variants']} variants and {ds.sizes['samples']} samples"
        )
    out = ds.copy()
    # small 1-D variables, in memory (a dask-backed in-memory Dataset is computed here)
    for var in _EAGER:
        values = np.asarray(out[var].values)
        if var in ("sample_id", "contig_id"):
            values = _str_array(values).astype(object)  # python str, as in sgkit
        elif var == "variant_position":
            values = values.astype(np.int64)
        out[var] = (out[var].dims, values, out[var].attrs)
    samples = out["sample_id"].values
    uniq, counts = np.unique(samples, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise InputError(
            f"{name}: sample_id is not unique ({len(dup)} duplicated, e.g. {dup[0]!r}); sample "
            "IDs must be unique to align genotypes with phenotypes"
        )
    vc = out["variant_contig"].values
    n_contigs = out.sizes["contigs"]
    if vc.min() < 0 or vc.max() >= n_contigs:
        raise InputError(
            f"{name}: variant_contig holds indices {vc.min()}..{vc.max()} but contig_id has "
            f"{n_contigs} entries"
        )
    check_variant_order(vc, out["variant_position"].values, out["contig_id"].values, source=name)

    no_ids = "variant_id" not in out
    if no_ids:  # no IDs at all: every variant is named below
        n_var = out.sizes["variants"]
        out["variant_id"] = ("variants", np.full(n_var, ".", dtype=object))
        out["variant_id_mask"] = ("variants", np.ones(n_var, dtype=bool))

    out = _multiallelic(out, name)
    import dask

    if no_ids or dask.config.get("dqtl.multiallelic", "error") != "keep":  # "keep": the store as it is
        out = name_missing_ids(out, name)  # after any split: each record's own REF and ALT
    if "call_dosage" not in out and "call_DS" in out:
        ds_var = out["call_DS"]
        if ds_var.dims[:2] != ("variants", "samples") or ds_var.ndim > 3:
            raise InputError(f"{name}: call_DS has dims {ds_var.dims}, expected (variants, samples"
                             "[, alt_alleles])")
        if ds_var.ndim == 3:
            ds_var = xr.apply_ufunc(
                _sum_alt_dosages, ds_var, input_core_dims=[[ds_var.dims[2]]],
                dask="parallelized", output_dtypes=[np.float32],
            )
        out["call_dosage"] = ds_var.astype(np.float32)
        out = out.drop_vars("call_DS")
    if "call_dosage" in out:
        dos = out["call_dosage"]
        if tuple(dos.dims) != ("variants", "samples") or dos.dtype.kind != "f":
            raise InputError(
                f"{name}: call_dosage has dims {dos.dims} and dtype {dos.dtype}, expected "
                "(variants, samples) float"
            )
        if dos.dtype != np.float32:
            dos = out["call_dosage"] = dos.astype(np.float32)
        # missing-value codes (DS=-9, as some imputation and PLINK exports write them) and any
        # dosage outside [0, ploidy] are missing: NaN, mean-imputed and counted with the missing
        # calls by every method, never used as a dosage
        ploidy = int(out.sizes.get("ploidy", 2))
        out["call_dosage"] = dos.where((dos >= -1e-6) & (dos <= ploidy + 1e-6))
        log.debug("%s: dosages outside [0, %d] are read as missing", name, ploidy)

    # everything else lazily, chunked along variants; numpy StringDType -> object (sgkit model)
    for key in list(out.data_vars):
        if key in _EAGER:
            continue
        da_ = out[key]
        if da_.dtype.kind == "T":
            da_ = out[key] = da_.astype(object)
        if not _is_dask(da_):
            if "variants" in da_.dims or "samples" in da_.dims:
                vchunk = chunks or min(10_000, out.sizes["variants"])
                out[key] = da_.chunk({d: (vchunk if d == "variants" else -1) for d in da_.dims})
        elif chunks is not None and "variants" in da_.dims:
            out[key] = da_.chunk({"variants": chunks})
    out.attrs["dqtl_model"] = 1  # validated: dqtl.study.ensure_genotypes passes it through
    return out


def _zarr_group_info(path: str) -> tuple[int, bool, Any]:
    """Zarr format, whether metadata is consolidated, and the call_genotype array (or None)."""
    import zarr

    from dqtl.io.fs import exists, storage_options

    if path.startswith("file://"):
        path = path[len("file://"):]
    p = Path(path)
    if "://" in path and not exists(path):
        raise InputError(f"genotype store {path!r} does not exist")
    if "://" not in path and not p.exists():
        raise InputError(f"genotype store {path!r} does not exist")
    if "://" not in path and not is_zarr_store(p):
        raise InputError(
            f"genotype store {path!r} is not a Zarr store (no .zgroup or zarr.json): convert "
            "VCF/PLINK/BGEN input first with 'dqtl convert INPUT OUTPUT'"
        )
    if "://" not in path:
        if (p / "zarr.json").is_file():
            meta = json.loads((p / "zarr.json").read_text())
            fmt, consolidated = 3, meta.get("consolidated_metadata") is not None
        else:
            fmt, consolidated = 2, (p / ".zmetadata").is_file()
        group = zarr.open_group(
            str(p), mode="r", zarr_format=cast(Literal[2, 3], fmt), use_consolidated=consolidated
        )
    else:
        try:
            group = zarr.open_group(path, mode="r", storage_options=storage_options(path) or None)
        except FileNotFoundError:
            raise InputError(
                f"genotype store {path!r} is not a Zarr store (no .zgroup or zarr.json): convert "
                "VCF/PLINK/BGEN input first with 'dqtl convert INPUT OUTPUT'"
            ) from None
        fmt = group.metadata.zarr_format
        consolidated = group.metadata.consolidated_metadata is not None
    cg = group.get("call_genotype")
    if cg is not None:
        from dqtl.io.integrity import verify_store

        verify_store(group, f"genotype store {path!r}")
    return fmt, consolidated, cg


def open_genotypes(source: str | os.PathLike[str] | xr.Dataset, *, chunks: int | None = None
                   ) -> xr.Dataset:
    """Open a VCF Zarr / sgkit genotype store (or take a Dataset) as a lazy genotype Dataset.

    Parameters
    ----------
    source : str, path-like or xarray.Dataset
        A Zarr store (format 2 or 3, consolidated or not; as written by bio2zarr or
        :func:`dqtl.io.convert.convert`; a URL is passed to zarr) or an in-memory Dataset in
        the sgkit genotype model.
    chunks : int, optional
        Variants per dask chunk. Default: the store's (outer, i.e. shard) chunk.

    Returns
    -------
    xarray.Dataset
        ``call_genotype`` (variants, samples, ploidy) and every other variants-sized variable
        dask-backed; ``sample_id``, ``contig_id`` (str), ``variant_contig`` and
        ``variant_position`` (int64) in memory; ``call_DS`` becomes ``call_dosage`` float32
        (summed over ALT alleles when it has an ALT dim).

    Raises
    ------
    InputError
        Not a store, missing variables, wrong dims/dtypes, duplicated sample IDs, or variants
        not sorted by contig and position.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({
    ...     "call_genotype": (("variants", "samples", "ploidy"), np.zeros((3, 2, 2), np.int8)),
    ...     "variant_contig": ("variants", np.array([0, 0, 1])),
    ...     "variant_position": ("variants", np.array([10, 20, 5], np.int32)),
    ...     "variant_allele": (("variants", "alleles"), np.array([["A", "C"]] * 3)),
    ...     "contig_id": ("contigs", np.array(["1", "2"])),
    ...     "sample_id": ("samples", np.array(["s1", "s2"]))})
    >>> out = open_genotypes(ds)
    >>> out.call_genotype.chunks is not None, out.variant_position.dtype
    (True, dtype('int64'))
    """
    if chunks is not None and (isinstance(chunks, bool) or not isinstance(chunks, int)
                               or chunks < 1):
        raise InputError(f"chunks must be a positive number of variants, got {chunks!r}")
    if isinstance(source, xr.Dataset):
        return _finalize(source, "genotype Dataset", chunks)
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(
            f"genotype source must be a Zarr store path or an xarray.Dataset, got "
            f"{type(source).__name__}"
        )
    from dqtl.io.fs import storage_options

    path = os.fspath(source)
    if path.startswith("file://"):
        path = path[len("file://"):]
    name = f"genotype store {path!r}"
    try:
        fmt, consolidated, cg = _zarr_group_info(path)
    except (ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, InputError):
            raise
        from dqtl.io.integrity import damaged_metadata

        bad = damaged_metadata(path)
        if bad:
            raise InputError(f"{name}: metadata file {bad} is not valid JSON; the store is damaged: "
                             "resync the store or convert the input again") from None
        raise InputError(f"{name} could not be opened: {exc}") from None
    if cg is None:
        raise InputError(
            f"{name} has no variable call_genotype: is it a VCF Zarr store written by "
            "bio2zarr/dqtl convert?"
        )
    outer = getattr(cg, "shards", None) or cg.chunks
    dask_chunks: dict[str, int] = {"variants": chunks or outer[0]}
    if len(outer) > 1:
        dask_chunks["samples"] = outer[1]
    kwargs: dict[str, Any] = dict(consolidated=consolidated, zarr_format=fmt, mask_and_scale=False)
    if "://" in path and storage_options(path):
        kwargs["storage_options"] = storage_options(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*separate the stored chunks.*")
        try:
            ds = xr.open_zarr(path, chunks=dask_chunks, **kwargs)
            ds = ds.chunk({d: -1 for d in ds.dims if d not in dask_chunks}) if ds.dims else ds
            # the small variables, and the missing-ID mask (one byte per variant), in memory
            eager = [v for v in (*_EAGER, "variant_id_mask") if v in ds.variables]
            small = xr.open_zarr(path, chunks=None, **kwargs)[eager].load()
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{name} could not be opened: {exc}") from exc
    for var in eager:
        ds[var] = small[var]
    ds.attrs.pop("dqtl_stored_chunks", None)  # describes this store's files, not a copy of its data
    for var in ds.variables.values():  # raw values are kept (mask_and_scale=False): no masking
        var.attrs.pop("_FillValue", None)
        var.attrs.pop("missing_value", None)
    return _finalize(ds, name, None)
