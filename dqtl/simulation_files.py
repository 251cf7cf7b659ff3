"""Write a simulation (:func:`dqtl.simulation.simulate`) to the files users and peer tools read:
a VCF Zarr store, phenotype BED, covariates, truth table, hidden factors, VCF and PLINK 2."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from dqtl.errors import InputError
from dqtl.io.atomic import atomic_dir, atomic_path
from dqtl.io.bgzf import BgzfWriter, TabixIndex
from dqtl.io.variant_ids import MISSING_IDS
from dqtl.simulation import DEFAULT_FORMATS, GENOTYPE_VARIABLES, SIMULATION_FORMATS

__all__ = ["write_simulation"]

log = logging.getLogger(__name__)

def _variant_chunks(ds: xr.Dataset) -> list[tuple[int, int]]:
    chunks = ds["call_genotype"].chunks
    sizes = chunks[0] if chunks else (ds.sizes["variants"],)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _iter_calls(ds: xr.Dataset) -> Iterable[tuple[int, np.ndarray]]:
    """Yield ``(first variant, calls int8 (chunk variants, samples, ploidy))`` chunk by chunk."""
    gt = ds["call_genotype"].data
    for a, b in _variant_chunks(ds):
        block = gt[a:b]
        yield a, np.asarray(block.compute() if isinstance(block, da.Array) else block)


def _write_zarr(ds: xr.Dataset, path: Path) -> list[Path]:
    names = [v for v in GENOTYPE_VARIABLES if v in ds]
    gds = ds[names]
    if "variant_id" in gds and "variant_id_mask" not in gds:  # as bio2zarr writes it
        gds["variant_id_mask"] = gds["variant_id"].isin(list(MISSING_IDS))
    chunk = _variant_chunks(ds)[0]
    size = max(chunk[1] - chunk[0], 1)
    encoding = {}
    for v in names:
        var = gds[v]
        if not var.dims or var.dims[0] != "variants":
            continue
        if isinstance(var.data, da.Array):  # Zarr needs regular chunks: first chunk length
            gds[v] = var.chunk({"variants": size})
        else:
            encoding[v] = {"chunks": (size, *var.shape[1:])}
    gds.attrs = {k: v for k, v in ds.attrs.items() if k in ("source", "seed", "simulation")}
    with atomic_dir(path) as tmp:
        gds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False, encoding=encoding)
        from dqtl.io.integrity import record_stored_chunks

        record_stored_chunks(tmp)
    return [path]


def _write_table(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, na_rep="NA")


def _write_bed(df: pd.DataFrame, path: Path) -> list[Path]:
    """BGZF-compressed BED (sorted by contig, start) with a tabix index."""
    names = list(dict.fromkeys(df["#chr"].tolist()))
    ref = df["#chr"].map({n: i for i, n in enumerate(names)}).to_numpy()
    start, end = df["start"].to_numpy(), df["end"].to_numpy()
    lines = df.to_csv(sep="\t", index=False, na_rep="NA").encode().splitlines(keepends=True)
    index = TabixIndex(names, preset=0x10000, col_end=3)  # UCSC: 0-based half-open
    idx_path = path.with_name(path.name + ".tbi")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, BgzfWriter(raw) as fh:
            fh.write(lines[0])
            for i, line in enumerate(lines[1:]):
                begin = fh.tell()
                fh.write(line)
                index.add(int(ref[i]), int(start[i]), max(int(end[i]), int(start[i]) + 1),
                          begin, fh.tell())
        _write_index(index, idx_path)
    return [path, idx_path]


def _write_index(index: TabixIndex, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as raw, BgzfWriter(raw) as fh:
        fh.write(index.to_bytes())


def _phenotype_bed(ds: xr.Dataset) -> pd.DataFrame:
    contigs = [str(c) for c in ds["contig_id"].values] if "contig_id" in ds else []
    pc = ds["phenotype_contig"].values.astype(str)
    order_of = {c: i for i, c in enumerate(contigs)}
    rank = np.array([order_of.get(c, len(contigs)) for c in pc])
    df = pd.DataFrame({
        "#chr": pc,
        "start": ds["phenotype_start"].values.astype(np.int64),
        "end": ds["phenotype_end"].values.astype(np.int64),
        "phenotype_id": ds["phenotype_id"].values.astype(str),
    })
    values = pd.DataFrame(np.asarray(ds["phenotype_values"].values, dtype=np.float64),
                          columns=ds["sample_id"].values.astype(str))
    df = pd.concat([df, values], axis=1)
    df["_rank"] = rank
    df = df.sort_values(["_rank", "#chr", "start", "end"], kind="stable").drop(columns="_rank")
    return df.reset_index(drop=True)


def _sample_matrix(ds: xr.Dataset, values: str, ids: str) -> pd.DataFrame:
    mat = np.asarray(ds[values].values, dtype=np.float64).T
    df = pd.DataFrame(mat, columns=ds["sample_id"].values.astype(str))
    df.insert(0, "id", ds[ids].values.astype(str))
    return df


def _truth(ds: xr.Dataset) -> pd.DataFrame:
    causal = ds["phenotype_causal_variant"].values.astype(np.int64)
    vid = ds["variant_id"].values.astype(str)
    return pd.DataFrame({
        "phenotype_id": ds["phenotype_id"].values.astype(str),
        "is_egene": ds["phenotype_is_egene"].values.astype(bool),
        "causal_variant_id": [vid[i] if i >= 0 else None for i in causal],
        "effect_size": ds["phenotype_effect_size"].values.astype(np.float64),
    })


def _write_pgen(ds: xr.Dataset, stem: Path) -> list[Path]:
    import pgenlib

    if ds.sizes["ploidy"] != 2:
        raise InputError(
            f"formats: 'pgen' needs diploid genotypes, found ploidy {ds.sizes['ploidy']}; "
            "simulate with ploidy=2 or drop 'pgen'"
        )
    n_var, n_samples = ds.sizes["variants"], ds.sizes["samples"]
    contig = ds["contig_id"].values.astype(str)[ds["variant_contig"].values]
    alleles = ds["variant_allele"].values.astype(str)
    pvar = pd.DataFrame({
        "#CHROM": contig, "POS": ds["variant_position"].values.astype(np.int64),
        "ID": ds["variant_id"].values.astype(str), "REF": alleles[:, 0], "ALT": alleles[:, 1],
    })
    paths = [stem.with_suffix(".pgen"), stem.with_suffix(".pvar"), stem.with_suffix(".psam")]
    _write_table(pvar, paths[1])
    _write_table(pd.DataFrame({"#IID": ds["sample_id"].values.astype(str)}), paths[2])
    with atomic_path(paths[0]) as tmp:
        writer = pgenlib.PgenWriter(str(tmp).encode(), n_samples, n_var, nonref_flags=False)
        try:
            for _, calls in _iter_calls(ds):
                dosage = calls.sum(axis=2, dtype=np.int8)
                dosage[(calls < 0).any(axis=2)] = -9
                writer.append_biallelic_batch(np.ascontiguousarray(dosage))
        finally:
            writer.close()
    return paths


def _write_vcf(ds: xr.Dataset, path: Path) -> list[Path]:
    contigs = ds["contig_id"].values.astype(str)
    lengths = ds["contig_length"].values if "contig_length" in ds else [None] * len(contigs)
    samples = ds["sample_id"].values.astype(str)
    ploidy = ds.sizes["ploidy"]
    head = ["##fileformat=VCFv4.3", f"##source=dqtl.simulate(seed={ds.attrs.get('seed')})"]
    head += [f"##contig=<ID={c}" + (f",length={int(n)}>" if n is not None else ">")
             for c, n in zip(contigs, lengths, strict=True)]
    head.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    head.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO",
                           "FORMAT", *samples]))
    vcontig = ds["variant_contig"].values.astype(np.int64)
    pos = ds["variant_position"].values.astype(np.int64)
    vid = ds["variant_id"].values.astype(str)
    alleles = ds["variant_allele"].values.astype(str)
    allele_chars = np.frombuffer(b".01", dtype=np.uint8)
    index = TabixIndex(list(contigs))
    idx_path = path.with_name(path.name + ".tbi")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, BgzfWriter(raw) as fh:
            fh.write(("\n".join(head) + "\n").encode())
            for a, calls in _iter_calls(ds):
                text = np.empty((calls.shape[0], calls.shape[1], 2 * ploidy), dtype=np.uint8)
                text[:, :, 0::2] = allele_chars[np.clip(calls, -1, 1) + 1]
                text[:, :, 1::2] = ord("/")
                text[:, :, -1] = ord("\t")
                text[:, -1, -1] = ord("\n")
                for i in range(calls.shape[0]):
                    v = a + i
                    line = (f"{contigs[vcontig[v]]}\t{pos[v]}\t{vid[v]}\t{alleles[v, 0]}\t"
                            f"{alleles[v, 1]}\t.\tPASS\t.\tGT\t").encode() + text[i].tobytes()
                    begin = fh.tell()
                    fh.write(line)
                    index.add(int(vcontig[v]), int(pos[v]) - 1,
                              int(pos[v]) - 1 + len(alleles[v, 0]), begin, fh.tell())
        _write_index(index, idx_path)
    return [path, idx_path]


#: the file names each format writes, from the prefix
SIMULATION_FILES: dict[str, Callable[[str], list[str]]] = {
    "zarr": lambda p: [f"{p}.vcz"],
    "bed": lambda p: [f"{p}.expression.bed.gz", f"{p}.expression.bed.gz.tbi"],
    "covariates": lambda p: [f"{p}.covariates.txt"],
    "hidden": lambda p: [f"{p}.hidden_factors.txt"],
    "truth": lambda p: [f"{p}.truth.tsv"],
    "vcf": lambda p: [f"{p}.vcf.gz", f"{p}.vcf.gz.tbi"],
    "pgen": lambda p: [f"{p}.pgen", f"{p}.pvar", f"{p}.psam"],
}


def refuse_existing(outdir: str | os.PathLike[str], formats: Sequence[str], prefix: str) -> None:
    """Raise :class:`InputError` naming the files of ``formats`` already in ``outdir``."""
    out = Path(outdir)
    taken = [n for f in dict.fromkeys(formats) for n in SIMULATION_FILES[f](prefix)
             if (out / n).exists()]
    if taken:
        raise InputError(
            f"{out} already holds {', '.join(taken[:3])}{' ...' if len(taken) > 3 else ''}: "
            "choose another folder or prefix (--prefix), or replace them (--force; "
            "overwrite=True in Python)")


def write_simulation(
    ds: xr.Dataset,
    outdir: str | os.PathLike[str],
    *,
    formats: Sequence[str] = DEFAULT_FORMATS,
    prefix: str = "sim",
    overwrite: bool = True,
) -> dict[str, list[Path]]:
    """Write a :func:`simulate` Dataset as files for dqtl and other eQTL tools.

    Each file is written atomically (into a temporary sibling, renamed when complete), and
    genotypes are written chunk by chunk along ``variants``, never materialised whole.

    ========== ============================== ===============================================
    format     file(s)                        content
    ========== ============================== ===============================================
    zarr       ``{prefix}.vcz``               VCF Zarr store (Zarr v3, unconsolidated): the
                                              genotype variables only, chunked along variants
    bed        ``{prefix}.expression.bed.gz`` tensorQTL phenotype BED (``#chr start end
                                              phenotype_id`` + samples), sorted by
                                              contig/start, BGZF (gzip-compatible), NA missing
    covariates ``{prefix}.covariates.txt``    tensorQTL layout: covariates x samples TSV,
                                              first column ``id``
    truth      ``{prefix}.truth.tsv``         ``phenotype_id, is_egene, causal_variant_id,
                                              effect_size`` (NA without a causal variant)
    hidden     ``{prefix}.hidden_factors.txt`` hidden factors in the covariates layout
    vcf        ``{prefix}.vcf.gz`` + ``.tbi``  VCF 4.3, GT only (``0/1``, ``./.``), BGZF
                                              compressed with a tabix index, both written in
                                              pure Python (no pysam/bgzip needed)
    pgen       ``{prefix}.pgen/.pvar/.psam``  PLINK 2 via ``pgenlib.PgenWriter``; ALT (allele
                                              1) is counted, as in the Dataset; diploid only
    ========== ============================== ===============================================

    Parameters
    ----------
    ds
        Output of :func:`simulate` (or any Dataset with the variables a format needs).
    outdir
        Output folder, created if missing; files of the same names are replaced (with
        ``overwrite=False``, an error names them instead).
    formats
        Any of :data:`SIMULATION_FORMATS`.
    prefix
        File name prefix (no path separators).

    Returns
    -------
    dict
        Format -> list of written paths.
    """
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in SIMULATION_FORMATS]
    if unknown or not formats:
        raise InputError(
            f"formats: expected one or more of {', '.join(SIMULATION_FORMATS)}, found "
            f"{list(formats)!r}; pass known format names"
        )
    if not prefix or os.sep in prefix or "/" in prefix:
        raise InputError(
            f"prefix: expected a file name prefix without '/', found {prefix!r}; "
            "put folders in outdir instead"
        )
    needs = {
        "zarr": ("call_genotype", "variant_position", "variant_contig", "contig_id", "sample_id"),
        "vcf": ("call_genotype", "variant_position", "variant_id", "variant_allele"),
        "pgen": ("call_genotype", "variant_position", "variant_id", "variant_allele"),
        "bed": ("phenotype_values", "phenotype_id", "phenotype_contig", "phenotype_start"),
        "covariates": ("covariate_values", "covariate_id", "sample_id"),
        "hidden": ("hidden_factor_values", "hidden_factor_id", "sample_id"),
        "truth": ("phenotype_causal_variant", "phenotype_is_egene", "variant_id"),
    }
    for f in formats:
        missing = [v for v in needs[f] if v not in ds]
        if missing:
            raise InputError(
                f"ds: format {f!r} needs variables {missing} that the Dataset lacks; "
                "pass the output of dqtl.simulation.simulate or drop the format"
            )
    if "pgen" in formats and ds.sizes.get("ploidy", 2) != 2:
        raise InputError(
            f"formats: 'pgen' needs diploid genotypes, found ploidy {ds.sizes['ploidy']}; "
            "simulate with ploidy=2 or drop 'pgen'"
        )
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    if not overwrite:
        refuse_existing(out, formats, prefix)
    written: dict[str, list[Path]] = {}
    writers: dict[str, Callable[[], list[Path]]] = {
        "zarr": lambda: _write_zarr(ds, out / f"{prefix}.vcz"),
        "bed": lambda: _write_bed(_phenotype_bed(ds), out / f"{prefix}.expression.bed.gz"),
        "covariates": lambda: _table(_sample_matrix(ds, "covariate_values", "covariate_id"),
                                     out / f"{prefix}.covariates.txt"),
        "hidden": lambda: _table(_sample_matrix(ds, "hidden_factor_values", "hidden_factor_id"),
                                 out / f"{prefix}.hidden_factors.txt"),
        "truth": lambda: _table(_truth(ds), out / f"{prefix}.truth.tsv"),
        "vcf": lambda: _write_vcf(ds, out / f"{prefix}.vcf.gz"),
        "pgen": lambda: _write_pgen(ds, out / prefix),
    }
    for f in dict.fromkeys(formats):
        written[f] = writers[f]()
        log.info("write_simulation: wrote %s", ", ".join(str(p) for p in written[f]))
    return written


def _table(df: pd.DataFrame, path: Path) -> list[Path]:
    _write_table(df, path)
    return [path]
