"""Meta-analysis of nominal eQTL pairs across studies (populations, tissues, contexts).

:func:`meta_pairs` joins in-memory tables; :func:`run_meta` streams pair files larger than
memory: each study's files (dqtl or tensorQTL ``cis_qtl_pairs`` parquet: ``phenotype_id``,
``variant_id``, ``slope``, ``slope_se``; ``beta``/``beta_se`` also accepted) are read in record
batches and hash-partitioned on ``phenotype_id`` into buckets sized to the memory budget, one
task per file; one task per bucket then joins the studies on ``(phenotype_id, variant_id)``,
meta-analyzes every pair (:func:`dqtl.kernels.meta.meta_analysis`: metafor's FE and DL) and writes
its rows sorted by phenotype then variant ID; the buckets are concatenated into
``PREFIX.meta_pairs.parquet`` (rows grouped by phenotype; phenotype order follows the hash
buckets). Variant IDs must encode the same alleles in every study (e.g. ``chr_pos_ref_alt``):
the effect signs are combined as given. A task holds its share of the budget plus one decoded
row group of an input file (parquet is read a row group at a time: dqtl's pair files have row
groups of at most 250,000 pairs, pandas/tensorQTL's up to 1,048,576 rows).
"""

from __future__ import annotations

import glob
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dqtl.errors import InputError
from dqtl.kernels.meta import META_COLUMNS, meta_analysis

__all__ = ["meta_pairs", "run_meta", "study_files", "META_SCHEMA"]

log = logging.getLogger(__name__)

#: ``PREFIX.meta_pairs.parquet``
META_SCHEMA = pa.schema([("phenotype_id", pa.large_string()), ("variant_id", pa.large_string()),
                         ("n_studies", pa.int32())]
                        + [(c, pa.float64()) for c in META_COLUMNS[1:] if c not in ("z_fe", "z_re")])
_OUT = [f.name for f in META_SCHEMA]
_ALIASES = {"slope": ("slope", "beta"), "slope_se": ("slope_se", "beta_se")}
_BYTES_PER_ROW = 600  # measured peak cost of one input row in a bucket task (pandas strings, join)


def study_files(spec: str) -> list[str]:
    """The files of one study: a path or a glob (e.g. ``run.cis_qtl_pairs.*.parquet``)."""
    files = sorted(glob.glob(spec)) if any(ch in spec for ch in "*?[") else [spec]
    if not files:
        raise InputError(f"--study: no file matches {spec!r}")
    for f in files:
        try:
            pq.ParquetFile(f, pre_buffer=False)
        except FileNotFoundError:
            raise FileNotFoundError(f"--study: {f} does not exist") from None
        except (OSError, pa.ArrowInvalid) as exc:
            raise InputError(f"--study: {f} is not a readable parquet file ({exc})") from None
    return files


def _columns(path: str) -> dict[str, str]:
    names = set(pq.ParquetFile(path).schema_arrow.names)
    out = {"phenotype_id": "phenotype_id", "variant_id": "variant_id"}
    for key, options in _ALIASES.items():
        found = [o for o in options if o in names]
        if not found:
            raise InputError(f"{path}: no {' or '.join(options)} column; expected nominal pairs "
                             "of dqtl or tensorQTL (phenotype_id, variant_id, slope, slope_se)")
        out[key] = found[0]
    for key in ("phenotype_id", "variant_id"):
        if key not in names:
            raise InputError(f"{path}: no {key} column; expected nominal cis pairs")
    return out


def _check(df: pd.DataFrame, where: str) -> None:
    se = df["slope_se"].to_numpy(dtype=float)
    b = df["slope"].to_numpy(dtype=float)
    bad = ~(np.isfinite(b) & np.isfinite(se) & (se > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{where}: pair {df['phenotype_id'].iloc[i]} / {df['variant_id'].iloc[i]} "
                         f"has slope {b[i]!r} and slope_se {se[i]!r}; slopes must be finite and "
                         "standard errors > 0")


def meta_pairs(studies: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Meta-analyze in-memory pair tables (``phenotype_id, variant_id, slope, slope_se`` per
    study); one row per pair reported by any study, sorted by phenotype and variant ID.

    >>> a = pd.DataFrame({"phenotype_id": ["g"], "variant_id": ["v"], "slope": [0.1], "slope_se": [0.1]})
    >>> b = a.assign(slope=0.3)
    >>> meta_pairs({"A": a, "B": b})[["n_studies", "beta_fe", "i2"]].round(3).values.tolist()
    [[2.0, 0.2, 50.0]]
    """
    if len(studies) < 1:
        raise InputError("meta-analysis needs at least one study")
    frames = []
    for name, df in studies.items():
        cols = {}
        for key, options in _ALIASES.items():
            found = [o for o in options if o in df.columns]
            if not found:
                raise InputError(f"study {name}: no {' or '.join(options)} column")
            cols[found[0]] = key
        d = df.rename(columns=cols)[["phenotype_id", "variant_id", "slope", "slope_se"]].copy()
        d["phenotype_id"] = d["phenotype_id"].astype(str)
        d["variant_id"] = d["variant_id"].astype(str)
        _check(d, f"study {name}")
        dup = d.duplicated(["phenotype_id", "variant_id"])
        if dup.any():
            raise InputError(f"study {name}: pair {d['phenotype_id'][dup].iloc[0]} / "
                             f"{d['variant_id'][dup].iloc[0]} appears more than once")
        d["study"] = name
        frames.append(d)
    return _meta_frame(pd.concat(frames, ignore_index=True), list(studies))


def _meta_frame(long: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    """Long rows (phenotype_id, variant_id, slope, slope_se, study) -> one meta row per pair."""
    if long.empty:
        return pd.DataFrame(columns=_OUT)
    key = pd.MultiIndex.from_arrays([long["phenotype_id"].to_numpy(), long["variant_id"].to_numpy()])
    codes, uniq = pd.factorize(key, sort=True)
    s = pd.Categorical(long["study"], categories=list(names)).codes
    B = np.full((len(uniq), len(names)), np.nan)
    S = np.full((len(uniq), len(names)), np.nan)
    B[codes, s] = long["slope"].to_numpy(dtype=float)
    S[codes, s] = long["slope_se"].to_numpy(dtype=float)
    res = meta_analysis(B, S)
    out = pd.DataFrame({"phenotype_id": uniq.get_level_values(0).astype(str),
                        "variant_id": uniq.get_level_values(1).astype(str)})
    for c in _OUT[2:]:
        out[c] = res[c]
    return out


def _partition_task(study: str, path: str, index: int, n_buckets: int, out_dir: str,
                    batch_rows: int) -> dict[str, Any]:
    """Read one file in record batches; append each row to its bucket's part (by phenotype)."""
    cols = _columns(path)
    writers: dict[int, Any] = {}
    sinks: dict[int, Any] = {}
    schema = pa.schema([("phenotype_id", pa.large_string()), ("variant_id", pa.large_string()),
                        ("slope", pa.float64()), ("slope_se", pa.float64())])
    n = 0
    stem = f"{index:06d}"
    try:
        reader = pq.ParquetFile(path, pre_buffer=False)
        for batch in reader.iter_batches(batch_size=batch_rows, use_threads=False,
                                         columns=list(dict.fromkeys(cols.values()))):
            df = batch.to_pandas()
            df = pd.DataFrame({k: df[v] for k, v in cols.items()})
            df["phenotype_id"] = df["phenotype_id"].astype(str)
            df["variant_id"] = df["variant_id"].astype(str)
            _check(df, f"study {study} ({path})")
            n += len(df)
            bucket = (pd.util.hash_array(df["phenotype_id"].to_numpy(dtype=object)) % n_buckets
                      ).astype(np.int64)
            for bkt, part in df.groupby(bucket, sort=False):
                b = int(bkt)
                if b not in writers:
                    sinks[b] = pa.OSFile(f"{out_dir}/b{b:05d}-{study}-{stem}.arrow", "wb")
                    writers[b] = pa.ipc.new_file(sinks[b], schema)
                writers[b].write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False))
    finally:
        for b, w in writers.items():
            w.close()
            sinks[b].close()
    return {"study": study, "path": path, "rows": n}


def _bucket_task(bucket: int, studies: Sequence[str], parts_dir: str, out_path: str,
                 partitioned: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Join one bucket's rows of every study and meta-analyze them; write the part (sorted)."""
    frames = []
    for study in studies:
        rows = []
        for f in sorted(glob.glob(f"{parts_dir}/b{bucket:05d}-{glob.escape(study)}-*.arrow")):
            with pa.memory_map(f) as src:
                rows.append(pa.ipc.open_file(src).read_all().to_pandas())
        if not rows:
            continue
        d = pd.concat(rows, ignore_index=True)
        dup = d.duplicated(["phenotype_id", "variant_id"])
        if dup.any():
            raise InputError(f"study {study}: pair {d['phenotype_id'][dup].iloc[0]} / "
                             f"{d['variant_id'][dup].iloc[0]} appears more than once (check that "
                             "its files do not overlap)")
        d["study"] = study
        frames.append(d)
    out = _meta_frame(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(), studies)
    table = pa.Table.from_pandas(out.astype({"n_studies": np.int32}) if len(out) else out,
                                 schema=META_SCHEMA, preserve_index=False) if len(out) else \
        META_SCHEMA.empty_table()
    with pa.OSFile(out_path, "wb") as sink, pa.ipc.new_file(sink, META_SCHEMA) as w:
        w.write_table(table)
    k = out["n_studies"].to_numpy() if len(out) else np.zeros(0, dtype=np.int64)
    het = int(np.sum((k > 1) & (out["pval_het"].to_numpy() < 0.05))) if len(out) else 0
    return {"n": len(out), "by_k": {int(a): int(b) for a, b in zip(*np.unique(k, return_counts=True),
                                                                        strict=True)},
            "het": het}


def run_meta(studies: Mapping[str, str | Sequence[str]], output_prefix: str, *,
             memory_budget: int = 1 << 30, batch_rows: int = 200_000,
             publication: Any = None) -> dict[str, Any]:
    """Stream-meta-analyze the pair files of ``studies`` (name -> path, glob or list of paths)
    into ``{output_prefix}.meta_pairs.parquet`` and ``{output_prefix}.meta_summary.json``.

    ``memory_budget`` bounds what one task holds: the number of hash buckets is chosen so that a
    bucket's rows (all studies) fit in it. With ``publication`` the files are staged there (the
    caller commits them with its other outputs).
    """
    import os

    import dask

    from dqtl.compute import compute
    from dqtl.io.fs import Publication, is_url, open_file
    from dqtl.io.results import concat_parquet

    t0 = time.perf_counter()
    if is_url(output_prefix):
        raise InputError("dqtl meta writes to a local (or shared-filesystem) prefix")
    if len(studies) < 2:
        raise InputError("dqtl meta needs at least two --study NAME=PATH")
    import re

    for name in studies:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise InputError(f"--study {name!r}: study names may use letters, digits, '_', '.', '-'")
    files = {name: study_files(spec) if isinstance(spec, str) else [f for sp in spec for f in study_files(sp)]
             for name, spec in studies.items()}
    for fs in files.values():
        for f in fs:
            _columns(f)
    total = sum(pq.ParquetFile(f).metadata.num_rows for fs in files.values() for f in fs)
    n_buckets = max(1, int(np.ceil(total * _BYTES_PER_ROW / max(memory_budget, 1 << 20))))
    batch_rows = int(max(1000, min(batch_rows, memory_budget // (4 * _BYTES_PER_ROW))))
    log.info("meta: %d studies (%s), %d input rows, %d bucket(s) for a %.0f MiB budget",
             len(files), ", ".join(files), total, n_buckets, memory_budget / 2**20)
    names = list(files)
    import contextlib

    with (contextlib.nullcontext(publication) if publication is not None else Publication()) as pub:
        final = f"{output_prefix}.meta_pairs.parquet"
        work = pub.scratch_dir(final, "meta")
        part_dir = f"{work}/in"
        out_dir = f"{work}/out"
        os.makedirs(part_dir, exist_ok=True)
        os.makedirs(out_dir, exist_ok=True)
        part = dask.delayed(_partition_task, pure=False)
        parted = [part(name, f, k, n_buckets, part_dir, batch_rows)
                  for k, (name, f) in enumerate((n, f) for n, fs in files.items() for f in fs)]
        bucket = dask.delayed(_bucket_task, pure=False)
        outs = [f"{out_dir}/m{b:05d}.arrow" for b in range(n_buckets)]
        tasks = [bucket(b, names, part_dir, outs[b], parted) for b in range(n_buckets)]
        counts = compute(tasks, label="meta-analysis buckets")
        staged = pub.stage(final)
        n = concat_parquet(outs, staged, META_SCHEMA, remove_parts=True)
        by_k: dict[int, int] = {}
        for c in counts:
            for a, b in c["by_k"].items():
                by_k[a] = by_k.get(a, 0) + b
        summary: dict[str, Any] = {
            "studies": dict(files), "n_pairs": int(n), "input_rows": int(total),
            "buckets": n_buckets, "pairs_by_n_studies": dict(sorted(by_k.items())),
            "pairs_heterogeneous_p05": int(sum(c["het"] for c in counts))}
        with open_file(pub.stage(f"{output_prefix}.meta_summary.json"), "w") as f:
            json.dump(summary, f, indent=2)
    log.info("meta: %d pairs (%s) in %.1f s -> %s", n, ", ".join(
        f"{a} in {b} studies" for b, a in summary.get("pairs_by_n_studies", {}).items()),
        time.perf_counter() - t0, final)
    if sum(c["n"] for c in counts) != n:
        raise RuntimeError("meta: the bucket parts and the output disagree on the number of pairs")
    return summary
