"""Tests of dqtl.io.annotation: TSS from GTF/GFF3/BED/tables, contig names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dqtl.errors import InputError
from dqtl.io.annotation import (
    ANNOTATION_COLUMNS,
    chrom_sort_key,
    read_gene_annotation,
    set_chrom_prefix,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "expression"
GTEX = Path(__file__).resolve().parents[1] / "reference" / "gtex_prepare_expression"


def test_read_gene_annotation__gtf_tss_by_strand() -> None:
    ann = read_gene_annotation(DATA / "genes.gtf")
    assert tuple(ann.columns) == ANNOTATION_COLUMNS and ann.index.name == "gene_id"
    # + strand: TSS = gene start; - strand: TSS = gene end (1-based)
    assert ann.loc["ENSG00000223972.5", ["strand", "tss"]].tolist() == ["+", 11869]
    assert ann.loc["ENSG00000227232.5", ["strand", "tss"]].tolist() == ["-", 29570]
    assert ann.loc["ENSG00000229807.10", ["chr", "gene_name", "tss"]].tolist() == ["chrX", "XIST", 73852753]
    # only gene rows (transcript/exon rows of the same genes are not extra records)
    assert len(ann) == 8


def test_read_gene_annotation__gtf_matches_gtex_gtf_to_tss_bed() -> None:
    """Same BED positions as GTEx pyqtl ``qtl.io.gtf_to_tss_bed`` (reference in tests/reference)."""
    ref = pd.read_csv(GTEX / "gtf_tss.tsv", sep="\t").set_index("gene_id")
    ann = read_gene_annotation(DATA / "genes.gtf").loc[ref.index]
    np.testing.assert_array_equal(ann["tss"] - 1, ref["start"])
    np.testing.assert_array_equal(ann["tss"], ref["end"])


def test_read_gene_annotation__gtf_without_gene_rows_uses_transcript_span() -> None:
    ann = read_gene_annotation(DATA / "transcripts_only.gtf")
    assert ann.loc["GA", ["start", "end", "tss"]].tolist() == [900, 2000, 900]
    assert ann.loc["GB", ["start", "end", "tss"]].tolist() == [5000, 7300, 7300]


def test_read_gene_annotation__gff3() -> None:
    ann = read_gene_annotation(DATA / "genes.gff3")
    assert list(ann.index) == ["ENSG00000186092", "ENSG00000238009", "ENSG00000229807"]
    assert ann.loc["ENSG00000186092", ["gene_name", "tss"]].tolist() == ["OR4F5", 65419]
    assert ann.loc["ENSG00000238009", "tss"] == 133723
    assert ann.loc["ENSG00000229807", ["chr", "gene_name"]].tolist() == ["X", "XIST"]


def test_read_gene_annotation__bed_and_tss_template_and_table_agree() -> None:
    gtf = read_gene_annotation(DATA / "genes.gtf")
    bed = read_gene_annotation(DATA / "genes.bed")
    assert bed.loc["ENSG00000227232.5", "tss"] == 29570
    np.testing.assert_array_equal(bed["tss"], gtf.loc[bed.index, "tss"])
    tpl = read_gene_annotation(DATA / "tss_template.bed")
    np.testing.assert_array_equal(tpl["tss"], gtf.loc[tpl.index, "tss"])
    table = read_gene_annotation(DATA / "genes_tss.tsv")
    np.testing.assert_array_equal(table["tss"], gtf.loc[table.index, "tss"])
    assert table["chr"].tolist() == ["1", "1"]


def test_read_gene_annotation__table_aliases_without_tss(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("GeneID,Chromosome,Start,End,Strand,Symbol\ng1,2,100,200,-,A\ng2,2,300,400,+,B\n")
    ann = read_gene_annotation(p)
    assert ann["tss"].tolist() == [200, 300] and ann["gene_name"].tolist() == ["A", "B"]


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("nostrand.bed", "chr1\t100\t200\tg1\n", "needs a strand"),
        ("short.gtf", "chr1\tx\tgene\t1\t2\n", "expected 9 tab-separated GTF fields"),
        ("noid.gtf", 'chr1\tx\tgene\t1\t2\t.\t+\t.\tgene_name "A";\n', "without a 'gene_id' attribute"),
        ("nogene.gtf", 'chr1\tx\tCDS\t1\t2\t.\t+\t.\tgene_id "A";\n', "no gene rows"),
        ("cols.tsv", "id\tfoo\ng1\t1\n", "expected columns gene_id, chr and tss"),
        ("pos.tsv", "gene_id\tchr\ttss\ng1\t1\tabc\n", "expected an integer position"),
        ("genes.xlsx", "x", "cannot tell the format"),
    ],
)
def test_read_gene_annotation__bad_input_one_clear_error(tmp_path: Path, name: str, text: str,
                                                          match: str) -> None:
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        read_gene_annotation(p)


def test_read_gene_annotation__duplicated_ids_keep_first(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "d.tsv"
    p.write_text("gene_id\tchr\ttss\ng1\tX\t10\ng1\tY\t10\n")
    ann = read_gene_annotation(p)
    assert ann["chr"].tolist() == ["X"]
    assert "occur more than once" in caplog.text


def test_chrom_sort_key__natural_order() -> None:
    names = ["chr10", "chrY", "chr2", "chrUn_1", "chrM", "chr1", "chrX", "chr22"]
    assert sorted(names, key=chrom_sort_key) == ["chr1", "chr2", "chr10", "chr22", "chrX", "chrY",
                                                 "chrM", "chrUn_1"]


def test_set_chrom_prefix__modes() -> None:
    assert set_chrom_prefix(["1", "chr2", "MT", "X"], "add").tolist() == ["chr1", "chr2", "chrM", "chrX"]
    assert set_chrom_prefix(["chr1", "2", "chrM"], "strip").tolist() == ["1", "2", "MT"]
    assert set_chrom_prefix(["chr1", "2"], "keep").tolist() == ["chr1", "2"]
    with pytest.raises(InputError, match="'keep', 'add' or 'strip'"):
        set_chrom_prefix(["1"], "bad")  # type: ignore[arg-type]
