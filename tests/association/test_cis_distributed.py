"""The same cis scan on a real distributed cluster gives identical results to the threaded run."""

from __future__ import annotations

import numpy as np
import pytest
from distributed import Client

from dqtl.association.cis import map_cis_nominal
from tests.association.test_cis import make_data

pytestmark = pytest.mark.distributed


def test_map_cis_nominal__distributed_cluster_identical_to_threads(dask_cluster):
    G, P, Cv, *_ = make_data(seed=11, v=800, p=20, chunks=97)
    threaded = map_cis_nominal(G, P, Cv, window=600_000)
    with Client(dask_cluster.address) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        dist = map_cis_nominal(G, P, Cv, window=600_000)  # the active Client runs it
        # both workers did work
        who = client.run(lambda dask_worker: len(dask_worker.data) + dask_worker.state.executed_count)
        assert all(v > 0 for v in who.values())
    for name in threaded.data_vars:
        np.testing.assert_array_equal(dist[name].values, threaded[name].values, err_msg=name)
