"""The log file of a CLI run: ``PREFIX.dqtl.<command>.log`` beside the run's outputs.

It holds the command line, the versions of dqtl and its stack, every input file named on the
command line with its size and modification time (the fingerprint the genotype cache uses too),
every log record of the run at INFO level or finer (whatever ``-q`` does to the terminal), the
wall time and the exit status. It is written while the run goes, in the temporary folder, and copied
into place when the run succeeded; a failed or interrupted run leaves no log file (the error line
on stderr says what happened), as it leaves no other output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["RunLog", "run_log_path"]


def run_log_path(args: Any) -> str | None:
    """Where the run log of parsed CLI ``args`` goes: ``args.run_log(args)`` when the sub-command
    defines it, else beside ``output_prefix`` / ``output`` (None: no log, e.g. ``dqtl check``)."""
    custom = getattr(args, "run_log", None)
    if callable(custom):
        return custom(args)
    target = getattr(args, "output_prefix", None) or getattr(args, "output", None)
    if not target:
        return None
    return f"{str(target).rstrip('/')}.dqtl.{args.command}.log"


def _fingerprints(argv: Sequence[str]) -> list[str]:
    out = []
    for a in argv:
        for token in a.split("=", 1)[-1:]:
            if os.path.exists(token) and not os.path.isdir(token):
                st = os.stat(token)
                mtime = datetime.fromtimestamp(st.st_mtime, tz=UTC).isoformat(timespec="seconds")
                out.append(f"  {os.path.abspath(token)}: {st.st_size:,} bytes, modified {mtime}")
            elif os.path.isdir(token):
                out.append(f"  {os.path.abspath(token)}: folder")
    return out


def _versions() -> str:
    from dqtl import __version__

    parts = [f"dqtl {__version__}", f"Python {platform.python_version()}"]
    for mod in ("numpy", "scipy", "pandas", "dask", "distributed", "xarray", "zarr"):
        m = sys.modules.get(mod)
        if m is not None:
            parts.append(f"{mod} {getattr(m, '__version__', '?')}")
    return ", ".join(parts)


class RunLog:
    """Context manager: log records of the ``dqtl`` logger to ``path`` for the run's duration."""

    def __init__(self, path: str, argv: Sequence[str], *, level: int = logging.INFO) -> None:
        from dqtl.io.fs import is_url

        self.path = path
        self.argv = list(argv)
        self.level = level
        self.remote = is_url(path)
        self.t0 = time.perf_counter()
        # written in the temporary folder while the run goes: a failed run creates nothing
        fd, self.tmp = tempfile.mkstemp(prefix="dqtl-log-", suffix=".log")
        os.close(fd)
        self.handler = logging.FileHandler(self.tmp, mode="w", encoding="utf-8")
        self.handler.setLevel(level)
        self.handler.setFormatter(logging.Formatter(
            "%(asctime)s %(name)s %(levelname)s: %(message)s", "%Y-%m-%d %H:%M:%S"))

    def _line(self, text: str) -> None:
        self.handler.acquire()
        try:
            stream = self.handler.stream
            if stream is not None:
                stream.write(text + "\n")
                stream.flush()
        finally:
            self.handler.release()

    def __enter__(self) -> RunLog:
        from dqtl.io.fs import PUBLISHED

        self.first_output = len(PUBLISHED)
        logger = logging.getLogger("dqtl")
        logger.addHandler(self.handler)
        if logger.level == logging.NOTSET or logger.level > self.level:
            logger.setLevel(self.level)
        started = datetime.now(UTC).isoformat(timespec="seconds")
        self._line(f"# dqtl run log, started {started} on {platform.node()}")
        self._line("# command: " + shlex.join(["dqtl", *self.argv]))
        self._line(f"# working directory: {os.getcwd()}")
        self._line(f"# {_versions()}")
        files = _fingerprints(self.argv)
        if files:
            self._line("# inputs and outputs named on the command line (size, modification time):")
            for f in files:
                self._line("#" + f)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        logging.getLogger("dqtl").removeHandler(self.handler)
        ok = exc_type is None or (exc_type is SystemExit and not getattr(exc, "code", 0))
        elapsed = time.perf_counter() - self.t0
        self._line(f"# finished: {'ok' if ok else 'failed'}, {elapsed:.1f} s wall time")
        self.handler.close()
        if ok:
            self.write_report(elapsed)
        self.finish(ok)

    def write_report(self, seconds: float) -> None:
        """``PREFIX.report.html`` listing the files this run published (none: no report)."""
        from dqtl.io.fs import PUBLISHED
        from dqtl.report import report_path, write_report

        outputs = PUBLISHED[self.first_output:]
        if not outputs:
            return
        final = report_path(self.path)
        fd, tmp = tempfile.mkstemp(prefix="dqtl-report-", suffix=".html")
        os.close(fd)
        try:
            write_report(final, command=self.argv, outputs=outputs, log_file=self.path,
                         seconds=seconds, write_to=tmp)
            _move_into_place(tmp, final, remote=self.remote)
        finally:
            with contextlib.suppress(OSError):
                os.remove(tmp)

    def finish(self, ok: bool) -> None:
        """Move the log into place (success) or remove it (failure)."""
        if not ok:
            with contextlib.suppress(OSError):
                os.remove(self.tmp)
            return
        try:
            _move_into_place(self.tmp, self.path, remote=self.remote)
        finally:
            with contextlib.suppress(OSError):
                os.remove(self.tmp)


def _move_into_place(tmp: str, final: str, *, remote: bool) -> None:
    """Copy a finished temporary file to its final place (its folder created if needed)."""
    if remote:
        from dqtl.io.fs import upload

        upload(tmp, final)
        return
    import shutil

    from dqtl.io.fs import make_output_folder

    dest = os.path.abspath(final)
    make_output_folder(os.path.dirname(dest), dest)
    staged = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.{os.getpid()}.tmp")
    shutil.copyfile(tmp, staged)
    os.replace(staged, dest)
