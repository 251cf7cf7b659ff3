"""The cluster recipes in deploy/: the sbatch script parses and gives every step its resources, the
dask-jobqueue script generates the job script users submit, the Kubernetes manifest is valid YAML
with a pull policy and credentials from a secret, and the container recipe builds and runs where
Docker is available."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_sbatch_parses_and_each_step_has_its_resources():
    script = DEPLOY / "slurm" / "dqtl.sbatch"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    steps = [s for s in re.split(r"\n(?=srun )", text) if s.startswith("srun ")]
    assert len(steps) == 2
    sched, workers = steps
    assert "dask scheduler" in sched and "--cpus-per-task" in sched and "--mem" in sched
    assert "dask worker" in workers and "--cpus-per-task" in workers and "--mem" in workers
    assert "--local-directory" in workers and "--ntasks-per-node=1" in workers
    assert "ssh -N -L 8787" in text  # the dashboard tunnel hint


def test_jobqueue_script_generates_the_worker_job_script(capsys):
    pytest.importorskip("dask_jobqueue")
    spec = importlib.util.spec_from_file_location("dqtl_slurm", DEPLOY / "slurm" / "dqtl_slurm.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(["g.vcz", "p.bed.gz", "c.txt", "out/x", "--account", "mylab", "--local-directory",
              "/local/scratch", "--interface", "lo", "--cores", "8", "--memory", "32GB",
              "--print-job-script"])
    script = capsys.readouterr().out
    assert "#SBATCH -A mylab" in script
    assert "#SBATCH --cpus-per-task=8" in script and "#SBATCH --mem=30G" in script
    assert "--local-directory /local/scratch" in script
    assert "distributed.cli.dask_worker" in script or "dask worker" in script or "dask-worker" in script


def test_kubernetes_manifest_pull_policy_and_secret_credentials():
    doc = yaml.safe_load((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text())
    assert doc["kind"] == "DaskCluster" and doc["apiVersion"].startswith("kubernetes.dask.org/")
    for role in ("worker", "scheduler"):
        for c in doc["spec"][role]["spec"]["containers"]:
            assert c["imagePullPolicy"] in ("IfNotPresent", "Always")
            assert any(e.get("secretRef", {}).get("name") == "dqtl-s3" for e in c["envFrom"])
            assert c["resources"]["limits"]["memory"]
    assert doc["spec"]["worker"]["replicas"] >= 1


def test_dockerfile_pins_dask_and_builds_where_docker_runs():
    text = (DEPLOY / "Dockerfile").read_text()
    assert '"dask[array]==${DASK_VERSION}"' in text and '"distributed==${DASK_VERSION}"' in text
    assert "docker build -f deploy/Dockerfile" in text
    docker = shutil.which("docker")
    if not docker or subprocess.run([docker, "info"], capture_output=True).returncode != 0:
        pytest.skip("Docker is not available here: the image build and its entry command are "
                    "checked where a Docker daemon runs")
    import dask

    root = DEPLOY.parent
    tag = "dqtl-ci-test:latest"
    build = subprocess.run([docker, "build", "-f", str(DEPLOY / "Dockerfile"), "-t", tag,
                            "--build-arg", f"DASK_VERSION={dask.__version__}", str(root)],
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([docker, "run", "--rm", tag, "dqtl", "--version"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.startswith("dqtl ")


@pytest.mark.distributed
def test_dashboard_link_logged_and_served(tmp_path, caplog):
    """With bokeh (the `distributed` extra) a scheduler serves its dashboard; a dqtl run on it
    logs the link, and the link answers."""
    import json
    import logging
    import os
    import sys
    import time
    import urllib.request

    pytest.importorskip("bokeh")
    from dqtl.cli.common import scheduler

    sched_file = tmp_path / "s.json"
    exe = shutil.which("dask")
    cli = [exe] if exe else [sys.executable, "-m", "dask"]
    proc = subprocess.Popen([*cli, "scheduler", "--host", "127.0.0.1", "--port", "0",
                             "--dashboard-address", "127.0.0.1:0", "--scheduler-file",
                             str(sched_file)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        address = json.loads(sched_file.read_text())["address"]
        with caplog.at_level(logging.INFO, logger="dqtl"), scheduler(address, progress=False) as client:
            link = client.dashboard_link
        assert f"dashboard: {link}" in caplog.text
        with urllib.request.urlopen(link.replace("/status", "/health"), timeout=30) as r:
            assert r.status == 200
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
