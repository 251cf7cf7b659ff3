"""Meta-analysis against metafor 3.8 (FE and DL), the streaming ``dqtl meta`` and its bad input."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dqtl.cli.main import main
from dqtl.errors import InputError
from dqtl.kernels.meta import META_COLUMNS, meta_analysis
from dqtl.meta import meta_pairs
from tests.cli.test_trans_cli import _MEASURE
from tests.conftest import REFERENCE

CASES = ["homogeneous_k2to8", "heterogeneous_k1to6"]


def _case(case):
    d = REFERENCE / "metafor" / case
    studies = pd.read_csv(d / "studies.tsv", sep="\t").dropna(subset=["slope"])
    return studies, pd.read_csv(d / "expected.tsv", sep="\t")


def _close(got, exp, cols):
    m = exp.merge(got, on=["phenotype_id", "variant_id"], suffixes=("", "_dqtl"))
    assert len(m) == len(exp)
    for c in cols:
        a, b = m[c].to_numpy(float), m[f"{c}_dqtl"].to_numpy(float)
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-14, err_msg=c)


@pytest.mark.parametrize("case", CASES)
def test_meta_analysis__equals_metafor(case):
    """Closed forms: measured agreement 3e-14 relative (all columns, both cases)."""
    studies, exp = _case(case)
    b = studies.pivot_table(index=["phenotype_id", "variant_id"], columns="study", values="slope")
    s = studies.pivot_table(index=["phenotype_id", "variant_id"], columns="study", values="slope_se")
    got = pd.DataFrame(meta_analysis(b.to_numpy(), s.to_numpy()), index=b.index).reset_index()
    _close(got, exp, META_COLUMNS)


@pytest.mark.parametrize("case", CASES)
def test_cli_meta__files_equal_metafor(case, tmp_path):
    studies, exp = _case(case)
    args = []
    for name, d in studies.groupby("study"):
        path = tmp_path / f"{name}.cis_qtl_pairs.1.parquet"
        half = len(d) // 2  # two per-contig files per study, given as a glob
        d.iloc[:half][["phenotype_id", "variant_id", "slope", "slope_se"]].to_parquet(path, index=False)
        d.iloc[half:][["phenotype_id", "variant_id", "slope", "slope_se"]].to_parquet(
            tmp_path / f"{name}.cis_qtl_pairs.2.parquet", index=False)
        args += ["--study", f"{name}={tmp_path}/{name}.cis_qtl_pairs.*.parquet"]
    out = tmp_path / "m"
    assert main(["-q", "meta", str(out), *args, "--memory-budget", "2MB", "--no-progress"]) == 0
    got = pd.read_parquet(f"{out}.meta_pairs.parquet")
    assert got.columns.tolist() == ["phenotype_id", "variant_id", "n_studies", "beta_fe", "se_fe",
                                    "pval_fe", "beta_re", "se_re", "pval_re", "tau2", "q_het",
                                    "pval_het", "i2"]
    _close(got, exp, [c for c in META_COLUMNS if c not in ("z_fe", "z_re")])
    # rows grouped by phenotype, sorted by variant within it
    assert not got.duplicated(["phenotype_id", "variant_id"]).any()


def test_meta_pairs__in_memory_api_and_tensorqtl_names():
    studies, exp = _case("heterogeneous_k1to6")
    frames = {name: d.rename(columns={"slope": "beta", "slope_se": "beta_se"})
              for name, d in studies.groupby("study")}
    got = meta_pairs(frames)
    _close(got, exp, ["beta_fe", "beta_re", "tau2", "i2", "pval_het"])


def _write_studies(tmp_path, tag, n, rng, genes):
    args, total = [], 0
    for s in range(3):
        idx = np.sort(rng.choice(n + n // 2, n, replace=False))
        df = pd.DataFrame({"phenotype_id": genes[idx % len(genes)],
                           "variant_id": [f"chr1_{i}_A_G" for i in idx],
                           "slope": rng.normal(0, 0.1, n), "slope_se": rng.uniform(0.02, 0.1, n)})
        path = tmp_path / f"{tag}{s}.parquet"
        df.to_parquet(path, index=False, row_group_size=50_000)  # parquet streams by row group
        total += pq.read_table(path).nbytes
        args += ["--study", f"s{s}={path}"]
    return args, total


def test_cli_meta__streams_inputs_larger_than_its_memory_budget(tmp_path):
    """Three studies of 150,000 and of 900,000 pairs each (6x; the large inputs are ~160 MB as
    Arrow, several times that as pandas) through a 16 MiB budget: the process peak does not grow
    with the inputs, and the rows equal the in-memory computation on a sample."""
    rng = np.random.default_rng(0)
    genes = np.array([f"ENSG{g:011d}" for g in range(5000)])
    small_args, _ = _write_studies(tmp_path, "a", 150_000, rng, genes)
    big_args, total = _write_studies(tmp_path, "b", 900_000, rng, genes)

    def peak(prefix, args):
        cmd = ["-q", "meta", str(tmp_path / prefix), *args, "--memory-budget", "16MB", "--no-progress"]
        proc = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return int([x for x in proc.stdout.splitlines() if x.startswith("VmHWM")][-1].split()[1]) * 1024

    p1, p6 = peak("small", small_args), peak("big", big_args)
    print(f"peak MiB: {p1 / 2**20:.0f} (1x) {p6 / 2**20:.0f} (6x); inputs {total / 2**20:.0f} MiB as Arrow")
    assert total > 150 * 2**20
    assert p6 <= 1.15 * p1, (p1 / 2**20, p6 / 2**20, total / 2**20)
    got = pd.read_parquet(f"{tmp_path}/big.meta_pairs.parquet")
    assert got["n_studies"].between(1, 3).all() and len(got) > 900_000
    some = got[got["phenotype_id"] == genes[7]]
    frames = {f"s{s}": pd.read_parquet(tmp_path / f"b{s}.parquet",
                                       filters=[("phenotype_id", "==", genes[7])]) for s in range(3)}
    ref = meta_pairs(frames)
    m = ref.merge(some, on=["phenotype_id", "variant_id"], suffixes=("", "_s"))
    assert len(m) == len(ref) == len(some) > 0
    np.testing.assert_allclose(m["beta_re"], m["beta_re_s"], rtol=1e-12)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.drop(columns="slope_se"), "no slope_se or beta_se column"),
    (lambda d: d.assign(slope_se=0.0), "standard errors > 0"),
    (lambda d: pd.concat([d, d.iloc[:1]]), "appears more than once"),
])
def test_cli_meta__bad_input_exit_2_no_output(tmp_path, capsys, edit, match):
    studies, _ = _case("homogeneous_k2to8")
    a = studies[studies["study"] == "study1"][["phenotype_id", "variant_id", "slope", "slope_se"]]
    a.to_parquet(tmp_path / "a.parquet", index=False)
    edit(a).to_parquet(tmp_path / "b.parquet", index=False)
    rc = main(["-q", "meta", str(tmp_path / "m"), "--study", f"a={tmp_path}/a.parquet", "--study",
               f"b={tmp_path}/b.parquet", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and match in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.glob("m.*")) and not list(tmp_path.glob(".m.*"))


def test_cli_meta__one_study_and_missing_files_rejected(tmp_path, capsys):
    assert main(["-q", "meta", str(tmp_path / "m"), "--study", "a=x.parquet"]) == 2
    assert main(["-q", "meta", str(tmp_path / "m"), "--study", f"a={tmp_path}/none*.parquet",
                 "--study", f"b={tmp_path}/none*.parquet"]) == 2
    with pytest.raises(InputError):
        meta_pairs({})
