"""``dqtl example``: the README's main job on the bundled GEUVADIS data."""

from __future__ import annotations

import pandas as pd

from dqtl.cli.main import main
from tests.conftest import REFERENCE


def test_cli_example__writes_pairs_top_table_and_plot(tmp_path):
    assert main(["-q", "example", str(tmp_path), "--no-progress"]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["geuvadis.cis_nominal.png", "geuvadis.cis_qtl_pairs.1.parquet",
                     "geuvadis.cis_qtl_pairs.2.parquet", "geuvadis.cis_qtl_pairs.qq.png",
                     "geuvadis.dqtl.example.log", "geuvadis.report.html",
                     "geuvadis.top_pairs.tsv", "geuvadis.vcz"]
    png = (tmp_path / "geuvadis.cis_nominal.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    top = pd.read_csv(tmp_path / "geuvadis.top_pairs.tsv", sep="\t")
    assert len(top) == 428 and top.pval_nominal.is_monotonic_increasing
    ref = pd.read_parquet(REFERENCE / "tensorqtl" / "geuvadis.cis_qtl_pairs.parquet")
    best = ref.loc[ref.groupby("phenotype_id").pval_nominal.idxmin()].set_index("phenotype_id")
    assert (top.set_index("phenotype_id").variant_id == best.variant_id.loc[top.phenotype_id]).mean() > 0.99
    # a second run reuses the converted store
    assert main(["-q", "example", str(tmp_path), "--no-progress"]) == 0
