"""Atomic output: write into a temporary sibling, then rename into place.

No compute function writes files; writers use these helpers so that a failed or interrupted
run never leaves a partial output file behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dqtl.io.fs import absolute, basename, is_url, upload

__all__ = ["atomic_path", "atomic_dir"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish_mode(path: Path, *, directory: bool) -> None:
    """Give a temporary file/dir the permissions a normally created one would have
    (mkstemp/mkdtemp create them private: 0600/0700)."""
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the same folder; on success rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is untouched. For a URL
    (``s3://...``) the file is built locally and uploaded on success (an object appears whole).
    """
    if is_url(path) and not os.fspath(path).startswith("file://"):
        with tempfile.TemporaryDirectory(prefix="dqtl-upload-") as d:
            tmp_local = Path(d) / basename(os.fspath(path))
            yield tmp_local
            upload(tmp_local, os.fspath(path))
        return
    path = Path(absolute(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            _publish_mode(tmp_path, directory=tmp_path.is_dir())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success move it to ``path``.

    An existing ``path`` is replaced only after the new one is complete. For a URL the folder
    is built locally and uploaded on success.
    """
    if is_url(path) and not os.fspath(path).startswith("file://"):
        with tempfile.TemporaryDirectory(prefix="dqtl-upload-") as d:
            tmp_local = Path(d) / basename(os.fspath(path))
            tmp_local.mkdir()
            yield tmp_local
            upload(tmp_local, os.fspath(path))
        return
    path = Path(absolute(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _publish_mode(tmp, directory=True)
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
