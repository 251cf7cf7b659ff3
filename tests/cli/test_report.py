"""Pictures and the HTML report the commands write: a QQ plot with lambda_GC for nominal pairs, the
p-value histogram with pi0 and a gene Manhattan plot for permutations, and PREFIX.report.html
linking every file of the run (each link must exist) with the plots embedded."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

import dqtl
from dqtl import figures
from dqtl.cli.main import main
from dqtl.simulation_files import write_simulation


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a":
            self.hrefs.append(a["href"])
        if tag == "img" and str(a.get("src", "")).startswith("data:image/png;base64,"):
            self.images += 1


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    sim = dqtl.simulate(n_samples=150, n_variants=3000, n_phenotypes=60, fraction_egenes=0.4,
                        seed=4)
    return {k: str(v[0]) for k, v in write_simulation(sim, d, formats=("zarr", "bed", "covariates"),
                                                      prefix="s").items()}


def _image_ok(path) -> None:
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert float(np.asarray(img[..., :3]).std()) > 0.05  # something is drawn, not a blank canvas


@pytest.mark.parametrize("mode", ["nominal", "permute"])
def test_cis_plots_and_report(files, tmp_path, mode):
    out = tmp_path / "res" / "run"
    assert main(["-q", "cis", files["zarr"], files["bed"], str(out), "--covariates",
                 files["covariates"], "--mode", mode, "--permutations", "200", "--no-progress"]) == 0
    folder = out.parent
    pngs = sorted(p.name for p in folder.glob("*.png"))
    expected = (["run.cis_qtl_pairs.qq.png"] if mode == "nominal" else
                ["run.cis_qtl.manhattan.png", "run.cis_qtl.png", "run.cis_qtl.pvalues.png"])
    assert pngs == expected
    for p in pngs:
        _image_ok(folder / p)
    report = folder / "run.report.html"
    parser = _Links()
    parser.feed(report.read_text())
    assert parser.hrefs, "the report links no file"
    for href in parser.hrefs:
        assert (folder / href).exists(), href
    names = {p.name for p in folder.iterdir()} - {"run.report.html"}
    assert names == set(parser.hrefs)  # every file of the run is linked, the log included
    assert parser.images == len(pngs)
    assert "run.dqtl.cis.log" in parser.hrefs
    if mode == "nominal":
        log = (folder / "run.dqtl.cis.log").read_text()
        m = re.search(r"lambda_GC ([0-9.]+) over ([0-9]+) p-values", log)
        assert m, "no lambda_GC line in the log"
        pairs = sum(len(pd.read_parquet(f)) for f in folder.glob("run.cis_qtl_pairs.*.parquet"))
        assert int(m.group(2)) == pairs > 0  # every pair's p-value is in the QQ plot
        assert 0.8 < float(m.group(1)) < 3.0


def test_plot_functions_return_axes_and_lambda_matches_exact():
    from dqtl.plot import PValueSketch, genomic_inflation, plot_gene_manhattan, plot_qq_sketch

    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(size=200_000), rng.uniform(size=2000) ** 8])
    sk = PValueSketch()
    for block in np.array_split(p, 7):
        sk.add(block)
    assert sk.n == p.size
    assert abs(sk.lambda_gc() - genomic_inflation(p)) < 2e-3
    from scipy.stats import chi2

    med = float(np.median(p))  # lambda by special functions = scipy.stats' chi2, bit for bit
    assert genomic_inflation(p) == float(chi2.isf(med, 1) / chi2.ppf(0.5, 1))
    ax = plot_qq_sketch(sk)
    assert ax.get_xlabel() == "expected -log10 p" and "λ" in ax.get_legend().get_texts()[0].get_text()
    import pandas as pd

    ax2 = plot_gene_manhattan(pd.DataFrame({"contig": ["1", "1", "2"], "position": [1e6, 2e6, 5e5],
                                            "pval_beta": [1e-8, 0.3, 0.01], "qval": [1e-6, 0.5, 0.04]}))
    assert [t.get_text() for t in ax2.get_xticklabels()] == ["1", "2"]


def test_trans_qq_plot_and_lambda_from_every_test(files, tmp_path):
    """Trans keeps only hits; its QQ plot and lambda_GC come from exact p-values of sampled
    variants' tests (all of them at this size). With --pval-threshold 1 every test is a hit, so
    the summary's lambda can be checked against the exact one of all tests."""
    import json

    from dqtl.plot import genomic_inflation

    out = tmp_path / "t"
    assert main(["-q", "trans", files["zarr"], files["bed"], str(out), "--covariates",
                 files["covariates"], "--pval-threshold", "1", "--no-progress"]) == 0
    summary = json.loads((tmp_path / "t.trans_summary.json").read_text())
    pairs = pd.read_parquet(tmp_path / "t.trans_qtl_pairs.parquet")
    assert summary["n_tests_sampled_for_lambda"] == summary["n_tests"] == len(pairs)
    assert abs(summary["lambda_gc"] - genomic_inflation(pairs["pval"].to_numpy())) < 0.01
    _image_ok(tmp_path / "t.trans_qtl.qq.png")
    parser = _Links()
    parser.feed((tmp_path / "t.report.html").read_text())
    assert "t.trans_qtl.qq.png" in parser.hrefs


@pytest.mark.parametrize("mode", ["nominal", "permute"])
def test_cis_command_line_draws_without_pyplot_or_scipy_stats(files, tmp_path, mode):
    """A command-line run makes its figures as plain Agg figures (plot.new_axes/close_figure) and
    its statistics from scipy.special: neither pyplot (0.2 s) nor scipy.stats (0.3 s) is imported;
    a local run never imports distributed (0.13 s: dask imports it for a scheduler named by a
    string, and for a dask array passed to a delayed call)."""
    import subprocess
    import sys

    out = tmp_path / "run"
    code = ("import sys\nfrom dqtl.cli.main import main\n"
            f"rc = main(['-q', 'cis', {files['zarr']!r}, {files['bed']!r}, {str(out)!r}, '--covariates', "
            f"{files['covariates']!r}, '--mode', {mode!r}, '--permutations', '200', '--no-progress'])\n"
            "print(rc, [m for m in ('matplotlib', 'matplotlib.pyplot', 'scipy.stats', 'distributed') "
            "if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    # with more than one CPU a run's figures are drawn in the figure process (dqtl.figures):
    # the command's own process does not import matplotlib at all
    beside = figures._wanted()
    assert res.stdout.strip().splitlines()[-1] == ("0 []" if beside else "0 ['matplotlib']")
    assert list(tmp_path.glob("run*.png"))


def _virtio(root, devices):
    for i, (dev, features) in enumerate(devices):
        d = root / f"virtio{i}"
        d.mkdir(parents=True)
        (d / "device").write_text(f"0x{dev:04x}\n")
        (d / "features").write_text(features + "\n")
    return str(root)


def test_free_page_reporting_read_from_the_virtio_balloon(tmp_path):
    """A virtio balloon (device 5) with feature bit 5 negotiated reports free pages; a balloon
    without it, other devices, unreadable entries and no virtio bus do not."""
    from dqtl.cli.main import free_page_reporting

    bits = "0110010100000000"
    assert free_page_reporting(_virtio(tmp_path / "a", [(1, bits), (5, bits)]))
    assert not free_page_reporting(_virtio(tmp_path / "b", [(5, "0110000100000000"), (2, bits)]))
    assert not free_page_reporting(_virtio(tmp_path / "c", [(1, bits)]))
    (tmp_path / "d" / "virtio0").mkdir(parents=True)  # no device file
    assert not free_page_reporting(str(tmp_path / "d"))
    assert not free_page_reporting(str(tmp_path / "none"))


def test_command_turns_off_numpy_hugepage_advice_on_reporting_vms_unless_the_user_set_it(tmp_path):
    """``no_numpy_hugepages`` (the ``dqtl`` command's start): on a VM with free page reporting,
    numpy imported afterwards, or already imported, gives no MADV_HUGEPAGE advice; a user's
    ``NUMPY_MADVISE_HUGEPAGE`` stands; elsewhere numpy's default stays."""
    import os
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("numpy's huge-page advice is Linux only")
    bits = "0110010100000000"
    vm = _virtio(tmp_path / "vm", [(5, bits)])
    metal = _virtio(tmp_path / "metal", [(5, "0110000000000000")])
    get = "numpy._core.multiarray._get_madvise_hugepage()"
    base = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    default = subprocess.run([sys.executable, "-c", f"import numpy; print({get})"], capture_output=True,
                             text=True, env=base).stdout.strip()  # numpy's own (off on kernels before 4.6)
    cases = {  # D: numpy's default
        "before": (vm, "r = f(root); import numpy; import os; "
                   f"print(r, {get}, os.environ['NUMPY_MADVISE_HUGEPAGE'])", None, "True False 0"),
        "after": (vm, f"import numpy; a = {get}; print(f(root), a, {get})", None, "True D False"),
        "user": (vm, f"r = f(root); import numpy; print(r, {get})", "1", "False True"),
        "metal": (metal, f"r = f(root); import numpy, os; print(r, {get}, 'NUMPY_MADVISE_HUGEPAGE' in os.environ)",
                  None, "False D False"),
    }
    for name, (root, code, user, expected) in cases.items():
        env = dict(base) if user is None else {**base, "NUMPY_MADVISE_HUGEPAGE": user}
        prog = f"from dqtl.cli.main import no_numpy_hugepages as f; root = {root!r}; {code}"
        res = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == expected.replace("D", default).split(), (name, res.stdout)


def test_command_allocator_settings_change_no_number(files, tmp_path):
    """The ``dqtl`` process tunes glibc's allocator (one heap, blocks reused: half the page
    faults); ``DQTL_MALLOC=system`` keeps the defaults. Same pairs, bit for bit, either way."""
    import os
    import subprocess
    import sys

    import pyarrow.parquet as pq

    code = "from dqtl.cli.main import tune_malloc; print(tune_malloc())"
    applied = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert applied.returncode == 0
    if sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION"):
        assert applied.stdout.strip() == "True"
    tables = []
    for setting in ("dqtl", "system"):
        out = tmp_path / setting / "run"
        res = subprocess.run(
            [sys.executable, "-m", "dqtl", "-q", "cis", files["zarr"], files["bed"], str(out),
             "--covariates", files["covariates"], "--mode", "nominal", "--no-progress"],
            capture_output=True, text=True, env={**os.environ, "DQTL_MALLOC": setting})
        assert res.returncode == 0, res.stderr
        tables.append([pq.read_table(f) for f in sorted((tmp_path / setting).glob("run.cis_qtl_pairs.*.parquet"))])
    assert tables[0] and len(tables[0]) == len(tables[1])
    assert all(a.equals(b) for a, b in zip(*tables, strict=True))


def test_command_defers_unused_numpy_subpackages(files, tmp_path):
    """The ``dqtl`` process imports numpy.f2py and numpy.testing lazily (scipy's array-API layer
    imports every numpy sub-package; nothing in a command uses these two): a command runs without
    executing them, a later attribute access still gets the real module (an ``import numpy.f2py`` statement
    after the first import reads the module's ``__spec__``, which loads it too), and the permutation
    table is the same with ``DQTL_LAZY_IMPORTS=0``."""
    import os
    import subprocess
    import sys

    code = ("import sys, numpy; from dqtl.cli.main import defer_unused_imports; "
            "print(defer_unused_imports(), defer_unused_imports()); import scipy.linalg; "
            "print(type(sys.modules['numpy.f2py']).__name__, 'numpy.f2py.crackfortran' in sys.modules); "
            "print(numpy.testing.assert_allclose.__name__, callable(numpy.f2py.run_main), "
            "'numpy.f2py.crackfortran' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[:3] == ["True False", "_LazyModule False", "assert_allclose True True"]
    # a command's own process: the run's cis table equal with and without the deferral
    tables = []
    for setting in ("1", "0"):
        out = tmp_path / setting / "run"
        res = subprocess.run(
            [sys.executable, "-m", "dqtl", "-q", "cis", files["zarr"], files["bed"], str(out),
             "--covariates", files["covariates"], "--mode", "permute", "--permutations", "50",
             "--no-progress"],
            capture_output=True, text=True, env={**os.environ, "DQTL_LAZY_IMPORTS": setting})
        assert res.returncode == 0, res.stderr
        tables.append(pd.read_csv(f"{out}.cis_qtl.txt.gz", sep="\t"))
    pd.testing.assert_frame_equal(tables[0], tables[1])
