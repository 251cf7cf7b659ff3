"""Package surface: every public export resolves; importing dqtl is cheap and side-effect free."""

from __future__ import annotations

import subprocess
import sys

import dqtl


def test_exports__every_name_in_all_resolves():
    for name in dqtl.__all__:
        assert getattr(dqtl, name) is not None, name
    assert callable(dqtl.simulate) and callable(dqtl.map_cis_nominal)


def test_import__does_not_import_heavy_modules():
    code = "import sys, dqtl; print(any(m.startswith(('dask', 'xarray', 'zarr')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cli__python_m_dqtl_version():
    out = subprocess.run([sys.executable, "-m", "dqtl", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"dqtl {dqtl.__version__}"
