"""Figures drawn beside the computation, in a second process.

A command's figures cost it up to a second of one core: importing matplotlib (~0.3 s) and drawing
(0.04-0.3 s per figure), on the critical path of a run that is otherwise 2-10 s. Inside
:func:`beside` (the ``dqtl`` command of a sub-command that draws) a figure process
(``python -m dqtl.figures``) starts with the command and imports matplotlib while the command
imports its own stack and reads its inputs; :func:`submit` stages the figure's file in the run's
:class:`~dqtl.io.fs.Publication` and sends the job, and the command goes on (the significant pairs,
the tables) while the figure is drawn. The publication waits for every figure before it moves
anything into place, and before it removes staged files when the run fails, so a run publishes
all its files or none, as before.

Without a figure process (library use, ``DQTL_FIGURES=inline``, a single CPU, an object-store
output) :func:`submit` draws at once, here. A job that fails raises its error when the
publication waits for it; if the figure process itself is lost, the job is drawn here (logged).
The figures are byte-identical either way (the same matplotlib draws them).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["beside", "submit", "draw", "FigureProcess"]

_EOF = object()
_service: FigureProcess | None = None


def draw(path: str, job: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
         title: str | None = None) -> None:
    """Draw one figure: ``job(*args, **kwargs)`` returns axes; the figure (with ``title``) is
    written as PNG to ``path``."""
    from dqtl.plot import save_figure

    ax = job(*args, **kwargs)
    if title is not None:
        ax.set_title(title)
    save_figure(ax, path)


class _Done:
    """A figure drawn here: its result (or error) at once."""

    def __init__(self, call: tuple[Any, ...]) -> None:
        self.error: BaseException | None = None
        try:
            draw(*call)
        except Exception as exc:  # raised where the publication waits, like a background job's
            self.error = exc

    def result(self) -> None:
        if self.error is not None:
            raise self.error

    def wait(self) -> None:
        pass


class _Pending:
    """A figure sent to the figure process: :meth:`result` waits for it (drawing it here if the
    process was lost); :meth:`wait` only waits (the run is being aborted)."""

    def __init__(self, future: Future[Any], call: tuple[Any, ...]) -> None:
        self.future = future
        self.call = call

    def result(self) -> None:
        try:
            self.future.result()
        except _Lost as exc:
            log.warning("the figure process ended (%s); drawing %s here", exc, self.call[0])
            draw(*self.call)

    def wait(self) -> None:
        with contextlib.suppress(BaseException):
            self.future.result()


class _Lost(RuntimeError):
    """The figure process ended or could not be reached."""


def _send(stream: Any, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _recv(stream: Any) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        return _EOF
    (n,) = struct.unpack("<Q", head)
    data = stream.read(n)
    if len(data) < n:
        return _EOF
    return pickle.loads(data)


class FigureProcess:
    """The figure process: jobs in over its stdin, results back over its stdout (length-prefixed
    pickles). A writer thread sends the jobs (a job larger than the pipe's buffer would block
    the command while the process draws the previous one: 0.14-0.3 s of a permutation run's
    tail); a reader thread completes the futures."""

    def __init__(self, preload: tuple[str, ...] = ()) -> None:
        import dqtl

        env = dict(os.environ)
        # the same dqtl as this process: its folder on the path, unless it is the environment's
        # site-packages (already there, and ahead of the standard library it must not be)
        root = os.path.realpath(os.path.dirname(os.path.dirname(os.path.abspath(dqtl.__file__))))
        site = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
        if root not in site:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        env["MPLBACKEND"] = "Agg"
        self.proc = subprocess.Popen([sys.executable, "-m", "dqtl.figures", *preload], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env, close_fds=True)
        self.lock = threading.Lock()
        self.futures: dict[int, Future[Any]] = {}
        self.count = 0
        self.lost: str | None = None
        self.outbox: queue.SimpleQueue[tuple[int, bytes] | None] = queue.SimpleQueue()
        self.reader = threading.Thread(target=self._read, name="dqtl-figures", daemon=True)
        self.reader.start()
        self.writer = threading.Thread(target=self._write, name="dqtl-figures-out", daemon=True)
        self.writer.start()

    def submit(self, call: tuple[Any, ...]) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            body = pickle.dumps(call, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # an argument that cannot travel: lost for this job only
            fut.set_exception(_Lost(f"its inputs cannot be sent: {exc}"))
            return fut
        with self.lock:
            if self.lost is not None:
                fut.set_exception(_Lost(self.lost))
                return fut
            jid = self.count
            self.count += 1
            self.futures[jid] = fut
        self.outbox.put((jid, body))
        return fut

    def _write(self) -> None:
        while (item := self.outbox.get()) is not None:
            try:
                _send(self.proc.stdin, item)
            except (OSError, ValueError) as exc:  # broken pipe, closed stdin
                with self.lock:
                    self._lose(f"cannot write to it: {exc}")
                return

    def _lose(self, why: str) -> None:
        """Fail every waiting job over to drawing here (caller holds the lock)."""
        if self.lost is None:
            self.lost = why
        for fut in self.futures.values():
            if not fut.done():
                fut.set_exception(_Lost(self.lost))
        self.futures.clear()

    def _read(self) -> None:
        while True:
            try:
                msg = _recv(self.proc.stdout)
            except Exception as exc:  # a garbled reply: treat as lost
                msg = _EOF
                why = f"unreadable reply: {exc}"
            else:
                why = f"exit code {self.proc.poll()}"
            with self.lock:
                if msg is _EOF:
                    self._lose(why)
                    return
                jid, ok, payload = msg
                fut = self.futures.pop(jid, None)
            if fut is not None:
                if ok:
                    fut.set_result(payload)
                else:
                    fut.set_exception(payload)

    def close(self) -> None:
        """End the process: every job was awaited by its publication, so nothing is lost by
        killing it (it may still be importing, for a command that drew nothing)."""
        with self.lock:
            pending = [f for f in self.futures.values() if not f.done()]
        for fut in pending:  # jobs nobody awaited (a caller without a publication)
            with contextlib.suppress(BaseException):
                fut.result()
        self.outbox.put(None)
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]
        self.reader.join(timeout=5)
        self.writer.join(timeout=5)


def _wanted() -> bool:
    if os.environ.get("DQTL_FIGURES", "").lower() == "inline":
        return False
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    return cpus >= 2


@contextlib.contextmanager
def beside(enabled: bool = True, preload: tuple[str, ...] = ()) -> Iterator[FigureProcess | None]:
    """Run the enclosed work with a figure process (when ``enabled`` and more than one CPU is
    available, unless ``DQTL_FIGURES=inline``); :func:`submit` sends figures to it. ``preload``:
    modules the jobs' arguments need (``pandas`` for data frames: 0.25 s and ~40 MiB), imported
    by the process before its first job."""
    global _service
    if not enabled or _service is not None or not _wanted():
        yield None
        return
    try:
        service = FigureProcess(preload)
    except OSError as exc:
        log.debug("no figure process (%s); figures are drawn in the command's process", exc)
        yield None
        return
    _service = service
    try:
        yield service
    finally:
        _service = None
        service.close()


def submit(pub: Any, final: str, job: Callable[..., Any], *args: Any, title: str | None = None,
           **kwargs: Any) -> None:
    """Stage ``final`` in ``pub`` and draw ``job(*args, **kwargs)`` (axes out) into it, with
    ``title``: in the figure process when one runs and ``final`` is local, else here and now.
    ``pub`` waits for it before it commits or aborts. ``job`` must be a module-level function
    and its arguments picklable."""
    from dqtl.io.fs import is_url

    path = pub.stage(final)
    call = (path, job, args, kwargs, title)
    if _service is None or is_url(path):
        pub.after(_Done(call))
    else:
        pub.after(_Pending(_service.submit(call), call))


def _portable(exc: BaseException) -> BaseException:
    """The job's error as it can travel back (its own type when picklable)."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _serve() -> None:
    """The figure process: import and warm matplotlib, then draw jobs until stdin closes."""
    import signal

    # Ctrl-C reaches the whole process group: the command handles it (and ends this process)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the replies
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    import dqtl.plot  # noqa: F401

    for name in sys.argv[1:]:  # what the jobs' arguments need to be unpickled
        importlib.import_module(name)
    # fonts, the text layout engine, legends and the PNG writer loaded before any job
    fig = Figure(figsize=(2, 2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], ".", label="warm")
    ax.legend(fontsize=8)
    ax.set_title("warm")
    fig.savefig(io.BytesIO(), dpi=30, format="png")
    while True:
        msg = _recv(inp)
        if msg is _EOF:
            break
        jid, body = msg
        reply: tuple[int, bool, BaseException | None] = (jid, True, None)
        try:
            draw(*pickle.loads(body))
        except BaseException as exc:
            reply = (jid, False, _portable(exc))
        _send(out, reply)
    out.flush()
    os._exit(0)


if __name__ == "__main__":  # pragma: no cover (the figure process; tests run it as users do)
    _serve()
