"""The one compute helper: dask's own scheduling rules, one progress mechanism.

An active ``distributed.Client`` (the default client of the session) runs the graph; otherwise
the local threaded scheduler does. Nothing in the API takes a ``client=``: create a ``Client``
(or connect to a scheduler) before calling, as with any dask code. Progress is off by default;
``with dqtl.compute.show_progress():`` (the CLI's default) turns it on: dask's progress bar on
stderr locally, a log line every ``interval`` seconds on a cluster.

Every task runs with single-threaded BLAS, locally (``blas_threads=1``: the cores then also share
the decoding and statistics, not only the products) and on a cluster (a worker plugin pins BLAS
to one thread in every worker process, as distributed's nanny does by default, also for workers
started without a nanny). Beyond speed this is what makes results bit-identical across
executions: OpenBLAS gives different last bits for the same product with another number of
threads (ARCHITECTURE.md, "Determinism").
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import dask

__all__ = ["compute", "active_client", "show_progress", "single_threaded_blas", "local_workers",
           "local_threads", "map_ranges", "import_beside"]

log = logging.getLogger(__name__)


def active_client() -> Any:
    """The session's default ``distributed.Client``, or None (threads)."""
    if "distributed" not in sys.modules:  # no Client can exist without the module imported
        return None
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None


class _PinBlas:
    """Worker plugin: BLAS limited to one thread in the worker process (from setup on)."""

    name = "dqtl-single-threaded-blas"

    def setup(self, worker: Any = None) -> None:
        from threadpoolctl import threadpool_limits

        self._limits = threadpool_limits(limits=1, user_api="blas")

    def teardown(self, worker: Any = None) -> None:
        pass


_PINNED_CLIENTS: set[str] = set()


def _pin_cluster_blas(client: Any) -> None:
    """Register :class:`_PinBlas` on the client's cluster once (workers joining later get it)."""
    if client.id in _PINNED_CLIENTS:
        return
    from distributed.diagnostics.plugin import WorkerPlugin

    plugin = type("PinBlas", (_PinBlas, WorkerPlugin), {})()
    client.register_plugin(plugin, name=_PinBlas.name)
    _PINNED_CLIENTS.add(client.id)


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS on one thread for the computes in this block: locally for the block, on the
    session's cluster for every worker (see the module docstring). For dask collections that
    dqtl computes without :func:`compute` (e.g. ``svd_compressed``)."""
    client = active_client()
    if client is not None:
        _pin_cluster_blas(client)
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@contextlib.contextmanager
def show_progress(enabled: bool = True) -> Iterator[None]:
    """Show progress for the computes inside this block."""
    with dask.config.set({"dqtl.progress": bool(enabled)}):
        yield


def compute(
    tasks: Sequence[Any],
    *,
    label: str = "tasks",
    blas_threads: int | None = 1,
    cache: dict[Any, Any] | None = None,
    imports: Sequence[str] = (),
) -> list[Any]:
    """Compute dask collections (delayed tasks) and return their results in order.

    Parameters
    ----------
    tasks
        Dask collections; equal keys are computed once.
    label
        What the tasks are, for progress lines.
    blas_threads
        BLAS threads per dask thread on the local scheduler (None: leave BLAS alone).
    cache
        ``key -> result`` of tasks already computed (filled in).
    imports
        Modules the caller needs once the tasks are done: imported in a background thread
        while they run (the calling thread only waits then; e.g. the report's modules after
        permutations).
    """
    cache = {} if cache is None else cache
    uniq = [t for t in {_key(t): t for t in tasks}.values() if _key(t) not in cache]
    progress = bool(dask.config.get("dqtl.progress", False))
    if imports and uniq:
        import_beside(imports)
    if uniq:
        client = active_client()
        try:
            results = _run(uniq, client, label=label, progress=progress, blas_threads=blas_threads)
        except Exception as exc:
            if _is_decode_error(exc):
                from dqtl.errors import InputError

                raise InputError(
                    f"a chunk of an input store could not be decoded ({type(exc).__name__}: "
                    f"{' '.join(str(exc).split())[:160]}); the store is corrupt: run 'dqtl check STORE' "
                    "to find the chunk, then resync the store or convert the input again") from None
            raise
        cache.update({_key(t): r for t, r in zip(uniq, results, strict=True)})
    return [cache[_key(t)] for t in tasks]


def import_beside(modules: Sequence[str]) -> threading.Thread:
    """Import ``modules`` in a background thread (module locks make a later import of the same
    module wait for it); an import that fails is logged at debug level and left to the caller's
    own import, which raises."""
    def run() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception as exc:  # the caller's own import raises it where it matters
                log.debug("background import of %s failed: %s", name, exc)

    thread = threading.Thread(target=run, name="dqtl-imports", daemon=True)
    thread.start()
    return thread


def _is_decode_error(exc: BaseException) -> bool:
    """An error raised while decompressing or decoding a Zarr chunk (numcodecs, zarr codecs)."""
    mod = type(exc).__module__ or ""
    text = str(exc).lower()
    return (mod.startswith(("numcodecs", "zarr")) or "decompress" in text
            or "error during blosc" in text or ("codec" in text and "decode" in text))


def _run(uniq: Sequence[Any], client: Any, *, label: str, progress: bool,
         blas_threads: int | None) -> list[Any]:
    if client is not None:
        if blas_threads is not None:
            _pin_cluster_blas(client)
        return _compute_distributed(client, uniq, label=label, progress=progress)
    with contextlib.ExitStack() as stack:
        if blas_threads:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=blas_threads, user_api="blas"))
        if progress:
            stack.enter_context(local_progress(label))
        return _compute_threads(uniq)


def interactive() -> bool:
    """True when stderr is a terminal (live bars); otherwise progress is a log line now and then."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def local_progress(label: str, *, interval: float = 30.0) -> Any:
    """The one progress mechanism of the threaded scheduler, on stderr: dask's bar on a terminal,
    else a log line every ``interval`` seconds (a batch job's log gets a few lines, not a redrawn
    bar)."""
    if interactive():
        from dask.diagnostics import ProgressBar

        return ProgressBar(out=sys.stderr, dt=1.0)
    from dask.callbacks import Callback

    class _Lines(Callback):  # type: ignore[misc]
        def _start_state(self, dsk: Any, state: Any) -> None:
            self.t0 = self.last = time.perf_counter()
            self.total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            now = time.perf_counter()
            if now - self.last >= interval:
                self.last = now
                log.info("%s: %d/%d tasks done (%.0f s)", label, len(state["finished"]),
                         self.total, now - self.t0)

        def _finish(self, dsk: Any, state: Any, errored: bool) -> None:
            if not errored and time.perf_counter() - self.t0 >= interval:
                log.info("%s: done in %.0f s", label, time.perf_counter() - self.t0)

    return _Lines()


def _key(collection: Any) -> Any:
    """A delayed object's key, or a dask array's name."""
    key = getattr(collection, "key", None)
    return key if key is not None else collection.name


def local_workers() -> int:
    """Threads for local work: dask's ``num_workers`` setting, else the machine's cores."""
    import os

    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)


#: the least work (values) worth a thread of its own in an in-memory kernel
VALUES_PER_THREAD = 2_000_000


def local_threads(n_values: int, n_parts: int) -> int:
    """Threads for an in-memory kernel over ``n_values`` values cut at most ``n_parts`` ways:
    :func:`local_workers`, at most one per :data:`VALUES_PER_THREAD` values and one per part."""
    return min(local_workers(), n_values // VALUES_PER_THREAD, n_parts)


def map_ranges(func: Any, n: int, workers: int) -> list[Any]:
    """``[func(i0, i1), ...]`` over consecutive ranges covering ``0..n``, in order: one range
    when ``workers <= 1``, else ``2 * workers`` ranges on a local pool of ``workers`` threads
    (the in-memory kernels' way of using the cores; ``func`` must give the same numbers for any
    split)."""
    if workers <= 1:
        return [func(0, n)]
    from concurrent.futures import ThreadPoolExecutor

    parts = 2 * workers
    edges = [n * k // parts for k in range(parts + 1)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(func, edges[:-1], edges[1:]))


def _compute_threads(tasks: Sequence[Any]) -> list[Any]:
    """The threaded scheduler on a pool of our own: when a task fails, the tasks still running
    finish (and queued ones are cancelled) before the error propagates, so the caller's clean-up
    (removing staged files) never races a task that is still writing."""
    from concurrent.futures import ThreadPoolExecutor

    import dask.threaded

    pool = ThreadPoolExecutor(max_workers=local_workers())
    try:
        # the scheduler as a function: by name, dask imports distributed (0.13 s) to look for
        # a client on every compute
        return list(dask.compute(*tasks, scheduler=dask.threaded.get, pool=pool))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _compute_distributed(client: Any, tasks: Sequence[Any], *, label: str, progress: bool,
                         interval: float = 10.0) -> list[Any]:
    import warnings

    from distributed import as_completed

    t0 = last = time.perf_counter()
    with warnings.catch_warnings():  # the plan's arrays travel with the graph by design
        warnings.filterwarnings("ignore", message="Sending large graph")
        futures = client.compute(list(tasks))
    done = 0
    try:
        for _f in as_completed(futures):
            done += 1
            now = time.perf_counter()
            if progress and (now - last >= interval or done == len(futures)):
                last = now
                log.info("%s: %d/%d done (%.0f s)", label, done, len(futures), now - t0)
        return list(client.gather(futures))
    except BaseException:
        client.cancel(futures)  # tasks not yet started never run
        raise
