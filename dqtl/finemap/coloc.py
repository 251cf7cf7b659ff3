"""Colocalization of two traits by approximate Bayes factors (coloc's ``coloc.abf``).

The same computation as coloc 5.2.3 (Giambartolomei et al. 2014, PLoS Genet 10:e1004383,
DOI 10.1371/journal.pgen.1004383; Wakefield 2009, DOI 10.1002/gepi.20359):

- per SNP and dataset, Wakefield's log ABF: with ``beta``/``varbeta``, ``z = beta / sqrt(varbeta)``
  and ``V = varbeta``; with p-values and MAF, ``z = Phi^-1(1 - p/2)`` and
  ``V = 1 / (2 N f (1 - f))`` (quantitative) or ``1 / (2 N f (1 - f) s (1 - s))`` (case-control).
  Prior sd ``W = 0.15 sdY`` (quantitative; ``sdY = 1`` for p-value input) or ``0.2``
  (case-control); ``r = W^2 / (W^2 + V)``, ``lABF = (log(1 - r) + r z^2) / 2``;
- ``sdY``, when a quantitative dataset gives ``beta``/``varbeta`` without it, is estimated as
  coloc does: the square root of the no-intercept regression slope of ``2 N f (1 - f)`` on
  ``1 / varbeta``;
- the datasets are joined on ``snp`` (and ``position`` when both have it), sorted by ``snp`` like
  R's ``merge``; priors are adjusted as coloc does (``p * nsnps >= 1`` gives ``1 / (nsnps + 1)``);
- ``lH0 = 0``, ``lH1 = log p1 + logsum(l1)``, ``lH2 = log p2 + logsum(l2)``,
  ``lH3 = log p1 + log p2 + logdiff(logsum(l1) + logsum(l2), logsum(l1 + l2))``,
  ``lH4 = log p12 + logsum(l1 + l2)``; posteriors by softmax; ``SNP.PP.H4`` = softmax(l1 + l2).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from dqtl.errors import InputError

__all__ = ["ColocResult", "ColocSusieResult", "coloc_abf", "coloc_bf_bf", "coloc_susie",
           "combine_abf", "approx_bf_estimates", "approx_bf_p", "logsum", "logdiff"]

log = logging.getLogger(__name__)


def logsum(x: np.ndarray) -> float:
    """``log(sum(exp(x)))`` computed stably (coloc's ``logsum``)."""
    x = np.asarray(x, dtype=np.float64)
    m = float(np.max(x))
    return m + float(np.log(np.sum(np.exp(x - m))))


def logdiff(x: float, y: float) -> float:
    """``log(exp(x) - exp(y))`` computed stably (coloc's ``logdiff``)."""
    m = max(x, y)
    return m + float(np.log(np.exp(x - m) - np.exp(y - m)))


def approx_bf_estimates(z: np.ndarray, V: np.ndarray, *, type: str, sdY: float = 1.0
                        ) -> pd.DataFrame:
    """Wakefield log ABF from z-scores and variances of the effect estimates.

    >>> df = approx_bf_estimates(np.array([3.0]), np.array([0.01]), type="quant")
    >>> round(float(df["lABF"].iloc[0]), 6)
    2.526057
    """
    sd_prior = 0.15 * sdY if type == "quant" else 0.2
    r = sd_prior**2 / (sd_prior**2 + V)
    return pd.DataFrame({"V": V, "z": z, "r": r, "lABF": 0.5 * (np.log(1.0 - r) + r * z * z)})


def approx_bf_p(p: np.ndarray, f: np.ndarray, *, type: str, N: float, s: float | None = None
                ) -> pd.DataFrame:
    """Wakefield log ABF from p-values and minor allele frequencies."""
    if type == "quant":
        sd_prior = 0.15
        V = 1.0 / (2.0 * N * f * (1.0 - f))
    else:
        sd_prior = 0.2
        V = 1.0 / (2.0 * N * f * (1.0 - f) * s * (1.0 - s))  # type: ignore[operator]
    z = stats.norm.isf(0.5 * p)
    r = sd_prior**2 / (sd_prior**2 + V)
    return pd.DataFrame({"pvalues": p, "MAF": f, "N": N, "V": V, "z": z, "r": r,
                         "lABF": 0.5 * (np.log(1.0 - r) + r * z * z)})


def _sdY_est(varbeta: np.ndarray, maf: np.ndarray, n: float) -> float:
    oneover = 1.0 / varbeta
    nvx = 2.0 * n * maf * (1.0 - maf)
    cf = float(np.dot(oneover, nvx) / np.dot(oneover, oneover))  # lm(nvx ~ oneover - 1)
    if cf < 0:
        raise InputError("coloc: estimated sdY is negative: give sdY, or check varbeta and MAF")
    return float(np.sqrt(cf))


def _check(d: Mapping[str, Any], name: str) -> dict[str, Any]:
    d = dict(d)
    t = d.get("type")
    if t not in ("quant", "cc"):
        raise InputError(f"coloc {name}: type must be 'quant' or 'cc', found {t!r}")
    if "snp" not in d:
        raise InputError(f"coloc {name}: 'snp' (SNP identifiers) is required")
    snp = np.asarray(d["snp"]).astype(str)
    if len(set(snp.tolist())) != snp.size:
        raise InputError(f"coloc {name}: duplicated snp identifiers; each SNP must appear once")
    has_beta = "beta" in d and "varbeta" in d
    if not has_beta and "pvalues" not in d:
        raise InputError(f"coloc {name}: give beta and varbeta, or pvalues and MAF")
    for key in ("beta", "varbeta", "pvalues", "MAF", "position"):
        if key in d and np.asarray(d[key]).shape != snp.shape:
            raise InputError(f"coloc {name}: {key} has {np.asarray(d[key]).size} values but snp "
                             f"has {snp.size}")
    if has_beta:
        vb = np.asarray(d["varbeta"], dtype=np.float64)
        if not (np.isfinite(vb).all() and (vb > 0).all()):
            raise InputError(f"coloc {name}: varbeta must be finite and > 0")
    else:
        p = np.asarray(d["pvalues"], dtype=np.float64)
        if not ((p > 0) & (p <= 1)).all():
            raise InputError(f"coloc {name}: pvalues must be in (0, 1]")
        if "MAF" not in d:
            raise InputError(f"coloc {name}: p-value input needs MAF")
        if "N" not in d:
            raise InputError(f"coloc {name}: p-value input needs N")
        if t == "cc" and "s" not in d:
            raise InputError(f"coloc {name}: case-control p-value input needs s (case fraction)")
    d["snp"] = snp
    return d


def _process(d: dict[str, Any]) -> pd.DataFrame:
    out = pd.DataFrame({"snp": d["snp"]})
    if "position" in d:
        out["position"] = np.asarray(d["position"])
    if "beta" in d and "varbeta" in d:
        beta = np.asarray(d["beta"], dtype=np.float64)
        vb = np.asarray(d["varbeta"], dtype=np.float64)
        sdY = d.get("sdY")
        if d["type"] == "quant" and sdY is None:
            if "MAF" not in d or "N" not in d:
                raise InputError("coloc: a quant dataset without sdY needs MAF and N to estimate it")
            sdY = _sdY_est(vb, np.asarray(d["MAF"], dtype=np.float64), float(d["N"]))
            log.info("coloc: sdY estimated as %.4g", sdY)
        bf = approx_bf_estimates(beta / np.sqrt(vb), vb, type=d["type"],
                                 sdY=1.0 if sdY is None else float(sdY))
    else:
        bf = approx_bf_p(np.asarray(d["pvalues"], dtype=np.float64),
                         np.asarray(d["MAF"], dtype=np.float64), type=d["type"], N=float(d["N"]),
                         s=d.get("s"))
    return pd.concat([out, bf], axis=1)


def _adjust_prior(p: float, nsnps: int, suffix: str) -> float:
    if nsnps * p >= 1:
        log.warning("coloc: p%s * nsnps >= 1, setting p%s = 1/(nsnps + 1)", suffix, suffix)
        return 1.0 / (nsnps + 1)
    return p


@dataclass
class ColocResult:
    """``summary``: ``nsnps`` and ``PP.H0.abf`` ... ``PP.H4.abf``; ``results``: one row per SNP
    (coloc's columns, ``.df1``/``.df2`` suffixes, ``SNP.PP.H4``); ``priors`` as used."""

    summary: pd.Series
    results: pd.DataFrame
    priors: dict[str, float]


def coloc_abf(dataset1: Mapping[str, Any], dataset2: Mapping[str, Any], *, p1: float = 1e-4,
              p2: float = 1e-4, p12: float = 1e-5) -> ColocResult:
    """Bayesian test of colocalization of two traits in one region (coloc's ``coloc.abf``).

    Parameters
    ----------
    dataset1, dataset2
        Mappings with coloc's keys: ``snp``, ``type`` (``"quant"``/``"cc"``), and ``beta`` +
        ``varbeta`` (with ``sdY``, or ``MAF`` and ``N`` to estimate it), or ``pvalues`` +
        ``MAF`` + ``N`` (+ ``s`` for case-control); optional ``position``.
    p1, p2, p12
        Prior probabilities that a SNP is associated with trait 1, trait 2, both.

    Examples
    --------
    >>> snp = [f"rs{i}" for i in range(3)]
    >>> d1 = {"snp": snp, "beta": [0.5, 0.1, 0.0], "varbeta": [0.01] * 3, "type": "quant", "sdY": 1}
    >>> d2 = {"snp": snp, "beta": [0.4, 0.1, 0.0], "varbeta": [0.01] * 3, "type": "quant", "sdY": 1}
    >>> res = coloc_abf(d1, d2)
    >>> round(float(res.summary["PP.H4.abf"]), 3)
    0.771
    """
    a = _process(_check(dataset1, "dataset1"))
    b = _process(_check(dataset2, "dataset2"))
    keys = ["snp", "position"] if "position" in a and "position" in b else ["snp"]
    a = a.rename(columns={c: f"{c}.df1" for c in a.columns if c not in keys})
    b = b.rename(columns={c: f"{c}.df2" for c in b.columns if c not in keys})
    merged = a.merge(b, on=keys, how="inner")
    if merged.empty:
        raise InputError("coloc: the two datasets share no SNP")
    merged = merged.sort_values("snp", kind="stable").reset_index(drop=True)
    merged["internal.sum.lABF"] = merged["lABF.df1"] + merged["lABF.df2"]
    denom = logsum(merged["internal.sum.lABF"].to_numpy())
    merged["SNP.PP.H4"] = np.exp(merged["internal.sum.lABF"] - denom)
    n = len(merged)
    p1, p2, p12 = (_adjust_prior(p1, n, "1"), _adjust_prior(p2, n, "2"),
                   _adjust_prior(p12, n, "12"))
    pp = combine_abf(merged["lABF.df1"].to_numpy(), merged["lABF.df2"].to_numpy(), p1, p2, p12)
    summary = pd.Series({"nsnps": n, **{f"PP.H{i}.abf": float(v) for i, v in enumerate(pp)}})
    return ColocResult(summary=summary, results=merged, priors={"p1": p1, "p2": p2, "p12": p12})


def combine_abf(l1: np.ndarray, l2: np.ndarray, p1: float, p2: float, p12: float) -> np.ndarray:
    """Posterior probabilities of H0..H4 from per-SNP log ABFs (coloc's ``combine.abf``)."""
    s1, s2, s12 = logsum(l1), logsum(l2), logsum(l1 + l2)
    lh = np.array([0.0, np.log(p1) + s1, np.log(p2) + s2,
                   np.log(p1) + np.log(p2) + logdiff(s1 + s2, s12), np.log(p12) + s12])
    return np.exp(lh - logsum(lh))


def _logbf_to_pp_last_null(bf: np.ndarray, pi: float) -> np.ndarray:
    """coloc's ``logbf_to_pp(bf, pi, last_is_null = TRUE)`` (rows are signals)."""
    n = bf.shape[1] - 1
    pi = min(pi, 1.0 / n) if n > 0 else pi
    prior = np.append(np.full(n, pi), 1.0 - n * pi)
    if (prior == 0).any():
        prior[prior == 0] = 1e-16
        prior = prior / prior.sum()
    bf = bf - bf[:, -1:]
    x = bf + np.log(prior)[None, :]
    m = x.max(axis=1, keepdims=True)
    denom = m + np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    return np.exp(x - denom)


@dataclass
class ColocSusieResult:
    """``summary``: one row per tested pair of credible sets (``nsnps, hit1, hit2, PP.H0.abf ...
    PP.H4.abf, idx1, idx2``; ``idx`` are 0-based SuSiE effect indices), empty when either trait
    has no credible set; ``results``: ``snp`` and one ``SNP.PP.H4`` column per pair (coloc's
    names); ``priors`` as used."""

    summary: pd.DataFrame
    results: pd.DataFrame
    priors: dict[str, float]


_PP = [f"PP.H{i}.abf" for i in range(5)]


def coloc_bf_bf(bf1: np.ndarray, bf2: np.ndarray, snp1: Any, snp2: Any, *, p1: float = 1e-4,
                p2: float = 1e-4, p12: float = 5e-6, overlap_min: float = 0.5,
                trim_by_posterior: bool = True) -> ColocSusieResult:
    """Colocalise every pair of signals given as log Bayes factor matrices (coloc's
    ``coloc.bf_bf``, scalar priors): ``bf1`` (signals x SNPs ``snp1``), ``bf2`` likewise.

    Pairs whose shared SNPs hold less than ``overlap_min`` of either signal's posterior
    (coloc's computation, which treats the last SNP column as the null) are not tested.
    """
    bf1 = np.atleast_2d(np.asarray(bf1, dtype=np.float64))
    bf2 = np.atleast_2d(np.asarray(bf2, dtype=np.float64))
    snp1 = np.asarray(snp1).astype(str)
    snp2 = np.asarray(snp2).astype(str)
    if bf1.shape[1] != snp1.size or bf2.shape[1] != snp2.size:
        raise InputError("coloc: each Bayes factor matrix needs one column per SNP identifier")
    pos2 = {s: i for i, s in enumerate(snp2.tolist())}
    shared = [i for i, s in enumerate(snp1.tolist()) if s in pos2 and s != "null"]
    empty = ColocSusieResult(pd.DataFrame(columns=["nsnps"]), pd.DataFrame(columns=["snp"]),
                             {"p1": p1, "p2": p2, "p12": p12})
    if not shared:
        return empty
    keep1 = np.array(shared)
    keep2 = np.array([pos2[snp1[i]] for i in shared])
    isnps = snp1[keep1]
    pp1 = _logbf_to_pp_last_null(bf1, p1)
    pp2 = _logbf_to_pp_last_null(bf2, p2)
    prop1 = pp1[:, keep1].sum(axis=1) / pp1.sum(axis=1)
    prop2 = pp2[:, keep2].sum(axis=1) / pp2.sum(axis=1)
    todo = [(i, j) for j in range(bf2.shape[0]) for i in range(bf1.shape[0])]  # expand.grid
    if trim_by_posterior:
        kept = [(i, j) for i, j in todo if not (prop1[i] < overlap_min or prop2[j] < overlap_min)]
        if not kept:
            log.warning("coloc: snp overlap too small between datasets: too few SNPs with high "
                        "posterior in one trait represented in the other")
            rows = [{"nsnps": len(isnps), "hit1": snp1[int(np.argmax(pp1[i]))],
                     "hit2": snp2[int(np.argmax(pp2[j]))],
                     "PP.H0.abf": min(1 - pp1[i].sum(), 1 - pp2[j].sum()),
                     **{h: np.nan for h in _PP[1:]}, "idx1": i, "idx2": j} for i, j in todo]
            return ColocSusieResult(pd.DataFrame(rows), pd.DataFrame({"snp": isnps}), empty.priors)
        todo = kept
    b1, b2 = bf1[:, keep1], bf2[:, keep2]
    rows, pps = [], []
    for i, j in todo:
        lsum = b1[i] + b2[j]
        snp_pp = np.exp(lsum - logsum(lsum))
        pp = combine_abf(b1[i], b2[j], p1, p2, p12)
        if np.isnan(snp_pp).all():
            snp_pp = np.zeros_like(snp_pp)
            pp = np.array([1.0, 0, 0, 0, 0])
        pps.append(snp_pp)
        rows.append({"nsnps": len(isnps), "hit1": isnps[int(np.argmax(b1[i]))],
                     "hit2": isnps[int(np.argmax(b2[j]))],
                     **{h: float(v) for h, v in zip(_PP, pp, strict=True)}, "idx1": i, "idx2": j})
    names = ([f"SNP.PP.H4.row{k + 1}" for k in range(len(todo))] if len(todo) > 1
             else ["SNP.PP.H4.abf"])
    results = pd.concat([pd.DataFrame({"snp": isnps}),
                         pd.DataFrame(dict(zip(names, pps, strict=True)))], axis=1)
    return ColocSusieResult(pd.DataFrame(rows), results, {"p1": p1, "p2": p2, "p12": p12})


def _runsusie(d: Any, name: str, susie_args: Mapping[str, Any]) -> tuple[Any, np.ndarray]:
    """coloc's ``runsusie``: ``susie_rss(z, LD, n = N)``, rerun with 100x the iterations until it
    converges; or a given fit with its SNP identifiers (``(fit, snp)``)."""
    from dqtl.finemap.susie import SusieResult, susie_rss

    if isinstance(d, tuple) and len(d) == 2 and isinstance(d[0], SusieResult):
        return d[0], np.asarray(d[1]).astype(str)
    d = dict(d)
    for key in ("LD", "snp", "N"):
        if key not in d:
            raise InputError(f"coloc {name}: {key!r} is required for coloc_susie")
    snp = np.asarray(d["snp"]).astype(str)
    if "z" in d:
        z = np.asarray(d["z"], dtype=np.float64)
    elif "beta" in d and "varbeta" in d:
        z = np.asarray(d["beta"], dtype=np.float64) / np.sqrt(np.asarray(d["varbeta"], dtype=np.float64))
    else:
        raise InputError(f"coloc {name}: coloc_susie needs z, or beta and varbeta")
    LD = np.asarray(d["LD"], dtype=np.float64)
    if LD.ndim != 2 or LD.shape[0] != LD.shape[1] or LD.shape[0] != snp.size:
        raise InputError(f"coloc {name}: LD must be a square matrix over the dataset's {snp.size} "
                         f"SNPs, found shape {LD.shape}")
    args = dict(susie_args)
    maxit = int(args.pop("max_iter", 100))
    while True:
        fit = susie_rss(z, LD, n=float(d["N"]), max_iter=maxit, **args)
        if fit.converged:
            return fit, snp
        maxit *= 100
        log.info("coloc %s: susie_rss did not converge; rerunning with max_iter = %d", name, maxit)


def coloc_susie(dataset1: Any, dataset2: Any, *, p1: float = 1e-4, p2: float = 1e-4,
                p12: float = 5e-6, overlap_min: float = 0.5, trim_by_posterior: bool = True,
                susie_args: Mapping[str, Any] | None = None) -> ColocSusieResult:
    """Colocalisation with multiple causal variants via SuSiE (coloc 5.2.3 ``coloc.susie``).

    Each dataset is a coloc mapping with ``beta`` + ``varbeta`` (or ``z``), ``snp``, ``N`` and
    ``LD`` (signed correlations over ``snp``), fitted by :func:`dqtl.susie_rss` with
    ``n = N``; or a pair ``(SusieResult, snp)`` from an earlier fit. Every pair of credible
    sets is tested with the sets' log Bayes factors (``lbf_variable``) by :func:`coloc_bf_bf`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.binomial(2, 0.3, size=(500, 30)).astype(float)
    >>> snp = [f"s{i}" for i in range(30)]
    >>> def data(y):
    ...     Xc, yc = X - X.mean(0), y - y.mean()
    ...     b = Xc.T @ yc / (Xc * Xc).sum(0)
    ...     vb = ((yc[:, None] - Xc * b) ** 2).sum(0) / 498 / (Xc * Xc).sum(0)
    ...     return {"beta": b, "varbeta": vb, "snp": snp, "N": 500, "LD": np.corrcoef(X.T)}
    >>> y1 = 0.5 * X[:, 4] + rng.normal(size=500)
    >>> y2 = 0.4 * X[:, 4] + rng.normal(size=500)
    >>> res = coloc_susie(data(y1), data(y2))
    >>> res.summary[["hit1", "hit2"]].values.tolist(), bool(res.summary["PP.H4.abf"].iloc[0] > 0.9)
    ([['s4', 's4']], True)
    """
    s1, snp1 = _runsusie(dataset1, "dataset1", susie_args or {})
    s2, snp2 = _runsusie(dataset2, "dataset2", susie_args or {})
    if not s1.credible_sets or not s2.credible_sets:
        log.info("coloc: at least one dataset has no credible sets, nothing to colocalise")
        return ColocSusieResult(pd.DataFrame(columns=["nsnps"]), pd.DataFrame(columns=["snp"]),
                                {"p1": p1, "p2": p2, "p12": p12})
    idx1, idx2 = list(s1.cs_index), list(s2.cs_index)
    res = coloc_bf_bf(s1.lbf_variable[idx1], s2.lbf_variable[idx2], snp1, snp2, p1=p1, p2=p2,
                      p12=p12, overlap_min=overlap_min, trim_by_posterior=trim_by_posterior)
    if len(res.summary) and "idx1" in res.summary:
        res.summary["idx1"] = [idx1[i] for i in res.summary["idx1"]]
        res.summary["idx2"] = [idx2[j] for j in res.summary["idx2"]]
    return res
