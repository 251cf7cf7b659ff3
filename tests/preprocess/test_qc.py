"""Tests of dqtl.preprocess.qc: gene filters, PCA outliers, sex check, QC report and plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dqtl.errors import InputError
from dqtl.preprocess.qc import (
    QC_COLUMNS,
    expression_pcs,
    gene_filter,
    infer_sex,
    outlier_sd,
    plot_expression_pca,
    plot_library_sizes,
    plot_sex_check,
    sample_qc,
    sex_check_genes,
    write_qc_report,
)
from dqtl.simulate_counts import simulate_counts


@pytest.fixture(scope="module")
def planted():
    return simulate_counts(1200, 120, seed=11, n_outliers=4, n_sex_swaps=5)


def _truth_flags(sim) -> list[str]:
    t = sim.truth
    return sorted(t.index[t["outlier"] | t["sex_swapped"]])


# ------------------------------------------------------------------------------------ gene filters
def test_gene_filter__exact_by_definition() -> None:
    rng = np.random.default_rng(0)
    n = 25  # 0.2 * 25 = 5 samples needed
    counts = pd.DataFrame(rng.integers(0, 8, size=(300, n)), index=[f"g{i}" for i in range(300)],
                          columns=[f"s{j}" for j in range(n)])
    tpm = pd.DataFrame(rng.choice([0.0, 0.05, 0.1, 0.2], p=[0.5, 0.3, 0.1, 0.1], size=(300, n)),
                       index=counts.index, columns=counts.columns)
    got = gene_filter(counts, tpm)
    want = [sum(tpm.iloc[i] >= 0.1) >= 5 and sum(counts.iloc[i] >= 6) >= 5 for i in range(300)]
    assert got.tolist() == want and 0 < sum(want) < 300
    # boundaries: exactly 5 samples at exactly the thresholds pass, 4 do not
    c = pd.DataFrame([[6] * 5 + [5] * 20, [6] * 4 + [100] * 0 + [0] * 21], columns=counts.columns)
    t = pd.DataFrame([[0.1] * 5 + [0.0] * 20, [1.0] * 25], columns=counts.columns)
    assert gene_filter(c, t).tolist() == [True, False]
    # TPM order does not matter (aligned by labels), thresholds are configurable
    shuffled = tpm.iloc[::-1, ::-1]
    assert gene_filter(counts, shuffled).equals(got)
    loose = gene_filter(counts, tpm, tpm_threshold=0.0, count_threshold=0, sample_frac_threshold=0.0)
    assert loose.all()


def test_gene_filter__bad_options_and_mismatched_tpm() -> None:
    c = pd.DataFrame([[1, 2]], index=["g"], columns=["a", "b"])
    with pytest.raises(InputError, match="sample_frac_threshold"):
        gene_filter(c, sample_frac_threshold=1.5)
    with pytest.raises(InputError, match="count_threshold"):
        gene_filter(c, count_threshold=-1)
    with pytest.raises(InputError, match="same samples"):
        gene_filter(c, pd.DataFrame([[1.0, 2.0]], index=["g"], columns=["a", "c"]))
    with pytest.raises(InputError, match="same genes"):
        gene_filter(c, pd.DataFrame([[1.0, 2.0]], index=["h"], columns=["a", "b"]))


# ------------------------------------------------------------------------------------ QC
def test_sample_qc__flags_planted_outliers_and_sex_swaps_only(planted) -> None:
    qc = sample_qc(planted.counts, annotation=planted.annotation, reported_sex=planted.reported_sex)
    t = qc.table
    assert sorted(qc.flagged) == _truth_flags(planted)
    truth = planted.truth.loc[t.index]
    assert t.index[t["reason"].str.contains("pca_outlier")].tolist() == truth.index[truth["outlier"]].tolist()
    assert t.index[t["reason"].str.contains("sex_mismatch")].tolist() == truth.index[truth["sex_swapped"]].tolist()
    # inferred sex is the true sex for every sample
    assert (t["inferred_sex"] == truth["true_sex"]).all()
    assert t["library_size"].tolist() == planted.counts.sum().astype(float).tolist()
    assert t["detected_genes"].tolist() == (planted.counts > 0).sum().tolist()
    assert list(qc.to_frame().columns[: len(QC_COLUMNS)]) == list(QC_COLUMNS)
    assert len(qc.chry_genes) == 8 and qc.xist_genes == [planted.annotation.index[planted.annotation.gene_name == "XIST"][0]]


def test_sample_qc__plain_sd_rule_is_masked_by_grouped_outliers(planted) -> None:
    """4 outliers of 120 inflate the plain SD (z ~ 5.4 < 6): the robust default still flags them."""
    truth = planted.truth["outlier"]
    sd = sample_qc(planted.counts, annotation=planted.annotation, outlier_method="sd").table
    mad = sample_qc(planted.counts, annotation=planted.annotation).table
    assert (sd.loc[truth[truth].index, "outlier_sd"] < 6).all()
    assert (mad.loc[truth[truth].index, "outlier_sd"] > 6).all()
    at4 = sample_qc(planted.counts, annotation=planted.annotation, outlier_method="sd",
                    outlier_sd_threshold=4.0)
    assert sorted(at4.flagged) == sorted(truth[truth].index)
    # without reported sex nothing is a mismatch; a huge cut flags nothing
    none = sample_qc(planted.counts, annotation=planted.annotation, outlier_sd_threshold=1e6)
    assert none.flagged == []


def test_sample_qc__sex_check_needs_genes(planted, caplog: pytest.LogCaptureFixture) -> None:
    ann = planted.annotation.assign(gene_name="")
    qc = sample_qc(planted.counts, annotation=ann, reported_sex=planted.reported_sex)
    assert qc.table["inferred_sex"].isna().all() and "sex check skipped" in caplog.text
    assert not qc.table["reason"].str.contains("sex_mismatch").any()
    # gene symbols from a GCT Description column stand in for the annotation's names
    qc2 = sample_qc(planted.counts, annotation=ann, gene_names=planted.annotation["gene_name"],
                    reported_sex=planted.reported_sex)
    assert sorted(qc2.flagged) == _truth_flags(planted)


def test_sex_check_genes__par_y_excluded() -> None:
    ann = pd.DataFrame({"chr": ["chrX", "chrY", "Y", "chrY", "1"],
                        "gene_name": ["XIST", "RPS4Y1", "DDX3Y", "CD99", "A"]},
                       index=["gx", "gy1", "gy2", "gpar_PAR_Y", "g1"])
    xist, chry = sex_check_genes(pd.Index(["g1", "gx", "gy1", "gy2", "gpar_PAR_Y"]), ann)
    assert xist == ["gx"] and chry == ["gy1", "gy2"]


def test_infer_sex__rule() -> None:
    got = infer_sex(np.array([50.0, 50.0, 1.0, 1.0, 10.0]), np.array([1.0, 50.0, 50.0, 1.0, 9.99]))
    assert got.tolist() == ["F", "M", "M", "M", "F"]


def test_expression_pcs__exact_and_randomized_match_svd() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 60))
    for scale in (8.0, 5.0, 3.0):  # three components well above the noise
        x += scale * np.outer(rng.normal(size=400), rng.normal(size=60))
    scores, evr = expression_pcs(x, n_pcs=3)
    xc = x - x.mean(axis=1, keepdims=True)
    u, s, _vt = np.linalg.svd(xc.T, full_matrices=False)
    np.testing.assert_allclose(np.abs(scores), np.abs(u[:, :3] * s[:3]), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(evr, s[:3] ** 2 / (s**2).sum(), rtol=1e-10)
    rnd, evr2 = expression_pcs(x, n_pcs=3, exact_max=10)
    np.testing.assert_allclose(rnd, scores, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(evr2, evr, rtol=1e-8)


def test_outlier_sd__robust_and_plain() -> None:
    x = np.array([[0.0], [1.0], [-1.0], [2.0], [50.0]])
    mad = 1.482602218505602 * 1.0  # median 1, |x - 1| = 1, 0, 2, 1, 49 -> MAD 1
    np.testing.assert_allclose(outlier_sd(x), np.abs(x[:, 0] - 1) / mad)
    np.testing.assert_allclose(outlier_sd(x, method="sd"), np.abs(x[:, 0] - x.mean()) / x.std(ddof=1))
    assert outlier_sd(np.ones((4, 2))).tolist() == [0, 0, 0, 0]


def test_sample_qc__bad_options(planted) -> None:
    with pytest.raises(InputError, match="outlier_sd_threshold"):
        sample_qc(planted.counts, outlier_sd_threshold=0)
    with pytest.raises(InputError, match="outlier_method"):
        sample_qc(planted.counts, outlier_method="iqr")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ report
def test_write_qc_report__table_and_pngs(planted, tmp_path: Path) -> None:
    qc = sample_qc(planted.counts, annotation=planted.annotation, reported_sex=planted.reported_sex)
    paths = write_qc_report(qc, tmp_path / "qc")
    assert [p.name for p in paths] == ["qc_samples.tsv", "library_size.png", "pca.png", "sex_check.png"]
    for p in paths[1:]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    tab = pd.read_csv(paths[0], sep="\t", keep_default_na=False)
    assert list(tab.columns[: len(QC_COLUMNS)]) == list(QC_COLUMNS)
    flagged = tab[tab["flagged"].astype(str) == "True"]
    assert sorted(flagged["sample"]) == _truth_flags(planted)
    assert set(flagged["reason"]) <= {"pca_outlier", "sex_mismatch"}


def test_write_qc_report__never_removes_other_files_of_the_folder(planted, tmp_path: Path) -> None:
    """--qc-report results: the user's other files in results/ stay (it used to be replaced)."""
    qc = sample_qc(planted.counts, annotation=planted.annotation, reported_sex=planted.reported_sex)
    out = tmp_path / "results"
    out.mkdir()
    (out / "my_notes.txt").write_text("keep me")
    (out / "sub").mkdir()
    (out / "sub" / "data.csv").write_text("1,2")
    write_qc_report(qc, out)
    assert (out / "my_notes.txt").read_text() == "keep me"
    assert (out / "sub" / "data.csv").read_text() == "1,2"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["my_notes.txt", "sub", "qc_samples.tsv", "library_size.png", "pca.png", "sex_check.png"])
    write_qc_report(qc, out)  # a rerun replaces its own four files only
    assert (out / "my_notes.txt").read_text() == "keep me" and len(list(out.iterdir())) == 6


def test_plots__take_ax_and_return_it(planted) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qc = sample_qc(planted.counts, annotation=planted.annotation, reported_sex=planted.reported_sex)
    fig, axes = plt.subplots(1, 3)
    try:
        for fn, ax in zip((plot_library_sizes, plot_expression_pca, plot_sex_check), axes, strict=True):
            assert fn(qc, ax=ax) is ax
            assert ax.get_xlabel()
        assert plot_expression_pca(qc) is not None
    finally:
        plt.close("all")
