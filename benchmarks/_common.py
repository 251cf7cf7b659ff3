"""Shared helpers of the cis benchmarks: BLAS environment, machine report, cached simulated data,
child processes with peak-RSS sampling, and Markdown tables.

Nothing here imports numpy at module level: :func:`prepare_blas_env` must run before numpy (and
with it OpenBLAS) is loaded, because OpenBLAS reads ``OPENBLAS_CORETYPE`` once, when it starts.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("dqtl.benchmarks")

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
DEFAULT_CACHE = Path(os.environ.get("DQTL_BENCH_CACHE", Path.home() / ".cache" / "dqtl-benchmarks"))
DEFAULT_TQ_PYTHON = "/work/tqvenv/bin/python"
TQ_RUNNER = BENCH / "tensorqtl_runner.py"

#: Environment variables this project's machines set for OpenBLAS (ARCHITECTURE.md section 6).
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# ---------------------------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------------------------
def prepare_blas_env(*, keep: bool) -> dict[str, str | None]:
    """Unset ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` together (unless ``keep``).

    Only this process and its children are affected (benchmarks only; tests and CI never do
    this). Returns the original values so the report can show them. Must run before numpy loads.
    """
    if "numpy" in sys.modules and not keep:
        raise RuntimeError("prepare_blas_env must run before numpy is imported")
    before = {k: os.environ.get(k) for k in BLAS_ENV}
    if not keep:
        for k in BLAS_ENV:
            os.environ.pop(k, None)
    return before


def blas_info() -> list[dict[str, Any]]:
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries (kernel, threads, version)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - optional
        return [{"error": "threadpoolctl is not installed (pip install threadpoolctl)"}]
    keep = ("internal_api", "version", "architecture", "num_threads", "threading_layer", "prefix")
    return [{k: d.get(k) for k in keep if d.get(k) is not None} for d in threadpool_info()]


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, memory, load average, versions and the BLAS actually loaded."""
    import numpy as np
    import psutil

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "host_cpu": cpu,
        "logical_cores": os.cpu_count(),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas_env": {k: os.environ.get(k) for k in BLAS_ENV},
        "blas": blas_info(),
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "dqtl"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + ("+dirty(dqtl)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# ---------------------------------------------------------------------------------------------
# simulated data (cached)
# ---------------------------------------------------------------------------------------------
def simulation_params(args: Any) -> dict[str, Any]:
    """The :func:`dqtl.simulation.simulate` keyword arguments of a benchmark's CLI arguments."""
    return {
        "n_samples": int(args.samples),
        "n_variants": int(args.variants),
        "n_phenotypes": int(args.phenotypes),
        "n_contigs": int(args.contigs),
        "contig_length": int(args.contig_length),
        "n_covariates": int(args.covariates),
        "seed": int(args.seed),
    }


def add_data_args(p: Any) -> None:
    """Arguments shared by the cis benchmarks (data size, cache, BLAS, tensorQTL python)."""
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--variants", type=int, default=100_000)
    p.add_argument("--phenotypes", type=int, default=2000)
    p.add_argument("--contigs", type=int, default=2, help="contigs (variants split evenly)")
    p.add_argument("--contig-length", type=int, default=10_000_000,
                   help="bp per contig (default 10 Mb: 100k variants -> ~10k per 2 Mb window)")
    p.add_argument("--covariates", type=int, default=3)
    p.add_argument("--seed", type=int, default=0, help="simulation seed")
    p.add_argument("--window", type=int, default=1_000_000)
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                   help="simulated inputs are cached here, keyed by their parameters")
    p.add_argument("--tensorqtl-python", default=DEFAULT_TQ_PYTHON,
                   help="python of the tensorQTL virtualenv ('' skips tensorQTL)")
    p.add_argument("--keep-blas-env", action="store_true",
                   help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE (default: unset both, this run only)")
    p.add_argument("--out", type=Path, default=None,
                   help="write the JSON record here (default: <cache-dir>/<benchmark>.json)")
    p.add_argument("--settle-mib", type=int, default=SETTLE_MIB,
                   help="MiB a throwaway process touches right before each timed process "
                   "(see settle(); 0: none)")


#: MiB the settle process touches before each timed process (:func:`settle`); 0: none
SETTLE_MIB = 1536


def settle(mib: int | None = None) -> float:
    """Touch and free ``mib`` MiB in a throwaway process right before a timed one; its wall seconds.

    On a VM that hands freed guest memory back to its host (free page reporting), the first
    process to touch fresh pages after another process freed them pays for the host to back them
    again: ~7 s per GiB of system time here (a dqtl run of 2.5 s took 3.8-4.0 s right after
    tensorQTL, 2.5-2.6 s after this step; sleeping 8 s instead did not help). Pages freed less
    than ~2 s earlier are reused without that cost, so each timed process, of either tool, starts
    just after this step and none pays for the one before it.
    """
    mib = SETTLE_MIB if mib is None else mib
    if mib <= 0:
        return 0.0
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import numpy as np; np.ones({mib} * 2**17).sum()"], check=True)
    return time.perf_counter() - t


def ensure_simulation(params: dict[str, Any], cache_dir: Path) -> dict[str, Path]:
    """Simulate and write zarr + BED + covariates + pgen once per parameter set; reuse after.

    Returns the input paths: ``zarr``, ``bed``, ``covariates``, ``pgen_prefix``, ``dir``.
    """
    key = "sim_" + "_".join(f"{k.removeprefix('n_')}{v}" for k, v in sorted(params.items()))
    d = Path(cache_dir) / key
    paths = {
        "dir": d,
        "zarr": d / "sim.vcz",
        "bed": d / "sim.expression.bed.gz",
        "covariates": d / "sim.covariates.txt",
        "pgen_prefix": d / "sim",
    }
    marker = d / "params.json"
    if marker.exists() and json.loads(marker.read_text()) == params:
        log.info("reusing simulated inputs in %s", d)
        return paths
    from dqtl.simulation import simulate
    from dqtl.simulation_files import write_simulation

    log.info("simulating %s into %s", params, d)
    t0 = time.perf_counter()
    tmp = d.with_name(d.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    ds = simulate(**params)
    write_simulation(ds, tmp, formats=("zarr", "bed", "covariates", "pgen", "truth"), prefix="sim")
    (tmp / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True) + "\n")
    if d.exists():
        shutil.rmtree(d)
    tmp.rename(d)
    log.info("simulated and wrote inputs in %.1f s", time.perf_counter() - t0)
    return paths


def subset_bed(bed: Path, n: int | None, out_dir: Path) -> Path:
    """BED with ``n`` of the phenotypes, evenly spaced along the file (``None``: the input).

    Taking every k-th row keeps the contigs' shares and the window sizes representative.
    """
    if not n:
        return bed
    import numpy as np
    import pandas as pd

    df = pd.read_csv(bed, sep="\t")
    if n >= len(df):
        return bed
    out = out_dir / f"sim.expression.subset{n}.bed.gz"
    if out.exists():
        return out
    keep = np.unique(np.linspace(0, len(df) - 1, n).round().astype(int))
    tmp = out.with_name(out.name + ".tmp.gz")
    df.iloc[keep].to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.17g")
    tmp.rename(out)
    return out


# ---------------------------------------------------------------------------------------------
# child processes
# ---------------------------------------------------------------------------------------------
class TreeRSSSampler:
    """Sample the summed RSS of a process and its descendants (psutil) in a thread."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
                self.peak = max(self.peak, total)
            except psutil.NoSuchProcess:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_child(cmd: Sequence[str], *, timeout: float | None = None,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a child that prints one JSON object as its last stdout line; add wall time and RSS.

    Adds ``process_wall_s`` (start to exit, including interpreter start and imports),
    ``tree_peak_rss_mib`` (psutil sampling of the child's process tree every 50 ms) and
    ``loadavg_before``/``loadavg_after``. ``env``: extra environment variables for the child.
    """
    log.info("running: %s%s", " ".join(map(str, cmd)), f" with {env}" if env else "")
    before = loadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env={**os.environ, **(env or {})})
    with TreeRSSSampler(proc.pid) as sampler:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            out, err = proc.communicate()
            raise RuntimeError(
                f"{cmd[0]} timed out after {timeout} s; stderr tail:\n{err[-3000:]}") from exc
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{err[-5000:]}")
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError(f"{cmd} printed no JSON; stderr tail:\n{err[-3000:]}")
    res = json.loads(lines[-1])
    res["process_wall_s"] = wall
    res["tree_peak_rss_mib"] = sampler.peak / 2**20
    res["loadavg_before"] = before
    res["loadavg_after"] = loadavg()
    return res


#: a child that runs ``dqtl`` (the arguments after ``-c CODE``) and prints its return code, peak
#: RSS (``VmHWM``, MiB) and the seconds of ``main()`` as one JSON line
CLI_CHILD = (
    "import sys, time, json; t0 = time.perf_counter(); from dqtl.cli.main import main; "
    "rc = main(sys.argv[1:]); "
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
    "print(json.dumps({'rc': rc, 'peak_rss_mib': int(hwm) / 1024, 'main_s': time.perf_counter() - t0}))"
)


def run_dqtl_process(argv: Sequence[str], pythonpath: str | None, cwd: Path) -> dict[str, Any]:
    """``dqtl ARGV`` in a child process (another checkout first on ``PYTHONPATH`` when given),
    started in ``cwd`` (outside the repository: a child started in it would import its dqtl
    first); :data:`CLI_CHILD`'s JSON plus ``process_wall_s``."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CLI_CHILD, *map(str, argv)], capture_output=True,
                          text=True, env=env, cwd=cwd)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = wall
    return res


def load_dqtl_inputs(args: Any) -> tuple[Any, Any, Any, float]:
    """Open the genotype store, phenotype BED and covariates of a worker's ``args`` (``zarr``,
    ``bed``, ``covariates_file``); return them with the seconds it took."""
    from dqtl.io.genotypes import open_genotypes
    from dqtl.io.phenotypes import read_covariates, read_phenotype_bed

    t0 = time.perf_counter()
    geno = open_genotypes(args.zarr)
    phen = read_phenotype_bed(args.bed)
    cov = read_covariates(args.covariates_file, sample_ids=phen["sample_id"].values)
    return geno, phen, cov, time.perf_counter() - t0


def cpu_s() -> float:
    """User + system CPU seconds of this process (all threads) so far."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def self_peak_rss_mib() -> float:
    """Peak RSS of this process (``getrusage``; Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------
# reporting
# ---------------------------------------------------------------------------------------------
def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub Markdown table of ``rows`` (dicts) with the given column keys."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:
                return "nan"
            if v == 0 or 1e-3 <= abs(v) < 1e6:
                return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
            return f"{v:.2e}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    head = "| " + " | ".join(columns) + " |"
    sep = "| " + " | ".join("---" for _ in columns) + " |"
    body = ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def write_record(record: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True, default=_json_default) + "\n")
    log.info("wrote %s", path)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(type(obj))
