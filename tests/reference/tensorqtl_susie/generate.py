"""tensorQTL 1.0.10 ``susie.map`` on the bundled GEUVADIS eGenes (reference for dqtl finemap).

Runs under the tensorQTL virtualenv, never inside the test suite::

    /work/tqvenv/bin/python tests/reference/tensorqtl_susie/generate.py

Inputs are loaded exactly as ``tests/reference/tensorqtl/generate.py`` does (its reader and
loader are reused); the eGenes are those of tensorQTL's own permutation pass in
``tests/reference/tensorqtl/geuvadis.cis_qtl.txt.gz`` (qval <= 0.05). Writes
``geuvadis.susie_cs.tsv`` (tensorQTL's summary: one row per credible-set variant) and
``geuvadis.susie_pips.tsv`` (every cis variant's PIP) beside this script.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
SPEC = importlib.util.spec_from_file_location("tq_reference", HERE.parent / "tensorqtl" / "generate.py")
tq_reference = importlib.util.module_from_spec(SPEC)
sys.modules["tq_reference"] = tq_reference
SPEC.loader.exec_module(tq_reference)


def main() -> int:
    import tensorqtl  # noqa: F401  (puts tensorqtl's own folder on sys.path: susie, cis, ...)
    import susie
    import torch

    phenotype_df, phenotype_pos_df, covariates_df, genotype_df, variant_df = tq_reference._load_inputs()
    cis_df = pd.read_csv(HERE.parent / "tensorqtl" / "geuvadis.cis_qtl.txt.gz", sep="\t")
    egenes = cis_df.loc[cis_df["qval"] <= 0.05, "phenotype_id"].tolist()
    sel = phenotype_df.index.isin(egenes)
    summary = susie.map(genotype_df, variant_df, phenotype_df.loc[sel], phenotype_pos_df.loc[sel],
                        covariates_df, L=10, summary_only=True, maf_threshold=0, window=1_000_000,
                        verbose=False)
    summary.to_csv(HERE / "geuvadis.susie_cs.tsv", sep="\t", index=False, float_format="%.10g")
    full = susie.map(genotype_df, variant_df, phenotype_df.loc[sel], phenotype_pos_df.loc[sel],
                     covariates_df, L=10, summary_only=False, maf_threshold=0, window=1_000_000,
                     verbose=False)
    if isinstance(full, tuple):  # (summary, full results by phenotype) when summary_only=False
        full = next(x for x in full if isinstance(x, dict))
    rows = []
    for pid, res in full.items():
        pip_df = res["pip"]
        for vid, pip in zip(pip_df.index, pip_df["pip"].to_numpy(), strict=True):
            rows.append((pid, vid, float(pip)))
    pd.DataFrame(rows, columns=["phenotype_id", "variant_id", "pip"]).to_csv(
        HERE / "geuvadis.susie_pips.tsv", sep="\t", index=False, float_format="%.10g")
    (HERE / "summary.json").write_text(json.dumps({
        "tensorqtl": "1.0.10", "torch": torch.__version__, "egenes": egenes,
        "call": "susie.map(genotype_df, variant_df, phenotype_df[egenes], phenotype_pos_df[egenes], "
                "covariates_df, L=10, summary_only=True|False, maf_threshold=0, window=1_000_000)",
        "n_cs_rows": int(len(summary)),
    }, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
