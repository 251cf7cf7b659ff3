"""Loaders for the reference fixtures under tests/reference (R qvalue, tensorQTL)."""

from __future__ import annotations

import json
import pathlib

import numpy as np

REFERENCE = pathlib.Path(__file__).resolve().parents[1] / "reference"
QVALUE_CASES = [
    "uniform_n10000",
    "mixture_80unif_20beta_n10000",
    "mixture_80unif_20beta_n10000_bootstrap",
    "small_n100",
]


def read_tsv(path: pathlib.Path) -> dict[str, np.ndarray]:
    """Read a reference TSV (header row, %.17g doubles, NA = missing) into float64 columns."""
    with open(path) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        rows = [line.rstrip("\n").split("\t") for line in fh if line.strip()]
    cols = {}
    for j, name in enumerate(header):
        vals = [r[j] for r in rows]
        try:
            cols[name] = np.array([np.nan if v == "NA" else float(v) for v in vals])
        except ValueError:
            cols[name] = np.array(vals)
    return cols


def qvalue_case(name: str) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(case.json, expected.tsv columns, pi0_lambda.tsv columns) of one R qvalue case."""
    base = REFERENCE / "qvalue" / name
    meta = json.loads((base / "case.json").read_text())
    return meta, read_tsv(base / "expected.tsv"), read_tsv(base / "pi0_lambda.tsv")
