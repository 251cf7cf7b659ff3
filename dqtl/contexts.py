"""Multi-context cis mapping (populations, tissues, cell types, sex) in one run, and
context-specific calls.

``dqtl cis ... --contexts FILE`` (``sample<TAB>context``): every phenotype is split into one
phenotype per context (``gene@@context``, values only on that context's samples). The study plan's
missing-value groups then are the contexts: each has its own covariate basis (covariates that are
constant or collinear within a context are dropped there, logged), and the cis tasks decode each
variant range once for all contexts. Outputs are per context, as a single run writes them
(``PREFIX.<context>.cis_qtl_pairs.<chr>.parquet`` or ``PREFIX.<context>.cis_qtl.txt.gz`` with
q-values computed within the context), plus a combined table: for ``nominal`` the meta-analysis
of every pair across contexts (``PREFIX.contexts.meta_pairs.parquet``, :mod:`dqtl.meta`); for
``permute`` one row per gene (``PREFIX.contexts.txt.gz``) with the lead pair's effect in every
context, its fixed/random-effects meta-analysis and heterogeneity, direction agreement and a call
(``shared``: every context carries the effect; ``specific``: only the lead context does and the
effects differ, ``pval_het < 0.05``; ``partial``: some contexts; ``none``: no eGene), and a
forest plot with an interaction plot (expression by genotype per context) for the top genes.

A context carries a gene's effect when the gene is an eGene there (``qval <= fdr``) or, for the
lead pair, its nominal ``p <= 0.05`` with the lead context's sign.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from dqtl.errors import InputError
from dqtl.io.variant_ids import variant_rows

__all__ = ["read_contexts", "context_phenotypes", "run_cis_contexts", "SEP"]

log = logging.getLogger(__name__)

SEP = "@@"  #: joins a phenotype ID and its context in the run's internal phenotype IDs


def read_contexts(path: str | os.PathLike[str]) -> pd.Series:
    """``sample<TAB>context`` (an optional header row whose second field is ``context``)."""
    from dqtl.io.fs import absolute, exists

    path = absolute(path)
    if not exists(path):
        raise FileNotFoundError(f"contexts file {path} does not exist")
    try:
        df = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot parse contexts file {path}: {' '.join(str(exc).split())}; "
                         "expected sample<TAB>context rows") from None
    if df.shape[1] != 2:
        raise InputError(f"{path}: expected two tab-separated columns (sample, context), found "
                         f"{df.shape[1]}")
    if str(df.iloc[0, 1]).strip().lower() == "context":
        df = df.iloc[1:]
    s = pd.Series(df[1].str.strip().to_numpy(), index=df[0].str.strip().to_numpy())
    if s.index.duplicated().any():
        raise InputError(f"{path}: sample {s.index[s.index.duplicated()][0]} appears more than once")
    bad = [c for c in s.unique() if not c or SEP in c or "/" in c or c.startswith(".")]
    if bad:
        raise InputError(f"{path}: context name {bad[0]!r} cannot be used in file names")
    return s


def context_phenotypes(phenotypes: xr.Dataset, contexts: pd.Series, *, min_samples: int = 10
                       ) -> tuple[xr.Dataset, list[str]]:
    """The phenotypes split per context (gene-major order: a gene's contexts are neighbours, so
    one cis task tests them together)."""
    samples = np.asarray(phenotypes["sample_id"].values).astype(str)
    missing = [s for s in samples if s not in contexts.index]
    if missing:
        raise InputError(f"--contexts: {len(missing)} phenotype samples have no context (e.g. "
                         f"{', '.join(missing[:3])}); list every sample")
    ctx = contexts.loc[samples].to_numpy(dtype=str)
    names = sorted(set(ctx.tolist()))
    if len(names) < 2:
        raise InputError("--contexts: the samples fall into one context; give at least two")
    counts = {c: int((ctx == c).sum()) for c in names}
    small = {c: k for c, k in counts.items() if k < min_samples}
    if small:
        c, k = next(iter(small.items()))
        raise InputError(f"--contexts: context {c!r} has {k} samples; each context needs at least "
                         f"{min_samples} (merge small contexts or drop them from the file)")
    vals = np.asarray(phenotypes["phenotype_values"].values, dtype=np.float64)
    n_p = vals.shape[0]
    out = np.full((n_p * len(names), vals.shape[1]), np.nan)
    for k, c in enumerate(names):
        m = ctx == c
        out[k::len(names)][:, m] = vals[:, m]
    rep = lambda v: np.repeat(np.asarray(v), len(names))  # noqa: E731
    pid = np.asarray(phenotypes["phenotype_id"].values).astype(str)
    ds = xr.Dataset({
        "phenotype_id": ("phenotypes", np.array([f"{p}{SEP}{c}" for p in pid for c in names])),
        "phenotype_contig": ("phenotypes", rep(phenotypes["phenotype_contig"].values)),
        "phenotype_start": ("phenotypes", rep(phenotypes["phenotype_start"].values)),
        "phenotype_end": ("phenotypes", rep(phenotypes["phenotype_end"].values)),
        "phenotype_values": (("phenotypes", "samples"), out),
        "sample_id": ("samples", samples),
    })
    ds.attrs.update(phenotypes.attrs)
    log.info("contexts: %s", ", ".join(f"{c} ({counts[c]} samples)" for c in names))
    return ds, names


def _split(ids: Any) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray(ids).astype(str)
    parts = np.char.rpartition(ids, SEP)
    return parts[:, 0], parts[:, 2]


def run_cis_contexts(genotypes: xr.Dataset, phenotypes: xr.Dataset, covariates: xr.Dataset | None,
                     contexts: pd.Series, output_prefix: str, *, mode: str = "nominal",
                     permutations: Any = 10_000, seed: int | None = 0, fdr: float = 0.05,
                     qvalue_lambda: float | None = None, window: int = 1_000_000,
                     maf_threshold: float = 0.0, dtype: Any = np.float64,
                     allow_sample_intersection: bool = False, min_samples: int = 10,
                     top_plots: int = 10) -> dict[str, Any]:
    """Map every context in one run (see the module docstring); returns what was written."""
    from dqtl.io.fs import Publication, is_url
    from dqtl.study import plan_study

    if is_url(output_prefix):
        raise InputError("--contexts writes to a local (or shared-filesystem) prefix")
    split, names = context_phenotypes(phenotypes, contexts, min_samples=min_samples)
    plan = plan_study(genotypes, split, covariates, window=window, maf_threshold=maf_threshold,
                      allow_sample_intersection=allow_sample_intersection)
    with Publication() as pub:
        if mode == "nominal":
            out = _nominal(plan, genotypes, split, covariates, names, output_prefix, pub, dtype)
        elif mode == "permute":
            out = _permute(plan, names, output_prefix, pub, permutations=permutations, seed=seed,
                           fdr=fdr, qvalue_lambda=qvalue_lambda, dtype=dtype, top_plots=top_plots)
        else:
            raise InputError("--contexts works with --mode nominal or permute")
    return out


def _nominal(plan: Any, genotypes: xr.Dataset, split: xr.Dataset, covariates: Any,
             names: Sequence[str], prefix: str, pub: Any, dtype: Any) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from dqtl.io.results import CIS_PAIRS_SCHEMA, parquet_options
    from dqtl.meta import run_meta
    from dqtl.workflows import run_cis_nominal

    work = pub.scratch_dir(f"{prefix}.contexts", "work")
    combined = run_cis_nominal(genotypes, split, covariates, os.path.join(work, "all"), dtype=dtype,
                               plan=plan)
    files: dict[str, list[str]] = {c: [] for c in names}
    staged: dict[str, list[str]] = {c: [] for c in names}
    for f in combined.files:
        contig = f.rsplit(".cis_qtl_pairs.", 1)[1][: -len(".parquet")]
        writers = {}
        for c in names:
            final = f"{prefix}.{c}.cis_qtl_pairs.{contig}.parquet"
            path = pub.stage(final)
            files[c].append(final)
            staged[c].append(path)
            writers[c] = pq.ParquetWriter(path, CIS_PAIRS_SCHEMA, **parquet_options(CIS_PAIRS_SCHEMA))
        try:
            pf = pq.ParquetFile(f)
            for i in range(pf.num_row_groups):
                t = pf.read_row_group(i)
                pid, ctx = _split(t.column("phenotype_id").to_numpy(zero_copy_only=False))
                t = t.set_column(0, "phenotype_id", pa.array(pid, type=pa.large_string()))
                for c in names:
                    sub = t.filter(pc.equal(pa.array(ctx), c))
                    if sub.num_rows:
                        writers[c].write_table(sub.cast(CIS_PAIRS_SCHEMA))
        finally:
            for w in writers.values():
                w.close()
    meta = run_meta({c: staged[c] for c in names}, f"{prefix}.contexts", publication=pub)
    log.info("contexts nominal: %d pairs over %d contexts; %d pairs with heterogeneous effects "
             "(pval_het < 0.05) in %s.contexts.meta_pairs.parquet", combined.n_pairs, len(names),
             meta.get("pairs_heterogeneous_p05", 0), prefix)
    return {"files": files, "meta": meta}


def _permute(plan: Any, names: Sequence[str], prefix: str, pub: Any, *, permutations: Any,
             seed: int | None, fdr: float, qvalue_lambda: float | None, dtype: Any,
             top_plots: int) -> dict[str, Any]:
    from dqtl.association.permutation import (
        PermutationSpec,
        cis_permutation_graph,
        frame_to_dataset,
        results_table,
    )
    from dqtl.compute import compute
    from dqtl.io.results import to_tensorqtl_cis
    from dqtl.multitest.significance import add_significance
    from dqtl.workflows import write_table_gz

    spec = permutations if isinstance(permutations, PermutationSpec) else \
        PermutationSpec.parse(permutations, seed=seed)
    parts = compute(cis_permutation_graph(plan, spec, dtype=dtype), label="cis permutations (contexts)")
    df = results_table(plan, [r for p in parts for r in p])
    gene, ctx = _split(df["phenotype_id"])
    tables = {}
    for c in names:
        sub = df[ctx == c].copy()
        sub["phenotype_id"] = gene[ctx == c]
        if sub.empty:
            log.warning("context %s: no phenotype tested", c)
            continue
        res = to_tensorqtl_cis(frame_to_dataset(add_significance(sub.reset_index(drop=True), fdr=fdr,
                                                                 qvalue_lambda=qvalue_lambda)))
        write_table_gz(res, pub.stage(f"{prefix}.{c}.cis_qtl.txt.gz"))
        tables[c] = res
    table = context_calls(plan, tables, fdr=fdr)
    write_table_gz(table, pub.stage(f"{prefix}.contexts.txt.gz"))
    _plots(plan, table, list(tables), prefix, pub, top_plots)
    counts = table["call"].value_counts().to_dict()
    log.info("contexts: %s", ", ".join(f"{v} {k}" for k, v in counts.items()))
    return {"tables": tables, "calls": table}


def context_calls(plan: Any, tables: dict[str, pd.DataFrame], *, fdr: float) -> pd.DataFrame:
    """One row per gene tested in any context: per-context q-values, the lead pair's effect in
    every context, its meta-analysis across contexts, direction agreement and the call."""
    from dqtl.kernels.meta import meta_analysis

    names = list(tables)
    long = pd.concat([t.assign(context=c) for c, t in tables.items()], ignore_index=True)
    pb = long["pval_beta"].fillna(long["pval_perm"])
    lead = long.loc[pb.groupby(long["phenotype_id"]).idxmin().to_numpy()]
    lead = lead.sort_values("phenotype_id").reset_index(drop=True)
    stats = lead_pair_stats(plan, lead["phenotype_id"].to_numpy(str), lead["variant_id"].to_numpy(str),
                            names)
    out = pd.DataFrame({"phenotype_id": lead["phenotype_id"], "lead_context": lead["context"],
                        "variant_id": lead["variant_id"]})
    q = {c: tables[c].set_index("phenotype_id")["qval"] for c in names}
    sig = np.zeros((len(out), len(names)), dtype=bool)
    for k, c in enumerate(names):
        out[f"qval_{c}"] = q[c].reindex(out["phenotype_id"]).to_numpy()
        sig[:, k] = out[f"qval_{c}"].to_numpy() <= fdr
    B, S, P = stats["slope"], stats["slope_se"], stats["pval"]
    for k, c in enumerate(names):
        out[f"slope_{c}"], out[f"slope_se_{c}"], out[f"pval_{c}"] = B[:, k], S[:, k], P[:, k]
    meta = meta_analysis(B, S)
    for col in ("beta_fe", "pval_fe", "beta_re", "se_re", "pval_re", "q_het", "pval_het", "i2"):
        out[col] = meta[col]
    lead_k = np.array([names.index(c) for c in out["lead_context"]])
    lead_sign = np.sign(B[np.arange(len(out)), lead_k])
    nominal = (P <= 0.05) & (np.sign(B) == lead_sign[:, None])
    carries = sig | nominal
    carries[np.arange(len(out)), lead_k] |= sig[np.arange(len(out)), lead_k]
    strong = P <= 0.05
    agree = np.array([len({s for s in np.sign(B[i, strong[i]]) if s}) <= 1 for i in range(len(out))])
    out["n_contexts_significant"] = sig.sum(axis=1)
    out["contexts_significant"] = [",".join(np.asarray(names)[sig[i]]) for i in range(len(out))]
    out["contexts_with_effect"] = [",".join(np.asarray(names)[carries[i]]) for i in range(len(out))]
    out["direction_agree"] = agree
    any_sig = sig.any(axis=1)
    n_carry = carries.sum(axis=1)
    het = np.nan_to_num(out["pval_het"].to_numpy(), nan=1.0) < 0.05
    out["call"] = np.select(
        [~any_sig, n_carry == len(names), (n_carry == 1) & het],
        ["none", "shared", "specific"], default="partial")
    return out


def _gene_windows(plan: Any, genes: np.ndarray, pidx: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Each gene's cis window (variant rows ``[lo, hi)``; all variants for a gene not in the plan)."""
    i = np.array([pidx.get(str(g), -1) for g in genes], dtype=np.int64)
    lo = np.where(i >= 0, plan.window_lo[np.maximum(i, 0)], 0)
    hi = np.where(i >= 0, plan.window_hi[np.maximum(i, 0)], plan.n_variants)
    return lo, hi


def lead_pair_stats(plan: Any, genes: np.ndarray, variants: np.ndarray, names: Sequence[str]
                    ) -> dict[str, np.ndarray]:
    """Slope, standard error and p of each (gene, variant) pair in every context (NaN where the
    gene or the variant is not testable there), from the plan's residualized phenotypes."""
    from dqtl.kernels.genotypes import decode_block
    from dqtl.kernels.stats import stats_from_r

    pidx = {p: i for i, p in enumerate(plan.phenotype_id.astype(str))}
    vrow = variant_rows(plan.genotypes, variants, source="the lead pairs",
                        windows=_gene_windows(plan, genes, pidx))
    uniq = np.unique(vrow[vrow >= 0])
    arr = plan.genotype_array()
    block = np.asarray(arr[uniq].compute()) if uniq.size else np.zeros((0,))
    where = plan.group_of()
    shape = (len(genes), len(names))
    slope, se, pval = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    if uniq.size == 0:
        return {"slope": slope, "slope_se": se, "pval": pval}
    dec = decode_block(block, plan.genotype_sample_index, ploidy=plan.ploidy)
    at = {int(v): k for k, v in enumerate(uniq)}
    for i, (g, v) in enumerate(zip(genes, vrow, strict=True)):
        if v < 0:
            continue
        x = dec.G[at[int(v)]]
        for k, c in enumerate(names):
            found = _context_row(plan, pidx, where, str(g), c)
            if found is None:
                continue
            grp, j = found
            xs = x if grp.sample_index is None else x[grp.sample_index]
            xr_ = grp.basis.transform(xs[None, :])[0]
            gn = float(np.sqrt(xr_ @ xr_))
            if gn * gn <= 1e-12 * max(float(xs @ xs), 1e-300):
                continue
            r = float(xr_ @ grp.P_hat[j]) / gn  # P_hat: unit-norm residualized phenotype
            _t, p, b, s = stats_from_r(np.array([r]), grp.dof, np.array([gn]),
                                       np.array([grp.p_norm[j]]))  # the cis scan's statistics
            slope[i, k], se[i, k], pval[i, k] = b[0], s[0], p[0]
    return {"slope": slope, "slope_se": se, "pval": pval}


def _context_row(plan: Any, pidx: dict[str, int], where: np.ndarray, gene: str, context: str
                 ) -> tuple[Any, int] | None:
    """The missing-value group holding ``gene`` in ``context`` and its row there (None when the
    gene was not tested in that context)."""
    r = pidx.get(f"{gene}{SEP}{context}")
    if r is None:
        return None
    grp = plan.groups[int(where[r])]
    return grp, int(np.searchsorted(grp.index, r))


def _plots(plan: Any, table: pd.DataFrame, names: Sequence[str], prefix: str, pub: Any,
           top: int) -> None:
    """Forest plot and interaction plot of the lead pair of the ``top`` genes (by lead-context
    p-value among genes significant somewhere)."""
    from dqtl.io.fs import open_file
    from dqtl.kernels.genotypes import decode_block
    from dqtl.plot import close_figure, new_axes

    pcols = [f"pval_{c}" for c in names]
    cand = table[table["n_contexts_significant"] > 0].copy()
    if cand.empty:
        return
    cand["best"] = cand[pcols].min(axis=1)
    cand = cand.nsmallest(top, "best")
    arr = plan.genotype_array()
    where = plan.group_of()
    pidx = {p: i for i, p in enumerate(plan.phenotype_id.astype(str))}
    genes = cand["phenotype_id"].astype(str).to_numpy()
    rows = variant_rows(plan.genotypes, cand["variant_id"], source="the lead pairs",
                        windows=_gene_windows(plan, genes, pidx))
    for v, (_, row) in zip(rows.tolist(), cand.iterrows(), strict=True):
        if v < 0:  # not in these genotypes: no plot
            continue
        x = decode_block(np.asarray(arr[v:v + 1].compute()), plan.genotype_sample_index,
                         ploidy=plan.ploidy).G[0]
        ax1, ax2 = new_axes(1, 2, figsize=(10, 3.8))
        fig = ax1.figure
        b = np.array([row[f"slope_{c}"] for c in names], dtype=float)
        s = np.array([row[f"slope_se_{c}"] for c in names], dtype=float)
        yy = np.arange(len(names))[::-1]
        ax1.errorbar(b, yy, xerr=1.96 * s, fmt="s", color="C0", capsize=3)
        ax1.errorbar([row["beta_re"]], [-1], xerr=[1.96 * row["se_re"]], fmt="D", color="C3",
                     capsize=3)
        ax1.axvline(0, color="0.6", lw=0.8)
        ax1.set_yticks([*yy, -1], [*names, "random effects"])
        ax1.set_xlabel("slope (95% CI)")
        ax1.set_title(f"{row['phenotype_id']} / {row['variant_id']}\n{row['call']}, "
                      f"I2 = {row['i2']:.0f}%, p_het = {row['pval_het']:.2g}", fontsize=9)
        for k, c in enumerate(names):
            found = _context_row(plan, pidx, where, str(row["phenotype_id"]), c)
            if found is None:
                continue
            grp, j = found
            xs = x if grp.sample_index is None else x[grp.sample_index]
            y = grp.P_raw[j]
            geno = np.rint(xs)
            means = [np.mean(y[geno == gg]) if np.any(geno == gg) else np.nan for gg in (0, 1, 2)]
            jit = (np.random.default_rng(k).random(len(xs)) - 0.5) * 0.15
            ax2.scatter(xs + jit + 0.05 * k, y, s=6, alpha=0.35, color=f"C{k}")
            ax2.plot([0, 1, 2], means, "-o", color=f"C{k}", label=c)
        ax2.set_xticks([0, 1, 2])
        ax2.set_xlabel("ALT dosage")
        ax2.set_ylabel("expression")
        ax2.legend(fontsize=8, frameon=False)
        fig.tight_layout()
        with open_file(pub.stage(f"{prefix}.contexts.{row['phenotype_id']}.png"), "wb") as f:
            fig.savefig(f, dpi=100, format="png")
        close_figure(fig)
