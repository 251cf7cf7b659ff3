"""Shared fixtures: a real dask cluster (scheduler + worker processes), example data paths."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# converted genotype stores go to a temporary store per run in the tests (the cache is tested
# explicitly with --genotype-cache)
os.environ.setdefault("DQTL_GENOTYPE_CACHE", "none")

# scripts that generate reference outputs or fixtures run in their own environments (R,
# tensorQTL): they are not test modules, and --doctest-modules must not import them
collect_ignore_glob = ["reference/*", "data/*"]

EXAMPLE = Path(__file__).resolve().parents[1] / "dqtl" / "data" / "geuvadis"
REFERENCE = Path(__file__).resolve().parent / "reference"


def _dask_cli() -> list[str]:
    exe = shutil.which("dask")
    return [exe] if exe else [sys.executable, "-m", "dask"]


class DaskCluster:
    """A dask scheduler and worker processes started as users start them (``dask scheduler``,
    ``dask worker``), torn down at the end of the test module."""

    def __init__(self, tmp: Path, n_workers: int = 2) -> None:
        self.tmp = tmp
        self.scheduler_file = tmp / "scheduler.json"
        env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False", "PYTHONUNBUFFERED": "1"}
        self.env = env
        self.scheduler = subprocess.Popen(
            [*_dask_cli(), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(self.scheduler_file)],
            stdout=subprocess.DEVNULL, stderr=open(tmp / "scheduler.log", "w"), env=env,
            start_new_session=True,
        )
        deadline = time.time() + 60
        while not self.scheduler_file.exists():
            if time.time() > deadline or self.scheduler.poll() is not None:
                raise RuntimeError("dask scheduler did not start: " + (tmp / "scheduler.log").read_text())
            time.sleep(0.2)
        time.sleep(0.2)
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        self.workers: list[subprocess.Popen] = []
        for i in range(n_workers):
            self.add_worker(f"w{i}")
        if n_workers:
            self.wait_for_workers(n_workers)

    def add_worker(self, name: str, *, nthreads: int = 1, nanny: bool = True) -> subprocess.Popen:
        proc = subprocess.Popen(
            [*_dask_cli(), "worker", self.address, "--nthreads", str(nthreads), "--nworkers", "1",
             "--name", name, "--no-dashboard", "--memory-limit", "2GiB",
             "--local-directory", str(self.tmp / f"worker-{name}"),
             *([] if nanny else ["--no-nanny"])],
            stdout=subprocess.DEVNULL, stderr=open(self.tmp / f"worker-{name}.log", "w"),
            env=self.env, start_new_session=True,
        )
        self.workers.append(proc)
        return proc

    def wait_for_workers(self, n: int, timeout: float = 90) -> None:
        from distributed import Client

        with Client(self.address, timeout="30s") as c:
            c.wait_for_workers(n, timeout=timeout)

    def close(self) -> None:
        for p in [*self.workers, self.scheduler]:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in [*self.workers, self.scheduler]:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    cluster = DaskCluster(tmp_path_factory.mktemp("dask-cluster"))
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def example_dir() -> Path:
    return EXAMPLE


@pytest.fixture(autouse=True)
def _restore_dqtl_logger():
    """``dqtl.cli.main.main`` configures the ``dqtl`` logger (level, handler) as the CLI must;
    reset it around each test so one test's ``-q`` does not hide another test's log records."""
    import logging

    logger = logging.getLogger("dqtl")
    logger.setLevel(logging.NOTSET)  # a module fixture may have run the CLI before this test
    yield
    logger.setLevel(logging.NOTSET)
    logger.handlers.clear()
    logger.propagate = True
