"""Sample alignment by ID across inputs: the one place samples are matched.

The phenotype (or other reference) samples define the analysis and its sample order; every other
input is indexed into that order. A mismatch is an error naming the input and a few missing IDs,
or, when the user allows it, a logged intersection; never a silent inner join.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from dqtl.errors import InputError

__all__ = ["check_unique", "align_samples", "index_samples"]

log = logging.getLogger(__name__)


def check_unique(ids: Sequence[str] | np.ndarray, *, what: str, where: str) -> None:
    """Raise :class:`InputError` if ``ids`` has duplicates, naming a few of them.

    >>> check_unique(["a", "b", "a"], what="sample IDs", where="covariates")
    Traceback (most recent call last):
    ...
    dqtl.errors.InputError: covariates: 1 duplicated sample IDs (e.g. a); sample IDs must be unique: rename or remove the duplicates
    """
    s = pd.Index(np.asarray(ids, dtype=object))
    if not s.is_unique:
        dup = s[s.duplicated()].unique()[:5].tolist()
        raise InputError(
            f"{where}: {len(s[s.duplicated()])} duplicated {what} (e.g. {', '.join(map(str, dup))}); "
            f"{what} must be unique: rename or remove the duplicates"
        )


def _as_str(ids: Sequence[str] | np.ndarray) -> np.ndarray:
    v = np.asarray(ids)
    if v.dtype.kind in "US":
        return v.astype(str)
    return np.array([x.decode() if isinstance(x, bytes) else str(x) for x in v.tolist()], dtype=str)


def index_samples(
    wanted: Sequence[str] | np.ndarray,
    available: Sequence[str] | np.ndarray,
    *,
    where: str,
    reference: str = "expression samples",
    problem: str = "are missing",
    fix: str = "give values for every sample",
) -> np.ndarray:
    """Positions of ``wanted`` sample IDs in ``available``; every one must be there.

    >>> index_samples(["b", "a"], ["a", "b", "c"], where="covariates").tolist()
    [1, 0]
    """
    w, a = _as_str(wanted), _as_str(available)
    check_unique(a, what="sample IDs", where=where)
    pos = pd.Index(a).get_indexer(w)
    if (pos < 0).any():
        miss = w[pos < 0]
        raise InputError(
            f"{where}: {miss.size} {reference} {problem} (e.g. {', '.join(miss[:3])}); {fix}"
        )
    return pos.astype(np.int64)


def align_samples(
    phenotype_samples: Sequence[str] | np.ndarray,
    genotype_samples: Sequence[str] | np.ndarray,
    covariate_samples: Sequence[str] | np.ndarray | None = None,
    *,
    intersect: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Align samples by ID across phenotypes, genotypes and covariates.

    The phenotype samples define the analysis (in their order). Extra genotype samples are
    ignored with a log line. Phenotype samples missing from the genotypes or covariates are an
    error unless ``intersect=True``, which keeps the common samples and logs how many were dropped.

    Returns
    -------
    (phenotype_index, genotype_index, covariate_index)
        Integer index arrays selecting the analysis samples, in the same order, from each input.

    >>> p, g, c = align_samples(["s2", "s1"], ["s1", "s2", "s3"], ["s1", "s2"])
    >>> p.tolist(), g.tolist(), c.tolist()
    ([0, 1], [1, 0], [1, 0])
    """
    ph = _as_str(phenotype_samples)
    ge = _as_str(genotype_samples)
    check_unique(ph, what="sample IDs", where="phenotypes")
    check_unique(ge, what="sample IDs", where="genotypes")
    keep = np.ones(len(ph), dtype=bool)
    problems: list[str] = []
    gpos = pd.Index(ge).get_indexer(ph)
    if (gpos < 0).any():
        miss = ph[gpos < 0]
        problems.append(f"{len(miss)} phenotype samples are not in the genotypes (e.g. {', '.join(miss[:3])})")
        keep &= gpos >= 0
    cpos = None
    if covariate_samples is not None:
        co = _as_str(covariate_samples)
        check_unique(co, what="sample IDs", where="covariates")
        cpos = pd.Index(co).get_indexer(ph)
        if (cpos < 0).any():
            miss = ph[cpos < 0]
            problems.append(f"{len(miss)} phenotype samples are not in the covariates (e.g. {', '.join(miss[:3])})")
            keep &= cpos >= 0
    if problems:
        if not intersect:
            raise InputError(
                "sample IDs do not match: " + "; ".join(problems)
                + ". Check that the files describe the same samples with the same IDs, or pass "
                "--allow-sample-intersection to analyse the common samples only"
            )
        log.warning("analysing the %d common samples only: %s", int(keep.sum()), "; ".join(problems))
    if keep.sum() == 0:
        raise InputError("no sample ID is shared by phenotypes and genotypes (and covariates)")
    extra = len(ge) - int(keep.sum())
    if extra > 0:
        log.info("%d genotype samples have no phenotype and are not used", extra)
    pidx = np.nonzero(keep)[0]
    return pidx, gpos[keep], (cpos[keep] if cpos is not None else None)
