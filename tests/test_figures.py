"""Figures drawn beside the run (dqtl.figures): the same bytes as drawn in the command's process,
published with the run's other files or not at all, errors raised where the run publishes, and a
lost figure process drawn here instead."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest

from dqtl import figures
from dqtl.io.fs import Publication
from dqtl.plot import plot_pvalue_histogram

pytestmark = pytest.mark.skipif(not figures._wanted(), reason="one CPU, or DQTL_FIGURES=inline")

P = np.random.default_rng(3).uniform(size=2_000) ** 1.5


def failing_plot(pvalues):
    """A figure job that fails (module-level: the figure process imports it)."""
    raise FileNotFoundError("no such p-values: missing.parquet")


def slow_histogram(pvalues, delay):
    """A figure job that takes a while (module-level: the figure process imports it)."""
    time.sleep(delay)
    return plot_pvalue_histogram(pvalues)


def _inline(path, *args, **kwargs):
    with Publication() as pub:
        figures.submit(pub, str(path), *args, **kwargs)
    return path.read_bytes()


def test_figure_process_draws_the_same_bytes_and_publishes_at_commit(tmp_path):
    want = _inline(tmp_path / "inline.png", plot_pvalue_histogram, P, pi0=0.8, title="t")
    with figures.beside() as service:
        assert service is not None
        pub = Publication()
        figures.submit(pub, str(tmp_path / "bg.png"), plot_pvalue_histogram, P, pi0=0.8, title="t")
        assert not (tmp_path / "bg.png").exists()  # staged until the publication commits
        assert service.count == 1
        pub.commit()
    assert (tmp_path / "bg.png").read_bytes() == want
    assert service.proc.poll() is not None  # ended with the block
    assert sorted(os.listdir(tmp_path)) == ["bg.png", "inline.png"]


def test_a_failing_figure_fails_the_publication_and_leaves_nothing(tmp_path):
    with figures.beside():
        pub = Publication()
        with open(pub.stage(str(tmp_path / "table.txt")), "w") as fh:
            fh.write("x")
        figures.submit(pub, str(tmp_path / "qq.png"), failing_plot, P)
        with pytest.raises(FileNotFoundError, match="missing.parquet"):
            pub.commit()
    assert os.listdir(tmp_path) == []


def test_abort_waits_for_a_figure_before_removing_its_file(tmp_path):
    with figures.beside():
        pub = Publication()
        figures.submit(pub, str(tmp_path / "slow.png"), slow_histogram, P, 0.5)
        pub.abort()
        time.sleep(0.2)
    assert os.listdir(tmp_path) == []


def test_a_lost_figure_process_is_drawn_here(tmp_path, caplog):
    want = _inline(tmp_path / "inline.png", plot_pvalue_histogram, P)
    with figures.beside() as service:
        service.proc.kill()
        service.proc.wait()
        with caplog.at_level(logging.WARNING, logger="dqtl.figures"), Publication() as pub:
            figures.submit(pub, str(tmp_path / "bg.png"), plot_pvalue_histogram, P)
    assert (tmp_path / "bg.png").read_bytes() == want
    assert "figure process ended" in caplog.text


def test_without_the_process_figures_are_drawn_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("DQTL_FIGURES", "inline")
    with figures.beside() as service:
        assert service is None
        pub = Publication()
        figures.submit(pub, str(tmp_path / "a.png"), plot_pvalue_histogram, P)
        staged = [tmp for tmp, _ in pub.staged]
        assert os.path.getsize(staged[0]) > 0  # drawn already
        pub.commit()
    assert (tmp_path / "a.png").exists()


def test_cis_starts_a_figure_process_only_when_it_draws():
    """The figure process costs a second process's start-up and memory: only runs that draw
    through it start one."""
    from dqtl.cli.main import build_parser

    parser = build_parser()

    def draws(*extra):
        args = parser.parse_args(["cis", "g.vcz", "p.bed", "out", *extra])
        return args.figures(args)

    assert draws("--mode", "permute") and draws("--mode", "independent")
    assert not draws("--mode", "independent", "--cis-results", "x.cis_qtl.txt.gz")
    assert draws("--mode", "permute", "--interaction", "i.txt")
    assert draws("--mode", "nominal") and not draws("--mode", "nominal", "--interaction", "i.txt")
    assert not draws("--mode", "permute", "--contexts", "c.txt")
    # the permutation figures take data frames: the process imports pandas before its first job
    imports = parser.parse_args(["cis", "g.vcz", "p.bed", "out", "--mode", "permute"])
    assert imports.figure_imports(imports) == ("pandas",)
    imports = parser.parse_args(["cis", "g.vcz", "p.bed", "out"])
    assert imports.figure_imports(imports) == ()


def test_tensorqtl_dropin_and_example_start_it_only_for_cis_maps():
    from dqtl.cli.main import build_parser

    parser = build_parser()
    for mode, expected in (("cis", True), ("cis_nominal", True), ("trans", False),
                           ("cis_independent", False)):
        args = parser.parse_args(["tensorqtl", "g", "p", "out", "--mode", mode])
        assert args.figures(args) is expected
    args = parser.parse_args(["tensorqtl", "g", "p", "out", "--mode", "cis_nominal",
                              "--interaction", "i.txt"])
    assert args.figures(args) is False
    assert not getattr(parser.parse_args(["example", "out"]), "figures", False)
