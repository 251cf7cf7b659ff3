"""Output of the trans scan: a resumable store of block results and the final, atomic files.

Block store
-----------
``OUTPUT_PREFIX.trans_blocks/`` holds ``manifest.json`` (the run's fingerprint: a hash of the
inputs and of every parameter that changes a result, block sizes included) and one ``.npz``
file per completed block, named by its key ``(variant block, phenotype block)``. A block file
is written to a temporary name in the same folder and renamed into place, so it exists only
when complete, and writing it twice (a task retried after a lost worker) is harmless. A rerun
with the same fingerprint skips the recorded blocks; a different fingerprint (other inputs or
parameters) empties the folder first, so stale blocks are never reused. Workers write blocks
themselves: on a cluster the folder must be on a file system every worker can reach.

Final files (all published together, each through a temporary sibling and a rename)
----------------------------------------------------------------------------------
- ``OUTPUT_PREFIX.trans_qtl_pairs.parquet``: ``variant_id, phenotype_id, pval, b, b_se, af,
  qval`` (+ ``qval_phenotype``, ``pval_perm``, ``pval_beta`` when asked for), one row group per
  variant block, rows ordered by variant then phenotype. Streamed block by block: memory holds
  one variant block's hits plus the p-values of all hits (for BH), never a whole table.
- ``OUTPUT_PREFIX.trans_qtl_pairs.zarr`` (optional): the same columns as 1-D arrays along
  ``pairs`` (xarray-readable), written chunk by chunk.
- ``OUTPUT_PREFIX.trans_phenotype_tests.parquet``: ``phenotype_id, n_tests, n_hits``.
- ``OUTPUT_PREFIX.trans_summary.json``: total tests, hits, thresholds, counts, null fits.

q-values and the permutation columns are computed by :mod:`dqtl.association.trans_results`;
this module only stores blocks and writes the columns it is given.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dqtl.errors import InputError
from dqtl.io.atomic import atomic_path
from dqtl.io.fs import (
    Publication,
    absolute,
    basename,
    check_bucket,
    exists,
    filesystem,
    is_url,
    join,
    open_file,
    storage_options,
)
from dqtl.io.results import parquet_options

__all__ = [
    "TransBlockStore",
    "TRANS_PAIR_COLUMNS",
    "TRANS_FILE_COLUMNS",
    "input_signature",
    "write_trans_tables",
    "trans_output_paths",
]

log = logging.getLogger(__name__)

#: columns of tensorQTL's trans output, plus the BH q-value
TRANS_PAIR_COLUMNS = ["variant_id", "phenotype_id", "pval", "b", "b_se", "af", "qval"]

#: dqtl result name -> column of the trans pairs file
TRANS_FILE_COLUMNS = {
    "variant_id": "variant_id", "phenotype_id": "phenotype_id", "p_value": "pval", "beta": "b",
    "beta_se": "b_se", "af": "af", "q_value": "qval", "q_value_phenotype": "qval_phenotype",
    "p_value_perm": "pval_perm", "p_value_beta": "pval_beta",
}

_FORMAT = "dqtl-trans-blocks-1"
_BLOCK_RE = re.compile(r"^b(\d{7})_(\d{4})\.npz$")


def trans_output_paths(output_prefix: str | os.PathLike[str]) -> dict[str, str]:
    """The files a trans run writes (``pairs``, ``zarr``, ``phenotypes``, ``summary``, ``blocks``);
    local paths are made absolute, URLs kept."""
    p = absolute(output_prefix)
    return {
        "pairs": f"{p}.trans_qtl_pairs.parquet",
        "zarr": f"{p}.trans_qtl_pairs.zarr",
        "phenotypes": f"{p}.trans_phenotype_tests.parquet",
        "summary": f"{p}.trans_summary.json",
        "blocks": f"{p}.trans_blocks",
    }


def input_signature(path: str | os.PathLike[str]) -> str:
    """A cheap signature of an input file, file set or directory: names, sizes, mtimes.

    For a directory (a Zarr store) every file below it counts; for a file, it and its siblings
    of the same stem (``x.pgen``: ``x.pvar``, ``x.psam``); for a prefix, every ``prefix.*``.
    Changing, adding or removing a file changes it. Listing a store of many chunk files takes
    a stat call per file (an object listing for URLs: sizes and ETags or modification times).
    """
    s = absolute(path)
    entries: list[str] = []
    if is_url(s):
        fs, fp = filesystem(s)
        with contextlib.suppress(FileNotFoundError):
            for name, info in fs.find(fp, detail=True).items():
                tag = info.get("ETag") or info.get("mtime") or info.get("LastModified") or ""
                entries.append(f"{name[len(fp):]}:{info.get('size')}:{tag}")
        entries.sort()
        h = hashlib.sha256(s.encode())
        for e in entries:
            h.update(e.encode())
        return h.hexdigest()
    p = Path(s)
    if p.is_dir():
        for root, _dirs, files in os.walk(p):
            for f in files:
                fp2 = Path(root) / f
                st = fp2.stat()
                entries.append(f"{fp2.relative_to(p)}:{st.st_size}:{st.st_mtime_ns}")
    else:
        # a file and its siblings of the same stem (x.pgen: x.pvar, x.psam), or a prefix's files
        stem = p.name[: -len(p.suffix)] if p.exists() and p.suffix else p.name
        cands = sorted({*([p] if p.exists() else []), *p.parent.glob(glob_escape(stem) + ".*")})
        for fp2 in cands:
            if fp2.is_file():
                st = fp2.stat()
                entries.append(f"{fp2.name}:{st.st_size}:{st.st_mtime_ns}")
    entries.sort()
    h = hashlib.sha256(str(p.resolve()).encode())
    for e in entries:
        h.update(e.encode())
    return h.hexdigest()


@dataclass(frozen=True)
class TransBlockStore:
    """Folder (or object prefix) of completed block results of one trans run.

    Picklable (a path or URL and a hash); use :meth:`open` to create or resume it. On an
    object store a block object appears only when its upload completes, which is the same
    guarantee as the local temporary-file-and-rename.
    """

    path: str
    fingerprint: str

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, fingerprint: str, manifest: dict[str, Any]) -> TransBlockStore:
        """Create the folder, or resume it when its manifest has the same fingerprint.

        A folder with another fingerprint (other inputs or parameters) is emptied first.
        """
        path = absolute(path)  # workers may run in another directory
        fs, fp = filesystem(path)
        if is_url(path):
            check_bucket(path)
        mpath = join(path, "manifest.json")
        if fs.exists(fp):
            old = None
            with contextlib.suppress(OSError, ValueError):
                with open_file(mpath, "rb") as f:
                    old = json.loads(f.read())
            ours = isinstance(old, dict) and old.get("format") == _FORMAT
            if fs.ls(fp) and not ours:  # never remove a folder dqtl did not create
                raise InputError(
                    f"{path} exists and is not a dqtl trans block store (no manifest.json of "
                    "dqtl): move it away or choose another output prefix")
            if not isinstance(old, dict) or old.get("fingerprint") != fingerprint:
                if fs.ls(fp):
                    log.warning(
                        "%s holds blocks of a run with other inputs or parameters; they are "
                        "discarded and the scan starts afresh", path,
                    )
                fs.rm(fp, recursive=True)
        if not is_url(path):
            os.makedirs(path, exist_ok=True)
        if not exists(mpath):
            body = json.dumps({"format": _FORMAT, "fingerprint": fingerprint, **manifest},
                              indent=1, default=_json_default)
            if is_url(path):
                with open_file(mpath, "wb") as f:
                    f.write(body.encode())
            else:
                with atomic_path(mpath) as tmp:
                    tmp.write_text(body)
        return cls(path=path, fingerprint=fingerprint)

    def block_path(self, key: tuple[int, int]) -> str:
        return join(self.path, f"b{int(key[0]):07d}_{int(key[1]):04d}.npz")

    def has(self, key: tuple[int, int]) -> bool:
        """Whether the block ``key`` is recorded."""
        return exists(self.block_path(key))

    def completed(self) -> set[tuple[int, int]]:
        """Keys of the blocks recorded and readable. A block file that cannot be read (cut short
        by a crash or a full disk, or damaged) is removed (it is this store's own) and logged:
        the resumed run computes it again."""
        out = set()
        fs, fp = filesystem(self.path)
        if fs.exists(fp):
            for name in fs.ls(fp, detail=False):
                m = _BLOCK_RE.match(basename(str(name)))
                if not m:
                    continue
                key = (int(m.group(1)), int(m.group(2)))
                try:
                    self.read(key, fields=())
                except InputError:
                    raise
                except Exception as exc:  # noqa: BLE001  (zip, npz or I/O errors: a damaged block)
                    log.warning("trans block store: %s is unreadable (%s); computing it again",
                                basename(str(name)), type(exc).__name__)
                    with contextlib.suppress(FileNotFoundError):
                        fs.rm(str(name))
                    continue
                out.add(key)
        return out

    def write(self, key: tuple[int, int], arrays: dict[str, Any]) -> None:
        """Record one block atomically (temporary file in the folder, then rename)."""
        final = self.block_path(key)
        payload: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
        payload["fingerprint"] = np.array(self.fingerprint)
        if is_url(final):
            buf = io.BytesIO()
            np.savez(buf, **payload)
            with open_file(final, "wb") as fh:
                fh.write(buf.getvalue())
            return
        fd, tmp = tempfile.mkstemp(prefix=f".{basename(final)}.", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def read(self, key: tuple[int, int], fields: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Arrays of one recorded block (all, or only ``fields``)."""
        path = self.block_path(key)
        with open_file(path, "rb") as fh:
            data = fh.read() if is_url(path) else None
        with np.load(io.BytesIO(data) if data is not None else path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != self.fingerprint:
                raise InputError(
                    f"{path} belongs to another run (fingerprint mismatch); delete {self.path} "
                    f"and run again"
                )
            names = z.files if fields is None else [f for f in fields if f in z.files]
            return {k: z[k] for k in names if k != "fingerprint"}

    def remove(self) -> None:
        fs, fp = filesystem(self.path)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(fp, recursive=True)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


# ----------------------------------------------------------------------------------------------
# final files
# ----------------------------------------------------------------------------------------------
class _ZarrColumns:
    """Write 1-D columns of known total length into a Zarr group, one full chunk at a time."""

    def __init__(self, path: str, columns: dict[str, Any], n: int, chunk: int, attrs: dict[str, Any]) -> None:
        import zarr

        self.group = zarr.open_group(path, mode="w", zarr_format=3,
                                     storage_options=storage_options(path) or None)
        self.group.attrs.update(json.loads(json.dumps(attrs, default=_json_default)))
        self.chunk = max(1, min(chunk, max(n, 1)))
        self.arrays = {}
        for name, dtype in columns.items():
            kw: dict[str, Any] = {"fill_value": np.nan} if np.dtype(dtype).kind == "f" else {}
            self.arrays[name] = self.group.create_array(
                name, shape=(n,), chunks=(self.chunk,), dtype=str if dtype is str else dtype,
                dimension_names=["pairs"], **kw,
            )
        self.buf: dict[str, list[np.ndarray]] = {k: [] for k in columns}
        self.buffered = 0
        self.offset = 0

    def append(self, cols: dict[str, np.ndarray]) -> None:
        n = len(next(iter(cols.values())))
        for k, v in cols.items():
            self.buf[k].append(np.asarray(v))
        self.buffered += n
        while self.buffered >= self.chunk:
            self._flush(self.chunk)

    def _flush(self, n: int) -> None:
        if n == 0:
            return
        for k, parts in self.buf.items():
            cat = np.concatenate(parts) if len(parts) > 1 else parts[0]
            self.arrays[k][self.offset : self.offset + n] = cat[:n]
            self.buf[k] = [cat[n:]] if cat.size > n else []
        self.offset += n
        self.buffered -= n

    def close(self) -> None:
        self._flush(self.buffered)


def write_trans_tables(
    output_prefix: str | os.PathLike[str],
    rows: Iterable[dict[str, np.ndarray]],
    *,
    columns: Sequence[str],
    n_rows: int,
    phenotype_id: np.ndarray,
    n_tests: np.ndarray,
    n_hits: np.ndarray,
    summary: dict[str, Any],
    formats: Iterable[str] = ("parquet",),
    zarr_chunk: int = 1 << 20,
    figures: dict[str, Any] | None = None,
) -> list[str]:
    """Write the final trans files from a stream of row batches (see the module docstring).

    Parameters
    ----------
    rows
        Dicts of result arrays (dqtl names, :data:`TRANS_FILE_COLUMNS`) in output order, one per
        variant block; memory holds one at a time.
    columns
        The dqtl names to write, in order.
    n_rows
        Total rows (the Zarr arrays are sized up front).
    phenotype_id, n_tests, n_hits
        (phenotypes,) the per-phenotype table.
    summary
        Written as ``trans_summary.json`` (with ``files`` added).

    Returns
    -------
    list of str
        The files written, all published together.
    """
    formats = list(dict.fromkeys(formats))
    bad = [f for f in formats if f not in ("parquet", "zarr")]
    if bad or not formats:
        raise InputError(f"output formats: expected parquet and/or zarr, got {formats}")
    paths = trans_output_paths(output_prefix)
    file_cols: dict[str, Any] = {TRANS_FILE_COLUMNS[c]: (str if c in ("variant_id", "phenotype_id")
                                                         else np.float64) for c in columns}
    schema = pa.schema([(k, pa.string() if t is str else pa.from_numpy_dtype(np.dtype(t)))
                        for k, t in file_cols.items()])
    written: list[str] = []
    with Publication() as pub:
        writer = None
        zw = None
        out = None
        if "parquet" in formats:
            out = contextlib.ExitStack()
            fh = out.enter_context(open_file(pub.stage(paths["pairs"]), "wb"))
            writer = pq.ParquetWriter(fh, schema, **parquet_options(schema))
            written.append(paths["pairs"])
        if "zarr" in formats:
            zw = _ZarrColumns(pub.stage(paths["zarr"]), file_cols, int(n_rows), zarr_chunk, summary)
            written.append(paths["zarr"])
        n = 0
        for batch in rows:
            cols = {TRANS_FILE_COLUMNS[c]: batch[c] for c in columns}
            if writer is not None:
                writer.write_table(pa.table({k: pa.array(v) for k, v in cols.items()}, schema=schema))
            if zw is not None:
                zw.append(cols)
            n += len(batch["p_value"])
        if writer is not None and out is not None:
            if n == 0:
                writer.write_table(schema.empty_table())
            writer.close()
            out.close()
        if zw is not None:
            zw.close()
        ptab = pa.table({"phenotype_id": pa.array(np.asarray(phenotype_id).astype(str)),
                         "n_tests": n_tests, "n_hits": n_hits})
        with open_file(pub.stage(paths["phenotypes"]), "wb") as fh:
            pq.write_table(ptab, fh, **parquet_options(ptab.schema))
        written.append(paths["phenotypes"])
        for suffix, ax in (figures or {}).items():
            from dqtl.plot import save_figure

            save_figure(ax, pub.stage(f"{output_prefix}.{suffix}"))
            written.append(f"{output_prefix}.{suffix}")
        files = [*written, paths["summary"]]
        with open_file(pub.stage(paths["summary"]), "wb") as fh:
            fh.write(json.dumps({**summary, "files": files}, indent=1, default=_json_default).encode())
    return files
