"""Phenotype BED and covariate readers: formats, layouts and bad input."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from dqtl.errors import InputError
from dqtl.io.phenotypes import align_samples, read_covariates, read_phenotype_bed


def write_bed(path, rows, samples=("a", "b", "c", "d", "e"), header=None):
    header = header or ["#chr", "start", "end", "phenotype_id", *samples]
    text = "\t".join(header) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows)
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


ROWS = [
    ["1", 99, 100, "g1", 0.1, 0.2, 0.3, 0.4, 0.5],
    ["1", 499, 500, "g2", 1, 2, 3, 4, 5.5],
    ["2", 10, 2000, "g3", 1, "NA", 3, 4, 2],
]


def test_read_phenotype_bed__tensorqtl_bed_gz_and_parquet_agree(tmp_path):
    a = read_phenotype_bed(write_bed(tmp_path / "p.bed.gz", ROWS))
    df = pd.read_csv(tmp_path / "p.bed.gz", sep="\t")
    df.to_parquet(tmp_path / "p.bed.parquet")
    b = read_phenotype_bed(tmp_path / "p.bed.parquet")
    assert list(a.phenotype_id.values) == ["g1", "g2", "g3"]
    assert list(a.sample_id.values) == ["a", "b", "c", "d", "e"]
    np.testing.assert_array_equal(a.phenotype_start.values, [99, 499, 10])
    np.testing.assert_array_equal(a.phenotype_values.values, b.phenotype_values.values)
    assert np.isnan(a.phenotype_values.values[2, 1])


def test_read_phenotype_bed__qtltools_six_columns(tmp_path):
    rows = [r[:4] + [r[3] + "_gene", "+"] + r[4:] for r in ROWS]
    header = ["#chr", "start", "end", "pid", "gid", "strand", "a", "b", "c", "d", "e"]
    ds = read_phenotype_bed(write_bed(tmp_path / "q.bed", rows, header=header))
    assert list(ds.phenotype_group.values) == ["g1_gene", "g2_gene", "g3_gene"]
    assert ds.sizes["samples"] == 5


def test_read_phenotype_bed__unsorted_input_is_sorted(tmp_path, caplog):
    rows = [ROWS[1], ROWS[0], ROWS[2]]
    with caplog.at_level("INFO"):
        ds = read_phenotype_bed(write_bed(tmp_path / "u.bed", rows))
    assert list(ds.phenotype_id.values) == ["g1", "g2", "g3"]
    np.testing.assert_array_equal(ds.phenotype_values.values[0], [0.1, 0.2, 0.3, 0.4, 0.5])
    assert "not sorted" in caplog.text


@pytest.mark.parametrize(
    ("rows", "header", "match"),
    [
        ([ROWS[0], ROWS[0]], None, "duplicated phenotype IDs"),
        (ROWS, ["#chr", "start", "end", "phenotype_id", "a", "a", "c", "d", "e"], "duplicated sample IDs"),
        ([["1", 99, 100, "g1", 0.1, "x", 0.3, 0.4, 0.5]], None, "non-numeric value 'x'"),
        ([["1", 99, 100, "g1", 0.1, "inf", 0.3, 0.4, 0.5]], None, "infinite value"),
        ([["1", 100, 100, "g1", 0.1, 0.2, 0.3, 0.4, 0.5]], None, "start < end"),
        ([["1", "a", 100, "g1", 0.1, 0.2, 0.3, 0.4, 0.5]], None, "expected an integer"),
        (ROWS, ["gene", "start", "end", "phenotype_id", "a", "b", "c", "d", "e"], "#chr"),
    ],
)
def test_read_phenotype_bed__bad_input_clear_error(tmp_path, rows, header, match):
    with pytest.raises(InputError, match=match):
        read_phenotype_bed(write_bed(tmp_path / "bad.bed", rows, header=header))


def test_read_phenotype_bed__empty_or_garbage_file(tmp_path):
    (tmp_path / "empty.bed").write_text("")
    with pytest.raises(InputError):
        read_phenotype_bed(tmp_path / "empty.bed")
    (tmp_path / "bin.bed.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(InputError):
        read_phenotype_bed(tmp_path / "bin.bed.gz")
    with pytest.raises(FileNotFoundError):
        read_phenotype_bed(tmp_path / "missing.bed")


def test_read_covariates__both_layouts_and_categorical(tmp_path, caplog):
    samples = ["a", "b", "c", "d", "e"]
    (tmp_path / "cov.txt").write_text(
        "id\t" + "\t".join(samples) + "\nPC1\t1\t2\t3\t4\t5\nsex\tF\tM\tF\tM\tM\n"
    )
    with caplog.at_level("INFO"):
        a = read_covariates(tmp_path / "cov.txt", sample_ids=samples)
    assert list(a.covariate_id.values) == ["PC1", "sex_M"]
    np.testing.assert_array_equal(a.covariate_values.values[:, 1], [0, 1, 0, 1, 1])
    assert "categorical" in caplog.text
    pd.DataFrame({"sample": samples, "PC1": [1, 2, 3, 4, 5]}).to_csv(tmp_path / "c2.tsv", sep="\t", index=False)
    b = read_covariates(tmp_path / "c2.tsv")
    assert list(b.sample_id.values) == samples and list(b.covariate_id.values) == ["PC1"]
    c = read_covariates(tmp_path / "c2.tsv", sample_ids=samples)
    np.testing.assert_array_equal(c.covariate_values.values, b.covariate_values.values)


def test_read_covariates__a_typo_in_a_numeric_column_is_an_error_naming_the_cell(tmp_path, capsys):
    samples = [f"s{i}" for i in range(10)]
    ages = ["40", "41", "4O", "39", "52", "33", "47", "45", "38", "50"]
    (tmp_path / "cov.txt").write_text("id\t" + "\t".join(samples) + "\nage\t" + "\t".join(ages)
                                      + "\nbatch\t" + "\t".join(["1", "2", "3"] * 3 + ["1"]) + "\n")
    with pytest.raises(InputError, match=r"covariate age is numeric except for 1 of 10 values \(sample s2 '4O'\)"):
        read_covariates(tmp_path / "cov.txt")
    ages[2] = "42"
    (tmp_path / "ok.txt").write_text("id\t" + "\t".join(samples) + "\nage\t" + "\t".join(ages)
                                     + "\nbatch\t" + "\t".join(["1", "2", "3"] * 3 + ["1"]) + "\n")
    num = read_covariates(tmp_path / "ok.txt")
    assert list(num.covariate_id.values) == ["age", "batch"]  # a numeric batch stays numeric
    cat = read_covariates(tmp_path / "ok.txt", categorical=["batch"])  # unless declared
    assert list(cat.covariate_id.values) == ["age", "batch_2", "batch_3"]
    with pytest.raises(InputError, match="not a covariate"):
        read_covariates(tmp_path / "ok.txt", categorical=["nope"])
    # the CLI: one line, exit 2
    from dqtl.cli.main import main

    sim = __import__("dqtl").simulate(n_samples=10, n_variants=50, n_phenotypes=2, seed=1)
    from dqtl.simulation_files import write_simulation

    f = {k: str(v[0]) for k, v in write_simulation(sim, tmp_path, formats=("zarr", "bed"), prefix="s").items()}
    (tmp_path / "bad.txt").write_text("id\t" + "\t".join(sim.sample_id.values.astype(str)) + "\nage\t"
                                      + "\t".join(ages[:2] + ["4O"] + ages[3:]) + "\n")
    rc = main(["-q", "cis", f["zarr"], f["bed"], str(tmp_path / "x"), "--covariates", str(tmp_path / "bad.txt"),
               "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--categorical-covariates age" in err and len(err.splitlines()) == 1


def test_read_covariates__missing_value_is_error(tmp_path):
    (tmp_path / "cov.txt").write_text("id\ta\tb\tc\nPC1\t1\tNA\t3\n")
    with pytest.raises(InputError, match="PC1 is missing or infinite for sample b"):
        read_covariates(tmp_path / "cov.txt")


def test_align_samples__order_and_errors():
    p, g, c = align_samples(["b", "a"], ["a", "b", "x"], ["a", "b"])
    np.testing.assert_array_equal(g, [1, 0])
    np.testing.assert_array_equal(c, [1, 0])
    with pytest.raises(InputError, match="not in the genotypes"):
        align_samples(["b", "z"], ["a", "b"])
    with pytest.raises(InputError, match="duplicated sample IDs"):
        align_samples(["b", "b"], ["a", "b"])
    with pytest.raises(InputError, match="no sample ID is shared"):
        align_samples(["q"], ["a"], intersect=True)


@pytest.mark.parametrize("header", [
    "#chr\tstart\tend\tphenotype_id\tS1\tS2",
    "\ufeff#chr\tstart\tend\tphenotype_id\tS1\tS2",
    "#chr\tstart\tend\tphenotype_id\tNA\tnull\t\tS 3 \t",
    '#chr\tstart\tend\tphenotype_id\t"S1"\tS2',
    "#chr\tstart\tend\tphenotype_id\tS\\1\tS2",
    "#chr\tstart\tend\tphenotype_id\tSé\tS2",
])
@pytest.mark.parametrize("end", ["\n", "\r\n"])
@pytest.mark.parametrize("gz", [False, True])
def test_read_table__header_split_here_as_pandas_reads_it(tmp_path, header, end, gz):
    """A table's first line without quotes or escapes is split here (0.3 against 17 ms for 500
    samples), into what ``pd.read_csv(nrows=1, dtype=str, na_filter=False)`` reads: byte-order
    mark and line end dropped, every field verbatim; other lines are left to pandas."""
    import gzip

    from dqtl.io.phenotypes import _first_line_fields

    text = f"{header}{end}1\t0\t1\tg1\t0.5\t0.25{end}"
    path = tmp_path / ("t.txt.gz" if gz else "t.txt")
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    want = pd.read_csv(path, sep="\t", header=None, nrows=1, dtype=str, keep_default_na=False,
                       na_filter=False).iloc[0].tolist()
    got = _first_line_fields(str(path))
    if '"' in header or "\\" in header:
        assert got is None
    else:
        assert got is not None
        assert got == want


@pytest.mark.parametrize("quoted", [False, True])
def test_read_phenotype_bed__header_names_verbatim_and_unnamed_column_refused(tmp_path, quoted):
    """Sample names that look like missing values ("NA", "null", "nan") are kept as written (pandas'
    default would read them all as NaN: a sample silently renamed "nan"); a header field with no
    name (an empty field, e.g. a trailing tab) is one clear error."""
    q = '"' if quoted else ""
    rows = "1\t0\t1\tg1\t0.5\t0.25\t1.5\n1\t5\t6\tg2\t0.1\t0.2\t0.3\n"
    path = tmp_path / "p.bed"
    path.write_text(f"#chr\tstart\tend\tphenotype_id\t{q}NA{q}\tnull\tnan\n{rows}")
    ds = read_phenotype_bed(path)
    assert [str(s) for s in ds["sample_id"].values] == ["NA", "null", "nan"]
    path.write_text(f"#chr\tstart\tend\tphenotype_id\t{q}S1{q}\tS2\t\n{rows}")
    with pytest.raises(InputError, match="header column 7 has no name"):
        read_phenotype_bed(path)


@pytest.mark.parametrize("name", ["t.txt.bz2", "t.tar.gz", "t.TXT.GZ"])
def test_read_table__header_compression_chosen_as_pandas_chooses_it(tmp_path, name):
    """The first line is read by the compression pandas infers from the name (the body's): a
    ``.tar.gz`` is a tar archive to pandas, so its header is left to pandas too."""
    from dqtl.io.phenotypes import _first_line_fields

    path = tmp_path / name
    text = b"#chr\tstart\tend\tphenotype_id\tS1\n1\t0\t1\tg1\t0.5\n"
    path.write_bytes(gzip.compress(text))
    want = None if name in ("t.txt.bz2", "t.tar.gz") else ["#chr", "start", "end", "phenotype_id", "S1"]
    assert _first_line_fields(str(path)) == want
