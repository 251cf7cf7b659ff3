"""Tests of dqtl.io.expression: GCT/TSV/CSV/parquet readers, count checks, sample tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dqtl.errors import InputError
from dqtl.io.expression import (
    expression_format,
    parse_sex,
    read_expression_matrix,
    read_reported_sex,
    read_sample_participant_lookup,
    validate_counts,
    write_gct,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "expression"
SAMPLES = ["GTEX-1111-0001", "GTEX-2222-0001", "GTEX-3333-0001"]
GENES = ["ENSG00000223972.5", "ENSG00000227232.5", "ENSG00000184731.5", "ENSG00000229807.10"]


def test_read_expression_matrix__gct_v12_header() -> None:
    counts, desc = read_expression_matrix(DATA / "counts.gct", return_description=True)
    assert list(counts.index) == GENES and counts.index.name == "gene_id"
    assert list(counts.columns) == SAMPLES
    assert counts.dtypes.map(lambda t: t.kind).eq("i").all()
    assert counts.loc["ENSG00000229807.10"].tolist() == [3021, 4, 2210]
    assert desc is not None and desc.loc["ENSG00000229807.10"] == "XIST"


def test_read_expression_matrix__tsv_csv_parquet_agree(tmp_path: Path) -> None:
    tsv = read_expression_matrix(DATA / "tpm.tsv")
    csv = read_expression_matrix(DATA / "tpm.csv")
    pd.testing.assert_frame_equal(tsv, csv)
    assert tsv.loc["ENSG00000227232.5", "GTEX-2222-0001"] == 7.25
    # GTEx parquet: gene ids in the index named Name, a Description column
    gtex = tsv.copy()
    gtex.insert(0, "Description", ["a", "b", "c", "d"])
    gtex.index.name = "Name"
    gtex.to_parquet(tmp_path / "tpm.parquet")
    got, desc = read_expression_matrix(tmp_path / "tpm.parquet", return_description=True)
    pd.testing.assert_frame_equal(got, tsv)
    assert desc is not None and desc.tolist() == ["a", "b", "c", "d"]
    # parquet with the ids as a plain column
    tsv.reset_index().to_parquet(tmp_path / "plain.parquet")
    pd.testing.assert_frame_equal(read_expression_matrix(tmp_path / "plain.parquet"), tsv)


def test_read_expression_matrix__gzip_and_sample_subset(tmp_path: Path) -> None:
    counts = read_expression_matrix(DATA / "counts.gct")
    write_gct(counts, tmp_path / "c.gct.gz")
    back = read_expression_matrix(tmp_path / "c.gct.gz", sample_ids=SAMPLES[::-1])
    pd.testing.assert_frame_equal(back, counts[SAMPLES[::-1]])
    with pytest.raises(InputError, match="not columns of the matrix"):
        read_expression_matrix(tmp_path / "c.gct.gz", sample_ids=["nope"])


def test_expression_format__by_suffix() -> None:
    assert [expression_format(p) for p in ("a.gct.gz", "b.txt", "c.csv.gz", "d.parquet")] == [
        "gct", "tsv", "csv", "parquet"]
    with pytest.raises(InputError, match="cannot tell the expression matrix format"):
        expression_format("x.xlsx")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("#1.2\n3\t3\nName\tDescription\ta\tb\tc\ng1\tx\t1\t2\t3\ng2\ty\t1\t2\t3\n", "declares 3 genes"),
        ("#1.3\nName\tDescription\ta\n", "expected GCT line 2"),
        ("Name\tDescription\ta\ng1\tx\t1\n", "first line is '#1.2'"),
        ("#1.2\n2\t1\nName\tDescription\ta\ng1\tx\t1\ng1\ty\t2\n", "duplicated gene ids"),
        ("#1.2\n0\t1\nName\tDescription\ta\n", "empty matrix"),
        ("#1.2\n1\t2\nName\tDescription\ta\ta\ng1\tx\t1\t2\n", "duplicated column names"),
        ("#1.2\n1\t2\nName\tDescription\ta\tb\ng1\tx\t1\tfoo\n", "non-numeric value 'foo'"),
        ("#1.2\n1\t2\nName\tDescription\ta\tb\ng1\tx\t1\tNA\n", "missing or infinite value"),
    ],
)
def test_read_expression_matrix__bad_gct_one_clear_error(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "bad.gct"
    p.write_text(text)
    with pytest.raises(InputError, match=match) as err:
        read_expression_matrix(p, what="counts")
    assert str(p) in str(err.value)


def test_read_expression_matrix__missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_expression_matrix(tmp_path / "none.tsv")


def test_read_expression_matrix__empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.tsv").write_text("")
    with pytest.raises(InputError, match="empty"):
        read_expression_matrix(tmp_path / "e.tsv")


@pytest.mark.parametrize(
    ("values", "kwargs", "match"),
    [
        ([[1, -2], [3, 4]], {}, "negative counts"),
        ([[1.0, 2.5], [3.0, 4.0]], {}, "non-integer counts"),
        ([[1.0, np.nan], [3.0, 4.0]], {}, "missing or infinite counts"),
    ],
)
def test_validate_counts__bad_counts_one_clear_error(values: list, kwargs: dict, match: str) -> None:
    df = pd.DataFrame(values, index=["g1", "g2"], columns=["s1", "s2"])
    with pytest.raises(InputError, match=match) as err:
        validate_counts(df, **kwargs)
    assert "gene g" in str(err.value) and "sample s" in str(err.value)


def test_validate_counts__non_integer_allowed_and_integral_floats() -> None:
    validate_counts(pd.DataFrame([[1.0, 2.5]], index=["g"], columns=["a", "b"]), allow_non_integer=True)
    validate_counts(pd.DataFrame([[1.0, 2.0]], index=["g"], columns=["a", "b"]))
    with pytest.raises(InputError, match="duplicated gene ids"):
        validate_counts(pd.DataFrame([[1], [2]], index=["g", "g"], columns=["a"]))
    with pytest.raises(InputError, match="empty matrix"):
        validate_counts(pd.DataFrame(index=["g"], columns=[]))


def test_write_gct__round_trip_floats(tmp_path: Path) -> None:
    df = pd.DataFrame([[0.1, 1 / 3], [2.0, 1e-20]], index=pd.Index(["g1", "g2"], name="gene_id"),
                      columns=["a", "b"])
    write_gct(df, tmp_path / "x.gct")
    back = read_expression_matrix(tmp_path / "x.gct")
    pd.testing.assert_frame_equal(back, df)
    assert (tmp_path / "x.gct").read_text().splitlines()[:2] == ["#1.2", "2\t2"]


def test_read_sample_participant_lookup__with_and_without_header(tmp_path: Path) -> None:
    s = read_sample_participant_lookup(DATA / "sample_participant_lookup.txt")
    assert s.to_dict() == {f"GTEX-{k}-0001": f"GTEX-{k}" for k in ("1111", "2222", "3333")}
    (tmp_path / "l.txt").write_text("a\tA\nb\tB\n")
    assert read_sample_participant_lookup(tmp_path / "l.txt").to_dict() == {"a": "A", "b": "B"}
    (tmp_path / "d.txt").write_text("a\tA\na\tB\n")
    with pytest.raises(InputError, match="listed twice"):
        read_sample_participant_lookup(tmp_path / "d.txt")


def test_read_reported_sex__codes(tmp_path: Path) -> None:
    s = read_reported_sex(DATA / "sex.tsv")
    assert s.to_dict() == {"GTEX-1111": "F", "GTEX-2222": "M", "GTEX-3333": "F"}
    (tmp_path / "s.tsv").write_text("a\tMale\nb\t0\nc\tNA\n")
    got = read_reported_sex(tmp_path / "s.tsv")
    assert got["a"] == "M" and got[["b", "c"]].isna().all()
    (tmp_path / "bad.tsv").write_text("a\tyes\n")
    with pytest.raises(InputError, match="unrecognised sex code 'yes'"):
        read_reported_sex(tmp_path / "bad.tsv")
    assert parse_sex(pd.Series(["XX", "xy", "2", "1"])).tolist() == ["F", "M", "F", "M"]


def test_read_expression_matrix__r_row_names_and_quoted_csv(tmp_path: Path) -> None:
    want = pd.DataFrame([[1, 3], [2, 4]], index=pd.Index(["g1", "g2"], name="gene_id"),
                        columns=["S1", "S2"])
    (tmp_path / "r.tsv").write_text("S1\tS2\ng1\t1\t3\ng2\t2\t4\n")  # R write.table header
    pd.testing.assert_frame_equal(read_expression_matrix(tmp_path / "r.tsv"), want)
    (tmp_path / "q.csv").write_text('"gene","S1","S2"\n"g1",1,3\n"g2",2,4\n')
    pd.testing.assert_frame_equal(read_expression_matrix(tmp_path / "q.csv"), want)


def test_gzip_outputs__no_file_name_or_time_in_the_header(tmp_path: Path) -> None:
    """The gzip tables dqtl writes (GCT, phenotype BED, the cis tables) carry neither the staged
    temporary file's name nor a time in their gzip header: the same bytes from every run, and
    ``gunzip -N`` cannot restore a temporary name."""
    import gzip
    import time

    from dqtl.preprocess.expression import write_phenotype_bed
    from dqtl.workflows import write_table_gz

    df = pd.DataFrame([[0.1, 1 / 3], [2.0, 1e-20]], index=pd.Index(["g1", "g2"], name="gene_id"),
                      columns=["a", "b"])
    bed = pd.DataFrame({"#chr": ["1", "1"], "start": [10, 20], "end": [11, 21], "phenotype_id": ["g1", "g2"],
                        "a": [0.1, 2.0], "b": [1 / 3, 1e-20]})
    writers = {"x.gct.gz": lambda p: write_gct(df, p), "x.bed.gz": lambda p: write_phenotype_bed(bed, p),
               "x.txt.gz": lambda p: write_table_gz(bed, str(p))}
    for name, write in writers.items():
        blobs = []
        for i in range(2):
            (tmp_path / str(i)).mkdir(exist_ok=True)
            write(tmp_path / str(i) / name)
            blobs.append((tmp_path / str(i) / name).read_bytes())
            time.sleep(1.1 * (i == 0))  # a second apart: a header time would differ
        assert blobs[0] == blobs[1], name
        head = blobs[0]
        assert head[:2] == b"\x1f\x8b" and head[3] & 0x08 == 0, name  # FNAME flag unset
        assert head[4:8] == b"\x00\x00\x00\x00", name  # MTIME 0
        assert gzip.decompress(head), name
