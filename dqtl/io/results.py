"""Result writers and the one table mapping dqtl result names to the columns users parse.

| dqtl (Dataset)  | tensorQTL / FastQTL file column |
|-----------------|---------------------------------|
| p_value         | pval_nominal                    |
| beta            | slope                           |
| beta_se         | slope_se                        |
| t_value         | (not written by tensorQTL)      |
| q_value         | qval                            |

Writers hold no statistics; each output appears atomically (temporary file, then rename).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import xarray as xr

from dqtl.io.atomic import atomic_path
from dqtl.io.fs import absolute, filesystem, is_url, open_file

__all__ = [
    "TENSORQTL_COLUMNS",
    "GENE_COLUMNS",
    "to_tensorqtl_cis",
    "from_tensorqtl_cis",
    "CIS_NOMINAL_COLUMNS",
    "CIS_PAIRS_SCHEMA",
    "to_tensorqtl_pairs",
    "cis_pairs_table",
    "parquet_options",
    "write_parquet",
    "write_table",
    "concat_parquet",
    "CisPairsPart",
]

#: dqtl result variable -> tensorQTL column name
TENSORQTL_COLUMNS: dict[str, str] = {
    "p_value": "pval_nominal",
    "beta": "slope",
    "beta_se": "slope_se",
    "q_value": "qval",
}

#: dqtl gene-level result name -> tensorQTL ``cis_qtl.txt.gz`` / ``cis_independent_qtl.txt.gz``
#: column (names not listed are the same in both)
GENE_COLUMNS: dict[str, str] = {
    "n_variants": "num_var",
    "p_value_true_df": "pval_true_df",
    "p_value": "pval_nominal",
    "beta": "slope",
    "beta_se": "slope_se",
    "p_value_perm": "pval_perm",
    "p_value_beta": "pval_beta",
    "q_value": "qval",
    "p_value_nominal_threshold": "pval_nominal_threshold",
}


#: tensorQTL's gene-level columns in its order (``cis_qtl.txt.gz``; ``rank`` ends
#: ``cis_independent_qtl.txt.gz``); dqtl's own columns follow them
TENSORQTL_GENE_ORDER = (
    "phenotype_id", "num_var", "beta_shape1", "beta_shape2", "true_df", "pval_true_df",
    "variant_id", "start_distance", "end_distance", "ma_samples", "ma_count", "af",
    "pval_nominal", "slope", "slope_se", "pval_perm", "pval_beta", "group_id", "group_size",
    "qval", "pval_nominal_threshold", "rank",
)


def to_tensorqtl_cis(ds: xr.Dataset | pd.DataFrame) -> pd.DataFrame:
    """A gene-level result (permutations, independent signals) with tensorQTL's columns, in its
    order, then dqtl's own (``n_permutations``, ``beta_converged``, ...)."""
    df = ds if isinstance(ds, pd.DataFrame) else pd.DataFrame({k: ds[k].values for k in ds.data_vars})
    out = df.rename(columns=GENE_COLUMNS)
    first = [c for c in TENSORQTL_GENE_ORDER if c in out.columns]
    out = out[first + [c for c in out.columns if c not in first]]
    out.attrs.update(getattr(ds, "attrs", {}))
    return out


def from_tensorqtl_cis(df: pd.DataFrame) -> xr.Dataset:
    """A ``cis_qtl.txt.gz`` table (dqtl's or tensorQTL's) as a gene-level Dataset."""
    back = {v: k for k, v in GENE_COLUMNS.items()}
    named = df.rename(columns=back)
    return xr.Dataset({c: ("phenotypes", named[c].to_numpy()) for c in named.columns})


#: columns of tensorQTL's ``cis_qtl_pairs.<chr>.parquet``, in its order
CIS_NOMINAL_COLUMNS = [
    "phenotype_id",
    "variant_id",
    "start_distance",
    "af",
    "ma_samples",
    "ma_count",
    "pval_nominal",
    "slope",
    "slope_se",
]


def to_tensorqtl_pairs(ds: xr.Dataset, *, with_end_distance: bool = False) -> pd.DataFrame:
    """pandas view of a cis pairs Dataset with tensorQTL's columns and dtypes."""
    cols = {name: ds[name].values for name in ds.data_vars}
    df = pd.DataFrame(cols).rename(columns=TENSORQTL_COLUMNS)
    out = list(CIS_NOMINAL_COLUMNS)
    if with_end_distance:
        out.insert(3, "end_distance")
    df = df[out]
    df["phenotype_id"] = df["phenotype_id"].astype(str)
    df["variant_id"] = df["variant_id"].astype(str)
    df["start_distance"] = df["start_distance"].astype("int32")
    return df.reset_index(drop=True)


#: arrow schema of ``cis_qtl_pairs.<chr>.parquet`` (tensorQTL's columns and dtypes)
CIS_PAIRS_SCHEMA = pa.schema([
    ("phenotype_id", pa.large_string()),
    ("variant_id", pa.large_string()),
    ("start_distance", pa.int32()),
    ("af", pa.float64()),
    ("ma_samples", pa.int32()),
    ("ma_count", pa.int32()),
    ("pval_nominal", pa.float64()),
    ("slope", pa.float64()),
    ("slope_se", pa.float64()),
])


def interaction_pairs_schema(stat_columns: Sequence[str]) -> pa.Schema:
    """The parquet schema of interaction pairs: tensorQTL's leading columns, then its statistic
    columns (float64)."""
    return pa.schema([f for f in CIS_PAIRS_SCHEMA if f.name in (
        "phenotype_id", "variant_id", "start_distance", "af", "ma_samples", "ma_count")]
        + [(c, pa.float64()) for c in stat_columns])


def cis_pairs_table(cols: Mapping[str, np.ndarray]) -> pa.Table:
    """Arrow table with tensorQTL's cis pair columns from dqtl's result arrays (dict or Dataset)."""
    out = {}
    for field in CIS_PAIRS_SCHEMA:
        name = {v: k for k, v in TENSORQTL_COLUMNS.items()}.get(field.name, field.name)
        out[field.name] = arrow_column(cols[name], field.type)
    return pa.table(out, schema=CIS_PAIRS_SCHEMA)


def arrow_column(values: Any, type: pa.DataType) -> pa.Array:
    """An arrow array of ``type`` from a numpy array (strings converted) or an arrow array."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.cast(type) if values.type != type else values
    v = np.asarray(values)
    if pa.types.is_large_string(type) or pa.types.is_string(type):
        v = v.astype(str)
    return pa.array(v, type=type)


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """Writer options of every parquet file dqtl writes: zstd, dictionary encoding for the string
    columns only (IDs repeat; a float column's values do not, and building its dictionary until the
    page limit forces the fallback doubled the write time of cis pairs and made files 35% larger)."""
    strings = [f.name for f in schema
               if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
               or pa.types.is_dictionary(f.type)]
    return {"compression": "zstd", "use_dictionary": strings}


def write_parquet(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``df`` to parquet atomically (zstd compressed, no index)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        table = pa.Table.from_pandas(df, preserve_index=False)
        pq.write_table(table, tmp, **parquet_options(table.schema))
    return path


def write_table(table: pa.Table, path: str) -> int:
    """Write an arrow table to ``path`` (local or URL) as parquet; returns the rows written.

    Used by tasks to write their part where they run; the caller publishes atomically.
    """
    fs, p = filesystem(path)
    if not is_url(absolute(path)):
        os.makedirs(os.path.dirname(p), exist_ok=True)
    with fs.open(p, "wb") as f:
        pq.write_table(table, f, **parquet_options(table.schema))
    return table.num_rows


def concat_parquet(parts: Sequence[str], path: str, schema: pa.Schema, *,
                   remove_parts: bool = False, on_batch: Any = None) -> int:
    """Concatenate part files (Arrow IPC, as :class:`CisPairsPart` writes them), in order, into
    one parquet file, one row group per record batch.

    Memory holds one record batch at a time. ``remove_parts`` deletes each part once copied;
    ``on_batch(batch)`` sees every non-empty record batch as it is copied. Returns the number of
    rows written.
    """
    fs, p = filesystem(path)
    n = 0
    with fs.open(p, "wb") as out, pq.ParquetWriter(out, schema, **parquet_options(schema)) as writer:
        for part in parts:
            with open_file(part, "rb") as f, pa.ipc.open_file(f) as reader:
                for i in range(reader.num_record_batches):
                    batch = reader.get_batch(i)
                    if batch.num_rows:
                        writer.write_table(pa.Table.from_batches([batch]).cast(schema))
                        n += batch.num_rows
                        if on_batch is not None:
                            on_batch(batch)
            if remove_parts:
                pfs, pp = filesystem(part)
                pfs.rm(pp)
        if n == 0:
            writer.write_table(schema.empty_table())
    return n


class CisPairsPart:
    """A part of cis pairs written where a task runs: call it with each slice of pairs (dqtl's
    names, or the ``schema``'s names when one is given), then ``close()``. Picklable before first
    use (a path and the schema); the file (Arrow IPC, lz4, one record batch per slice: cheap to
    write, read once by :func:`concat_parquet`) is opened on the first slice."""

    def __init__(self, path: str, schema: pa.Schema | None = None) -> None:
        self.path = path
        self.schema = schema
        self._fh: Any = None
        self._writer: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "schema": self.schema}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state.get("schema"))  # type: ignore[misc]

    def _table(self, pairs: Mapping[str, np.ndarray]) -> pa.Table:
        if self.schema is None:
            return cis_pairs_table(pairs)
        return pa.table({f.name: arrow_column(pairs[f.name], f.type) for f in self.schema},
                        schema=self.schema)

    def __call__(self, pairs: Mapping[str, np.ndarray]) -> None:
        if self._writer is None:
            fs, p = filesystem(self.path)  # the folder is the run's (never re-created here)
            self._fh = fs.open(p, "wb")
            self._writer = pa.ipc.new_file(
                self._fh, self.schema or CIS_PAIRS_SCHEMA,
                options=pa.ipc.IpcWriteOptions(compression="lz4"))
        self._writer.write_table(self._table(pairs))

    def close(self) -> None:
        if self._writer is None:
            if self.schema is not None:
                self(self.schema.empty_table().to_pydict())
            else:
                self(dict.fromkeys(("phenotype_id", "variant_id"), np.zeros(0, dtype=str))
                     | {k: np.zeros(0) for k in ("start_distance", "af", "ma_samples", "ma_count",
                                                  "p_value", "beta", "beta_se")})
        self._writer.close()
        self._fh.close()
