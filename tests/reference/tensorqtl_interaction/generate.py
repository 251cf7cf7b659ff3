"""tensorQTL 1.0.10 interaction-mode reference outputs on the bundled GEUVADIS data.

Runs under the tensorQTL virtualenv, never inside the test suite; the same call the CLI makes for
``python -m tensorqtl geuvadis_ceu90_maf01 expression.bed.gz geuvadis --mode cis_nominal
--covariates covariates_without_cov1.txt --interaction interaction_cov1.txt
--maf_threshold_interaction 0.05`` (eigenMT on: ``run_eigenmt=True``)::

    /work/tqvenv/bin/python tests/reference/tensorqtl_interaction/generate.py

Also ``geuvadis.trans_qtl_pairs.parquet``: ``trans.map_trans(interaction_s=cov1,
return_sparse=True, pval_threshold=1e-4, maf_threshold=0.05)`` (no cis filter).

Writes ``geuvadis.cis_qtl_pairs.parquet`` (all contigs concatenated in tensorQTL's order) and
``geuvadis.cis_qtl_top_assoc.txt.gz`` (tensorQTL's own file, ``%.6g``), plus the same two from a
run with two terms (k = 2: cov1 and cov1 squared), prefix ``geuvadis_k2``: pairs only, because
tensorQTL 1.0.10 raises ``KeyError: 'pval_i'`` building its top table when k > 1 (its pairs are
written before that).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import sys
from pathlib import Path

os.environ.setdefault("DISABLE_PANDERA_IMPORT_WARNING", "True")

import pandas as pd  # noqa: E402

sys_path = str(Path(__file__).resolve().parents[1] / "tensorqtl")
HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2] / "dqtl" / "data" / "geuvadis"


def main() -> None:
    import torch
    from tensorqtl import cis, genotypeio, pgen  # noqa: F401
    from tensorqtl.core import read_phenotype_bed

    torch.set_num_threads(2)
    pr = pgen.PgenReader(str(DATA / "geuvadis_ceu90_maf01"))
    genotype_df = pr.load_genotypes()
    variant_df = pr.variant_df
    phenotype_df, phenotype_pos_df = read_phenotype_bed(str(DATA / "expression.bed.gz"))
    covariates_df = pd.read_csv(DATA / "covariates_without_cov1.txt", sep="\t", index_col=0).T
    inter = pd.read_csv(DATA / "interaction_cov1.txt", sep="\t", index_col=0, header=None)
    inter.index.name = None
    inter = inter.loc[phenotype_df.columns]
    inter.columns = ["cov1"]
    k2 = inter.assign(cov1sq=inter["cov1"] ** 2)
    sys.path.insert(0, sys_path)
    from generate import write_parquet  # the compact lossless writer of the cis references

    summary: dict = {}
    for prefix, idf in (("geuvadis", inter), ("geuvadis_k2", k2)):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                cis.map_nominal(genotype_df, variant_df, phenotype_df, phenotype_pos_df, prefix,
                                covariates_df=covariates_df, interaction_df=idf,
                                maf_threshold_interaction=0.05, run_eigenmt=True, output_dir=tmp,
                                write_top=True, write_stats=True)
            except KeyError as exc:  # tensorQTL 1.0.10 fails on the top table when k > 1
                print(f"{prefix}: tensorQTL raised KeyError {exc} after writing the pairs")
            parts = sorted(Path(tmp).glob(f"{prefix}.cis_qtl_pairs.*.parquet"),
                           key=lambda p: p.name.split(".")[-2])
            order = list(dict.fromkeys(phenotype_pos_df["chr"]))
            parts.sort(key=lambda p: order.index(p.name.split(".")[-2]))
            pairs = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
            summary[prefix] = {"columns": pairs.columns.tolist(), "n_pairs": len(pairs),
                               "n_phenotypes": int(pairs["phenotype_id"].nunique())}
            # size budget: every pair with the columns the tests compare (float32, as tensorQTL
            # computes them); for k = 2 the first 50 genes
            if prefix == "geuvadis":
                keep = ["phenotype_id", "variant_id", "b_g", "pval_gi", "b_gi"]
            else:
                pairs = pairs[pairs["phenotype_id"].isin(pairs["phenotype_id"].unique()[:50])]
                keep = ["phenotype_id", "variant_id", "b_g", "pval_g-cov1", "b_g-cov1",
                        "pval_g-cov1sq", "b_g-cov1sq"]
            pairs = pairs[keep].astype({c: "float32" for c in keep[2:]})
            write_parquet(pairs, HERE / f"{prefix}.cis_qtl_pairs.parquet")
            top = Path(tmp) / f"{prefix}.cis_qtl_top_assoc.txt.gz"
            if top.exists():
                shutil.copy(top, HERE / f"{prefix}.cis_qtl_top_assoc.txt.gz")


    # trans: tensorQTL's sparse interaction scan (every pair with p_gi <= 1e-4, no cis filter)
    from tensorqtl import trans

    tr = trans.map_trans(genotype_df, phenotype_df, covariates_df=covariates_df,
                         interaction_s=inter["cov1"], return_sparse=True, pval_threshold=1e-4,
                         maf_threshold=0.05, batch_size=20000)
    tr = tr.sort_values(["pval_gi", "variant_id", "phenotype_id"]).reset_index(drop=True)
    summary["trans"] = {"n_pairs": len(tr), "pval_threshold": 1e-4, "maf_threshold": 0.05}
    write_parquet(tr.astype({"pval_g": "float64", "pval_i": "float64", "pval_gi": "float64"}),
                  HERE / "geuvadis.trans_qtl_pairs.parquet")

    import json

    import tensorqtl

    summary["versions"] = {"tensorqtl": tensorqtl.__version__, "torch": torch.__version__}
    (HERE / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
