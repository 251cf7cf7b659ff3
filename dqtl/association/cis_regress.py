"""Phenotypes with their own cis signals regressed out, before a trans scan (eQTLGen's approach).

Each phenotype with cis signals (rows of a ``cis_independent_qtl.txt.gz``, or the eGenes of a
``cis_qtl.txt.gz`` at ``qval <= fdr``) is replaced by ``y - G_s beta`` where ``beta`` are the
coefficients of its signal genotypes ``G_s`` (mean-imputed ALT dosages) in the joint regression
``y ~ C + G_s`` on its observed samples. The trans scan then residualizes on ``C`` as usual, which
gives exactly the residual of ``y`` on ``[C, G_s]`` (Frisch-Waugh-Lovell), so a trans hit is not
a cis signal seen through LD or shared by a neighbouring regulator.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from dqtl.errors import InputError
from dqtl.io.variant_ids import variant_rows
from dqtl.kernels.genotypes import decode_block
from dqtl.kernels.linalg import Residualizer
from dqtl.study import plan_study

__all__ = ["cis_signals", "regress_cis", "read_signals"]

log = logging.getLogger(__name__)


def read_signals(path: str) -> pd.DataFrame:
    """A ``cis_qtl.txt.gz`` or ``cis_independent_qtl.txt.gz`` (dqtl's or tensorQTL's) as a table."""
    from dqtl.io.fs import absolute, storage_options

    try:
        return pd.read_csv(absolute(path), sep="\t", storage_options=storage_options(path) or None)
    except FileNotFoundError:
        raise FileNotFoundError(f"--regress-cis {path} does not exist") from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"--regress-cis: cannot read {path}: {' '.join(str(exc).split())}") from None


def cis_signals(table: Any, *, fdr: float = 0.05) -> pd.DataFrame:
    """``(phenotype_id, variant_id)`` of the cis signals in a ``cis_independent_qtl`` table (every
    row) or a ``cis_qtl`` table (eGenes at ``qval <= fdr``)."""
    df = table if isinstance(table, pd.DataFrame) else pd.DataFrame(
        {k: table[k].values for k in table.data_vars})
    df = df.rename(columns={"q_value": "qval"})
    for c in ("phenotype_id", "variant_id"):
        if c not in df:
            raise InputError(f"--regress-cis: no {c} column; give a cis_qtl.txt.gz or "
                             "cis_independent_qtl.txt.gz")
    if "rank" not in df and "qval" in df:
        df = df[df["qval"].astype(float) <= fdr]
    return df[["phenotype_id", "variant_id"]].astype(str).drop_duplicates().reset_index(drop=True)


def regress_cis(genotypes: xr.Dataset, phenotypes: xr.Dataset, covariates: xr.Dataset | None,
                signals: pd.DataFrame, *, allow_sample_intersection: bool = False) -> xr.Dataset:
    """The phenotypes with each one's cis signals regressed out (see the module docstring)."""
    plan = plan_study(genotypes, phenotypes, covariates, window=0, cis=False,
                      allow_sample_intersection=allow_sample_intersection)
    rows = variant_rows(plan.genotypes, signals["variant_id"], source="--regress-cis")
    if (rows < 0).any():
        bad = signals["variant_id"][rows < 0].iloc[0]
        raise InputError(f"--regress-cis: variant {bad} is not in the genotypes ({int((rows < 0).sum())} "
                         "signals); give the cis results of these genotypes")
    pid = np.asarray(phenotypes["phenotype_id"].values).astype(str)
    prow = pd.Index(pid).get_indexer(signals["phenotype_id"])
    unknown = prow < 0
    if unknown.all():
        raise InputError("--regress-cis: none of its phenotypes is in the phenotype file")
    if unknown.any():
        log.info("--regress-cis: %d signals of phenotypes not in this run ignored", int(unknown.sum()))
    sig = signals[~unknown].assign(vrow=rows[~unknown], prow=prow[~unknown])
    uniq = np.unique(sig["vrow"].to_numpy())
    block = np.asarray(plan.genotype_array()[uniq].compute())
    G = decode_block(block, plan.genotype_sample_index, ploidy=plan.ploidy).G  # (variants, samples)
    at = {int(v): k for k, v in enumerate(uniq)}
    samples = np.asarray(phenotypes["sample_id"].values).astype(str)
    col = pd.Index(samples).get_indexer(np.asarray(plan.sample_id).astype(str))
    values = np.array(phenotypes["phenotype_values"].values, dtype=np.float64, copy=True)
    C = plan.covariates
    n_done = 0
    for p, grp in sig.groupby("prow", sort=False):
        y = values[int(p), col]
        obs = np.isfinite(y)
        Gs = G[[at[int(v)] for v in grp["vrow"]]][:, obs]
        basis = Residualizer.from_covariates(None if C is None else C[obs], n_samples=int(obs.sum()),
                                             where=f"--regress-cis covariates of {pid[int(p)]}")
        Gr = basis.transform(Gs)
        yr = basis.transform(y[obs][None, :])[0]
        beta = np.linalg.lstsq(Gr.T, yr, rcond=None)[0]
        y_new = y.copy()
        y_new[obs] = y[obs] - Gs.T @ beta
        values[int(p), col] = y_new
        n_done += 1
    out = phenotypes.copy()
    out["phenotype_values"] = (phenotypes["phenotype_values"].dims, values)
    log.info("--regress-cis: %d phenotypes residualized on %d cis signals", n_done, len(sig))
    return out
