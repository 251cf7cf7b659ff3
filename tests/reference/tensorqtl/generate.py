"""Generate tensorQTL 1.0.10 reference outputs on the bundled GEUVADIS data.

Runs under the tensorQTL virtualenv (``/work/tqvenv/bin/python``), never inside the
test suite. It drives tensorQTL's own Python API (the same calls its CLI makes) and
writes compact reference files next to this script; see README.md for the exact
commands, versions and what each file holds.

Usage::

    /work/tqvenv/bin/python tests/reference/tensorqtl/generate.py            # all stages
    /work/tqvenv/bin/python tests/reference/tensorqtl/generate.py --stage cis

Every stage runs in its own interpreter (``--stage all`` re-invokes this script), so the
float64 stage can re-bind tensorQTL's dtype names without leaking into the other stages.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("DISABLE_PANDERA_IMPORT_WARNING", "True")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

LOG = logging.getLogger("tensorqtl_reference")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
DATA = REPO / "dqtl" / "data" / "geuvadis"
GENOTYPE_PREFIX = DATA / "geuvadis_ceu90_maf01"
PHENOTYPE_BED = DATA / "expression.bed.gz"
COVARIATES = DATA / "covariates.txt"

PREFIX = "geuvadis"
SEED = 123456
NPERM = 10000
CIS_WINDOW = 1_000_000
TRANS_PVAL_THRESHOLD = 1e-5
TRANS_CIS_FILTER_WINDOW = 5_000_000
TRANS_BATCH_SIZE = 20000  # tensorQTL's default (function and CLI)
FDR = 0.05
# slope_se is left out of the committed float64 file to stay within the size budget:
# tensorQTL computes slope_se = slope / t, and |t| = t.isf(pval_nominal / 2, dof) (see README).
GZIP = {"method": "gzip", "mtime": 0}  # reproducible bytes
F64_COLUMNS = ["phenotype_id", "variant_id", "pval_nominal", "slope"]

STAGES = ("nominal32", "nominal64", "nominal_plink1", "cis", "independent", "trans", "verify")


# ----------------------------------------------------------------------------- helpers
def _scratch(outdir: Path) -> Path:
    path = outdir / "_scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _summary_path(outdir: Path, stage: str) -> Path:
    return _scratch(outdir) / f"{stage}.json"


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Write a compact parquet: zstd, dictionary-coded strings/small ints, delta-coded
    distances and byte-stream-split floats (lossless; any parquet reader opens it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    floats = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    delta = [c for c in ("start_distance", "end_distance") if c in df]
    dictionary = [c for c in df.columns if c not in floats and c not in delta]
    dictionary += [c for c in ("af",) if c in df]
    split = [c for c in floats if c not in dictionary]
    pq.write_table(table, path, compression="zstd", compression_level=22,
                   use_dictionary=dictionary, use_byte_stream_split=split,
                   column_encoding={c: "DELTA_BINARY_PACKED" for c in delta})


def _write_summary(outdir: Path, stage: str, payload: dict) -> None:
    path = _summary_path(outdir, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(type(obj))


def _versions() -> dict:
    import importlib.metadata as md

    import scipy
    import torch

    out = {
        "python": sys.version.split()[0],
        "tensorqtl": md.version("tensorqtl"),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "pgenlib": md.version("pgenlib"),
        "pandas_plink": md.version("pandas-plink"),
        "pyarrow": md.version("pyarrow"),
        "torch_num_threads": torch.get_num_threads(),
    }
    try:
        out["rpy2"] = md.version("rpy2")
        r = subprocess.run(
            ["R", "--vanilla", "-s", "-e",
             'cat(R.version.string, "|", as.character(packageVersion("qvalue")))'],
            capture_output=True, text=True, check=True)
        rver, qver = r.stdout.split("|")
        out["R"] = rver.strip()
        out["R_qvalue"] = qver.strip()
    except Exception as exc:  # pragma: no cover - environment dependent
        out["R"] = f"unavailable: {exc}"
    return out


def read_phenotype_bed(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a phenotype BED with tensorQTL's conventions (our own re-implementation).

    tensorQTL 1.0.10's ``core.read_phenotype_bed`` cannot run under pandas >= 3: its
    sort check compares the position table with a ``groupby('chr').apply(sort)`` result,
    and pandas 3 drops the grouping column from what ``apply`` sees, so the comparison
    always fails ("Positions in BED file must be sorted."). The semantics reproduced
    here: column 4 is the index, ``#chr`` -> ``chr`` (read as str), ``start`` is shifted
    by +1 to 1-based, rows must be sorted by (start, end) within each chromosome, and
    when every ``start + 1 == end`` the positions collapse to one ``pos`` (= BED end).
    """
    df = pd.read_csv(path, sep="\t", index_col=3, dtype={"#chr": str, "#Chr": str})
    df = df.rename(columns={c: c.lower().replace("#chr", "chr") for c in df.columns[:3]})
    pos_df = df[["chr", "start", "end"]].copy()
    pos_df["start"] += 1
    for chrom, g in pos_df.groupby("chr", sort=False):
        keys = list(zip(g["start"], g["end"], strict=True))
        if keys != sorted(keys):
            raise ValueError(f"{path}: positions on {chrom} are not sorted by (start, end)")
    if pos_df["chr"].ne(pos_df["chr"].shift()).sum() != pos_df["chr"].nunique():
        raise ValueError(f"{path}: rows of a chromosome are not contiguous")
    if (pos_df["start"] == pos_df["end"]).all():
        pos_df = pos_df[["chr", "end"]].rename(columns={"end": "pos"})
    phenotype_df = df.drop(columns=["chr", "start", "end"])
    return phenotype_df, pos_df


def _load_inputs(genotype_prefix: Path = GENOTYPE_PREFIX):
    """Load phenotypes, covariates and genotypes exactly as tensorQTL's CLI does."""
    import genotypeio

    phenotype_df, phenotype_pos_df = read_phenotype_bed(PHENOTYPE_BED)
    covariates_df = pd.read_csv(COVARIATES, sep="\t", index_col=0).T
    if not phenotype_df.columns.equals(covariates_df.index):
        raise ValueError("covariates.txt samples differ from expression.bed.gz samples")
    genotype_df, variant_df = genotypeio.load_genotypes(
        str(genotype_prefix), select_samples=phenotype_df.columns)
    return phenotype_df, phenotype_pos_df, covariates_df, genotype_df, variant_df


def _run_map_nominal(genotype_prefix: Path = GENOTYPE_PREFIX) -> tuple[pd.DataFrame, dict]:
    import cis

    phenotype_df, phenotype_pos_df, covariates_df, genotype_df, variant_df = _load_inputs(
        genotype_prefix)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cis.map_nominal(genotype_df, variant_df, phenotype_df, phenotype_pos_df, PREFIX,
                        covariates_df=covariates_df, maf_threshold=0, window=CIS_WINDOW,
                        output_dir=tmp, verbose=False)
        elapsed = time.perf_counter() - t0
        chrom_order = list(dict.fromkeys(phenotype_pos_df["chr"]))
        parts = []
        for chrom in chrom_order:
            f = Path(tmp) / f"{PREFIX}.cis_qtl_pairs.{chrom}.parquet"
            if f.exists():
                parts.append(pd.read_parquet(f))
        pairs = pd.concat(parts, ignore_index=True)
    return pairs, {
        "runtime_s": elapsed,
        "n_pairs": len(pairs),
        "n_phenotypes": int(pairs["phenotype_id"].nunique()),
        "n_variants": int(pairs["variant_id"].nunique()),
        "columns": {c: str(t) for c, t in pairs.dtypes.items()},
        "n_genotype_variants": len(variant_df),
        "n_samples": phenotype_df.shape[1],
        "n_phenotypes_input": phenotype_df.shape[0],
        "n_covariates": covariates_df.shape[1],
    }


# ----------------------------------------------------------------------------- stages
def stage_nominal32(outdir: Path) -> dict:
    """cis nominal, tensorQTL as shipped (float32 tensors)."""
    pairs, res = _run_map_nominal()
    write_parquet(pairs, outdir / f"{PREFIX}.cis_qtl_pairs.parquet")
    res["versions"] = _versions()
    return res


class _DtypeProxy(types.ModuleType):
    """Module stand-in that forwards every attribute to ``target`` except overrides."""

    def __init__(self, name: str, target, overrides: dict):
        super().__init__(name)
        self._target = target
        self.__dict__.update(overrides)

    def __getattr__(self, item):
        return getattr(self._target, item)


def _force_float64() -> dict:
    """Re-bind the dtype names tensorQTL's cis code uses so it computes in float64.

    tensorQTL hard-codes ``torch.float``/``torch.float32`` when it builds tensors,
    ``Tensor.float()`` when it casts slope_se, and ``np.float32`` for the output arrays
    of map_nominal. In this interpreter only: the ``torch`` seen by tensorQTL's ``core``
    and ``cis`` modules maps those names to float64, ``Tensor.float`` is made an alias of
    ``Tensor.double``, and the ``np`` seen by ``cis`` maps ``float32`` to float64.
    """
    import cis
    import core
    import torch

    torch_proxy = _DtypeProxy("torch_float64", torch,
                              {"float": torch.float64, "float32": torch.float64})
    np_proxy = _DtypeProxy("numpy_float64", np, {"float32": np.float64})
    core.torch = torch_proxy
    cis.torch = torch_proxy
    cis.np = np_proxy
    torch.Tensor.float = torch.Tensor.double

    seen: dict[str, set] = {"genotypes": set(), "phenotypes": set(), "residualizer_Q": set()}
    original = cis.calculate_corr

    def recording_corr(genotype_t, phenotype_t, residualizer=None, return_var=False):
        seen["genotypes"].add(str(genotype_t.dtype))
        seen["phenotypes"].add(str(phenotype_t.dtype))
        if residualizer is not None:
            seen["residualizer_Q"].add(str(residualizer.Q_t.dtype))
        return original(genotype_t, phenotype_t, residualizer=residualizer,
                        return_var=return_var)

    cis.calculate_corr = recording_corr
    return seen


def stage_nominal64(outdir: Path) -> dict:
    """cis nominal with tensorQTL forced to float64 arithmetic."""
    seen = _force_float64()
    pairs, res = _run_map_nominal()
    pairs.to_parquet(_scratch(outdir) / "float64_pairs_all_columns.parquet")
    # the other columns equal the float32 file's (checked in 'verify'); keep the file small
    write_parquet(pairs[F64_COLUMNS], outdir / f"{PREFIX}.cis_qtl_pairs.float64.parquet")
    res["committed_columns"] = F64_COLUMNS
    res["observed_tensor_dtypes"] = {k: sorted(v) for k, v in seen.items()}
    if any(v != {"torch.float64"} for v in seen.values()):
        raise RuntimeError(f"float64 forcing did not take effect: {seen}")
    return res


def stage_nominal_plink1(outdir: Path) -> dict:
    """cis nominal from the PLINK 1 bed/bim/fam (tensorQTL's pandas_plink path).

    tensorQTL picks the pgen whenever it exists, so the bed/bim/fam are linked into a
    scratch folder without the pgen. The pairs are kept out of the committed tree
    (written to the scratch summary folder) and compared with the pgen run in 'verify'.
    """
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "geuvadis_ceu90_maf01"
        for ext in ("bed", "bim", "fam"):
            os.symlink(f"{GENOTYPE_PREFIX}.{ext}", f"{prefix}.{ext}")
        pairs, res = _run_map_nominal(genotype_prefix=prefix)
    pairs.to_parquet(_scratch(outdir) / "plink1_pairs.parquet")
    return res


def stage_cis(outdir: Path) -> dict:
    """map_cis (permutations + beta approximation) then calculate_qvalues."""
    import cis
    import core
    import post

    phenotype_df, phenotype_pos_df, covariates_df, genotype_df, variant_df = _load_inputs()
    t0 = time.perf_counter()
    cis_df = cis.map_cis(genotype_df, variant_df, phenotype_df, phenotype_pos_df,
                         covariates_df=covariates_df, nperm=NPERM, seed=SEED,
                         window=CIS_WINDOW, maf_threshold=0, verbose=False)
    runtime_map_cis = time.perf_counter() - t0
    if not core.has_rpy2:
        raise RuntimeError("tensorQTL could not import rpy2/R qvalue; q-values need them")
    post.calculate_qvalues(cis_df, fdr=FDR, qvalue_lambda=None)

    # pi0 details from the same R qvalue call tensorQTL makes (for our own tests).
    import rfunc

    qval, pi0 = rfunc.qvalue(cis_df["pval_beta"].to_numpy())
    if not np.array_equal(qval, cis_df["qval"].to_numpy()):
        raise RuntimeError("re-running R qvalue gave different q-values")
    pi0_, pi0_lambda, lambda_vec, pi0_smooth = rfunc.pi0est(cis_df["pval_beta"].to_numpy())

    # the permutation matrix tensorQTL draws equals a seeded legacy RandomState
    n = phenotype_df.shape[1]
    np.random.seed(SEED)
    perm_global = np.array([np.random.permutation(np.arange(n)) for _ in range(NPERM)])
    rs = np.random.RandomState(SEED)
    perm_rs = np.array([rs.permutation(n) for _ in range(NPERM)])

    out = outdir / f"{PREFIX}.cis_qtl.txt.gz"
    cis_df.to_csv(out, sep="\t", float_format="%.17g", compression=GZIP)
    n_egenes = int((cis_df["qval"] <= FDR).sum())
    return {
        "runtime_map_cis_s": runtime_map_cis,
        "n_phenotypes": len(cis_df),
        "n_egenes_fdr05": n_egenes,
        "pi0": float(pi0),
        "pi0_est": {"pi0": float(pi0_), "lambda": lambda_vec, "pi0_lambda": pi0_lambda,
                    "pi0_smooth": pi0_smooth},
        "pval_perm_beta_pearson_r": float(np.corrcoef(cis_df["pval_perm"],
                                                      cis_df["pval_beta"])[0, 1]),
        "min_pval_threshold_used": _pthreshold(cis_df),
        "permutation_matrix_first_row": perm_global[0],
        "permutation_matrix_equals_RandomState": bool(np.array_equal(perm_global, perm_rs)),
        "columns": {c: str(t) for c, t in cis_df.dtypes.items()},
    }


def _pthreshold(cis_df: pd.DataFrame) -> float:
    lb = cis_df.loc[cis_df["qval"] <= FDR, "pval_beta"].max()
    above = cis_df.loc[cis_df["qval"] > FDR, "pval_beta"]
    return float((lb + above.min()) / 2 if len(above) else lb)


def stage_independent(outdir: Path) -> dict:
    """map_independent (forward/backward) from the q-value annotated map_cis output."""
    import cis

    phenotype_df, phenotype_pos_df, covariates_df, genotype_df, variant_df = _load_inputs()
    cis_df = pd.read_csv(outdir / f"{PREFIX}.cis_qtl.txt.gz", sep="\t", index_col=0)
    t0 = time.perf_counter()
    ind_df = cis.map_independent(genotype_df, variant_df, cis_df, phenotype_df, phenotype_pos_df,
                                 covariates_df=covariates_df, fdr=FDR, nperm=NPERM, seed=SEED,
                                 window=CIS_WINDOW, maf_threshold=0, verbose=False)
    runtime = time.perf_counter() - t0
    ind_df.to_csv(outdir / f"{PREFIX}.cis_independent_qtl.txt.gz", sep="\t", index=False,
                  float_format="%.17g", compression=GZIP)
    per_gene = ind_df.groupby("phenotype_id").size()
    return {
        "runtime_map_independent_s": runtime,
        "n_rows": len(ind_df),
        "n_phenotypes": int(per_gene.size),
        "n_phenotypes_with_more_than_one": int((per_gene > 1).sum()),
        "max_rank": int(ind_df["rank"].max()),
    }


def stage_trans(outdir: Path) -> dict:
    """map_trans (sparse) then the CLI's +/-5 Mb cis filter."""
    import trans

    phenotype_df, phenotype_pos_df, covariates_df, genotype_df, variant_df = _load_inputs()
    t0 = time.perf_counter()
    pairs = trans.map_trans(genotype_df, phenotype_df, covariates_df=covariates_df,
                            return_sparse=True, pval_threshold=TRANS_PVAL_THRESHOLD,
                            maf_threshold=0, batch_size=TRANS_BATCH_SIZE, verbose=False)
    runtime = time.perf_counter() - t0
    n_before = len(pairs)
    pairs = trans.filter_cis(pairs, phenotype_pos_df, variant_df, window=TRANS_CIS_FILTER_WINDOW)
    pairs = pairs.reset_index(drop=True)
    write_parquet(pairs, outdir / f"{PREFIX}.trans_qtl_pairs.parquet")
    return {
        "runtime_map_trans_s": runtime,
        "n_pairs_before_cis_filter": n_before,
        "n_pairs": len(pairs),
        "n_phenotypes": int(pairs["phenotype_id"].nunique()),
        "columns": {c: str(t) for c, t in pairs.dtypes.items()},
        "max_pval": float(pairs["pval"].max()) if len(pairs) else None,
    }


def _rel(a, b) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / np.maximum(np.abs(b), np.finfo(np.float64).tiny)


def stage_verify(outdir: Path) -> dict:
    """Compare float32 vs float64 runs, statsmodels OLS, and PLINK 1 vs pgen."""
    import core
    import statsmodels.api as sm

    p32 = pd.read_parquet(outdir / f"{PREFIX}.cis_qtl_pairs.parquet")
    p64 = pd.read_parquet(_scratch(outdir) / "float64_pairs_all_columns.parquet")
    p64c = pd.read_parquet(outdir / f"{PREFIX}.cis_qtl_pairs.float64.parquet")
    if not p64c.equals(p64[F64_COLUMNS]):
        raise RuntimeError("committed float64 file differs from the full float64 run")
    same_keys = (p32["phenotype_id"].equals(p64["phenotype_id"])
                 and p32["variant_id"].equals(p64["variant_id"]))
    out: dict = {"float32_vs_float64_same_pairs_same_order": bool(same_keys)}
    for col in ("pval_nominal", "slope", "slope_se", "af"):
        r = _rel(p32[col], p64[col])
        out[f"float32_vs_float64_max_rel_{col}"] = float(r.max())
        out[f"float32_vs_float64_median_rel_{col}"] = float(np.median(r))
    for col in ("start_distance", "ma_samples", "ma_count"):
        out[f"float32_vs_float64_equal_{col}"] = bool(p32[col].equals(p64[col]))
    lp32 = -np.log10(p32["pval_nominal"].to_numpy())
    lp64 = -np.log10(p64["pval_nominal"].to_numpy())
    out["float32_vs_float64_max_abs_log10p"] = float(np.abs(lp32 - lp64).max())
    i = int(np.argmax(_rel(p32["pval_nominal"], p64["pval_nominal"])))
    out["float32_vs_float64_worst_pair"] = {
        "phenotype_id": p32["phenotype_id"].iat[i], "variant_id": p32["variant_id"].iat[i],
        "pval32": float(p32["pval_nominal"].iat[i]), "pval64": float(p64["pval_nominal"].iat[i])}
    bins = {"p>=1e-3": p64["pval_nominal"] >= 1e-3,
            "1e-10<=p<1e-3": (p64["pval_nominal"] < 1e-3) & (p64["pval_nominal"] >= 1e-10),
            "p<1e-10": p64["pval_nominal"] < 1e-10}
    out["float32_vs_float64_max_rel_pval_nominal_by_p"] = {
        k: [int(m.sum()), float(_rel(p32.loc[m, "pval_nominal"], p64.loc[m, "pval_nominal"]).max())]
        for k, m in bins.items() if m.any()}
    out["float32_vs_float64_max_abs_slope_diff_over_slope_se"] = float(
        (np.abs(p32["slope"] - p64["slope"]) / p64["slope_se"]).max())
    phenotype_df, phenotype_pos_df, covariates_df, genotype_df, variant_df = _load_inputs()
    dof = phenotype_df.shape[1] - 2 - covariates_df.shape[1]
    out["dof"] = dof

    # slope_se (float64) rebuilt from the committed float64 columns, as README describes
    import scipy.stats as st

    t_abs = st.t.isf(p64c["pval_nominal"].to_numpy() / 2, dof)
    se_rebuilt = np.abs(p64c["slope"].to_numpy()) / t_abs
    r = _rel(se_rebuilt, p64["slope_se"])
    near_one = p64["pval_nominal"].to_numpy() > 0.999
    out["float64_slope_se_rebuilt_from_pval_max_rel"] = {
        "pval<=0.999": float(r[~near_one].max()),
        "pval>0.999": float(r[near_one].max()) if near_one.any() else None,
        "n_pval>0.999": int(near_one.sum())}

    # tensorQTL's map_cis recomputes pval_nominal/slope/slope_se of the top variant in its
    # own way (float32 r^2); compare with the map_nominal row of the same pair
    cis_file = outdir / f"{PREFIX}.cis_qtl.txt.gz"
    if cis_file.exists():
        cis_df = pd.read_csv(cis_file, sep="\t", index_col=0)
        key = p32.set_index(["phenotype_id", "variant_id"])
        top = key.loc[list(zip(cis_df.index, cis_df["variant_id"], strict=True))]
        for col in ("pval_nominal", "slope", "slope_se", "af"):
            out[f"map_cis_top_vs_map_nominal_max_rel_{col}"] = float(
                _rel(cis_df[col].to_numpy(), top[col].to_numpy()).max())
        for col in ("ma_samples", "ma_count", "start_distance"):
            out[f"map_cis_top_vs_map_nominal_equal_{col}"] = bool(
                np.array_equal(cis_df[col].to_numpy(), top[col].to_numpy()))
        best = p32.loc[p32.groupby("phenotype_id", sort=False)["pval_nominal"].idxmin()]
        best = best.set_index("phenotype_id").loc[cis_df.index]
        out["map_cis_top_variant_equals_min_pval_pair_fraction"] = float(
            (best["variant_id"].to_numpy() == cis_df["variant_id"].to_numpy()).mean())

    # statsmodels OLS y ~ 1 + covariates + g (g: missing calls mean-imputed)
    geno = genotype_df[phenotype_df.columns]
    rng = np.random.default_rng(SEED)
    picks = list(rng.choice(len(p64), size=20, replace=False))
    picks.append(int(p64["pval_nominal"].idxmin()))  # strongest association
    missing_rows = np.flatnonzero(p64["variant_id"].isin(
        geno.index[(geno.to_numpy() == -9).any(axis=1)]).to_numpy())
    picks.extend(missing_rows[:: max(1, len(missing_rows) // 5)][:5].tolist())
    worst = {"pval64": 0.0, "slope64": 0.0, "slope_se64": 0.0,
             "pval32": 0.0, "slope32": 0.0, "slope_se32": 0.0}
    for j in picks:
        ph, vid = p64["phenotype_id"].iat[j], p64["variant_id"].iat[j]
        g = geno.loc[vid].to_numpy().astype(np.float64)
        miss = g == -9
        g[miss] = g[~miss].mean()
        X = sm.add_constant(np.column_stack([covariates_df.to_numpy(), g]))
        fit = sm.OLS(phenotype_df.loc[ph].to_numpy(np.float64), X).fit()
        ref = {"pval": fit.pvalues[-1], "slope": fit.params[-1], "slope_se": fit.bse[-1]}
        for name, frame in (("64", p64), ("32", p32)):
            for col, key in (("pval_nominal", "pval"), ("slope", "slope"),
                             ("slope_se", "slope_se")):
                rel = float(_rel(frame[col].iat[j], ref[key]))
                worst[key + name] = max(worst[key + name], rel)
    out["statsmodels_pairs_checked"] = len(picks)
    out["statsmodels_pairs_with_missing_genotypes"] = int(min(5, len(missing_rows)))
    out["statsmodels_max_rel"] = worst

    # PLINK 1 bed vs pgen
    plink1_file = _scratch(outdir) / "plink1_pairs.parquet"
    if plink1_file.exists():
        pb = pd.read_parquet(plink1_file)
        same = (pb["phenotype_id"].equals(p32["phenotype_id"])
                and pb["variant_id"].equals(p32["variant_id"]))
        out["plink1_vs_pgen_same_pairs_same_order"] = bool(same)
        if same:
            out["plink1_vs_pgen_slope_sign_agree_fraction"] = float(
                (np.sign(pb["slope"]) == np.sign(p32["slope"])).mean())
            for col in ("pval_nominal", "slope", "slope_se", "af"):
                out[f"plink1_vs_pgen_max_rel_{col}"] = float(_rel(pb[col], p32[col]).max())
            for col in ("ma_samples", "ma_count"):
                out[f"plink1_vs_pgen_equal_{col}"] = bool(pb[col].equals(p32[col]))
    out["has_rpy2"] = bool(core.has_rpy2)
    return out


STAGE_FUNCS = {
    "nominal32": stage_nominal32,
    "nominal64": stage_nominal64,
    "nominal_plink1": stage_nominal_plink1,
    "cis": stage_cis,
    "independent": stage_independent,
    "trans": stage_trans,
    "verify": stage_verify,
}


def _collect(outdir: Path) -> None:
    summary = {}
    for stage in STAGES:
        p = _summary_path(outdir, stage)
        if p.exists():
            summary[stage] = json.loads(p.read_text())
    (outdir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="all", choices=("all",) + STAGES)
    parser.add_argument("--outdir", type=Path, default=HERE)
    parser.add_argument("--keep-scratch", action="store_true",
                        help="keep _scratch/ (per-stage JSON, full float64 and PLINK 1 pairs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.outdir.mkdir(parents=True, exist_ok=True)
    if args.stage == "all":
        for stage in STAGES:
            LOG.info("stage %s", stage)
            subprocess.run([sys.executable, __file__, "--stage", stage,
                            "--outdir", str(args.outdir)], check=True)
        _collect(args.outdir)
        if not args.keep_scratch:
            shutil.rmtree(args.outdir / "_scratch")
        return 0
    import tensorqtl  # noqa: F401  (puts tensorqtl's own folder on sys.path: cis, core, ...)

    t0 = time.perf_counter()
    payload = STAGE_FUNCS[args.stage](args.outdir)
    payload["stage_wall_s"] = time.perf_counter() - t0
    _write_summary(args.outdir, args.stage, payload)
    LOG.info("stage %s done in %.1f s", args.stage, payload["stage_wall_s"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
