"""Local paths and fsspec URLs (``file://``, ``s3://``, ``gs://``, ...) behind one interface.

Every input and output path of the CLI and the API goes through here. Local paths stay plain
(absolute, so workers elsewhere on a shared file system find them); URLs are handed to fsspec,
whose protocol packages are optional extras (``pip install 'daskqtl[s3]'`` for s3fs, ``[gcs]`` for
gcsfs). S3-compatible servers are reached through the standard ``AWS_ENDPOINT_URL``
environment variable and the usual credential chain.

:class:`Publication` is the one atomic publish step of a run: outputs are written to staged
siblings and moved into place together when everything succeeded; on failure the staged files
are removed and existing outputs are left exactly as they were.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dqtl.errors import InputError

__all__ = [
    "PUBLISHED",
    "make_output_folder",
    "is_url",
    "filesystem",
    "exists",
    "absolute",
    "join",
    "parent",
    "basename",
    "open_file",
    "gzip_writer",
    "storage_options",
    "check_bucket",
    "localized",
    "localized_fileset",
    "upload",
    "Publication",
]

log = logging.getLogger(__name__)

_EXTRAS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}


def is_url(path: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` (including ``file://``)."""
    return "://" in str(path)


def absolute(path: str | os.PathLike[str]) -> str:
    """A URL as given; a local path made absolute (``file://`` URLs become local paths)."""
    s = os.fspath(path)
    if s.startswith("file://"):
        s = s[len("file://"):]
    if is_url(s):
        return s
    return str(Path(s).expanduser().absolute())


def _protocol(url: str) -> str:
    return url.split("://", 1)[0].lower()


def filesystem(path: str | os.PathLike[str]) -> tuple[Any, str]:
    """``(fsspec filesystem, path within it)`` for a local path or URL, with clear errors."""
    import fsspec

    s = absolute(path)
    if not is_url(s):
        return fsspec.filesystem("file"), s
    proto = _protocol(s)
    try:
        fs, p = fsspec.core.url_to_fs(s, **storage_options(s))
    except ImportError:
        pkg = _EXTRAS.get(proto)
        extra = {"s3fs": "s3", "gcsfs": "gcs", "adlfs": "azure"}.get(pkg or "", "")
        raise InputError(
            f"{s}: {proto}:// URLs need the {pkg} package: pip install 'daskqtl[{extra}]'"
            if pkg else f"{s}: no fsspec implementation for {proto}:// URLs is installed"
        ) from None
    except ValueError as exc:
        raise InputError(f"{s}: no fsspec implementation for {proto}:// URLs ({exc}); use a local "
                         "path or a URL such as s3://bucket/key or gs://bucket/key") from None
    return fs, p


def storage_options(url: str) -> dict[str, Any]:
    """fsspec options for ``url``: the S3 endpoint from ``AWS_ENDPOINT_URL`` when set."""
    if _protocol(url) in ("s3", "s3a"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            return {"client_kwargs": {"endpoint_url": endpoint}}
    return {}


def _remote_error(url: str, exc: BaseException) -> InputError:
    text = " ".join(str(exc).split()) or type(exc).__name__
    name = type(exc).__name__
    if "NoCredentials" in name or "credential" in text.lower():
        return InputError(f"{url}: no credentials for {_protocol(url)}:// (set AWS_ACCESS_KEY_ID/"
                          f"AWS_SECRET_ACCESS_KEY or a profile): {text}")
    if "NoSuchBucket" in text or "bucket" in text.lower() and "not" in text.lower():
        return InputError(f"{url}: the bucket does not exist: {text}")
    return InputError(f"{url}: {text}")


def exists(path: str | os.PathLike[str]) -> bool:
    """Whether a file or folder exists (a missing bucket or bad credentials raise InputError)."""
    s = absolute(path)
    if not is_url(s):
        return os.path.exists(s)
    check_bucket(s)
    fs, p = filesystem(s)
    try:
        return bool(fs.exists(p))
    except (FileNotFoundError, PermissionError):
        return False
    except Exception as exc:  # botocore/gcsfs errors: one clear line
        raise _remote_error(s, exc) from None


def check_bucket(url: str) -> None:
    """Raise InputError unless the bucket (or container) of an object-store URL exists.

    Buckets are never created by dqtl: a typo must not make a new bucket.
    """
    if not is_url(url) or _protocol(url) in ("file", "memory", "local"):
        return
    fs, p = filesystem(url)
    bucket = p.split("/", 1)[0]
    try:
        fs.info(bucket)  # raises (unlike exists) on missing credentials
        ok = True
    except (FileNotFoundError, PermissionError):
        ok = False
    except Exception as exc:
        raise _remote_error(url, exc) from None
    if not ok:
        raise InputError(f"{url}: the bucket {bucket!r} does not exist (or is not accessible with "
                         "these credentials); create it first or fix the URL")


def join(base: str, *parts: str) -> str:
    """Join path components (``/`` for URLs)."""
    if is_url(base):
        return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])
    return os.path.join(base, *parts)


def parent(path: str) -> str:
    if is_url(path):
        return path.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(absolute(path))


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] if is_url(path) else os.path.basename(path)


@contextlib.contextmanager
def open_file(path: str | os.PathLike[str], mode: str = "rb") -> Iterator[Any]:
    """Open a local path or URL (binary or text); missing files raise FileNotFoundError."""
    s = absolute(path)
    if not is_url(s):
        with open(s, mode) as f:
            yield f
        return
    fs, p = filesystem(s)
    try:
        f = fs.open(p, mode)
    except FileNotFoundError:
        raise FileNotFoundError(f"{s} does not exist") from None
    except Exception as exc:
        raise _remote_error(s, exc) from None
    with f:
        yield f


def gzip_writer(raw: Any, *, compresslevel: int = 9) -> Any:
    """A gzip stream writing into the binary file object ``raw`` with neither a file name nor a
    time in its header (``gzip`` would store ``raw``'s name, a staged temporary's, and the
    time): the same bytes from every run. Closing it does not close ``raw``."""
    import gzip

    return gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=compresslevel)


def _move_remote(src: str, dst: str) -> None:
    """Move an object, or every object under a prefix, on an object store (copy then delete)."""
    fs, p = filesystem(src)
    dest = filesystem(dst)[1]
    fs.invalidate_cache()
    objects = fs.find(p)  # real objects only (no pseudo-folders)
    if objects == [p] or not objects:
        fs.copy(p, dest)
        fs.rm(p)
    else:
        if fs.exists(dest):
            fs.rm(dest, recursive=True)
        for obj in objects:
            fs.copy(obj, dest + obj[len(p):])
        fs.rm(p, recursive=True)
    fs.invalidate_cache()


@contextlib.contextmanager
def localized(path: str | os.PathLike[str], *, what: str = "input") -> Iterator[str]:
    """A local path for ``path``: itself when local, else a downloaded copy (file or folder)
    removed on exit. For readers that need a local file (gzip text, native libraries)."""
    s = absolute(path)
    if not is_url(s):
        yield s
        return
    if not exists(s):
        raise FileNotFoundError(f"{what} {s} does not exist")
    import tempfile

    fs, p = filesystem(s)
    with tempfile.TemporaryDirectory(prefix="dqtl-download-") as d:
        local = os.path.join(d, basename(s))
        try:
            fs.get(p, local, recursive=fs.isdir(p))
        except Exception as exc:
            raise _remote_error(s, exc) from None
        yield local


@contextlib.contextmanager
def localized_fileset(path: str | os.PathLike[str], *, what: str = "input") -> Iterator[str]:
    """Like :func:`localized` for a file set: a URL's object and its siblings of the same stem
    (``x.pgen``: ``x.pvar``, ``x.psam``; ``x.vcf.gz``: ``x.vcf.gz.tbi``), or every ``prefix.*``
    of a prefix, downloaded side by side. Yields the local path or prefix."""
    s = absolute(path)
    if not is_url(s):
        yield s
        return
    import tempfile

    check_bucket(s)
    fs, p = filesystem(s)
    fs.invalidate_cache()
    name = basename(p)
    stem = name.split(".", 1)[0]
    folder = p.rsplit("/", 1)[0]
    try:
        siblings = [o for o in fs.ls(folder, detail=False) if basename(str(o)).startswith(stem + ".")]
    except FileNotFoundError:
        siblings = []
    if not siblings:
        raise FileNotFoundError(f"{what} {s} does not exist")
    with tempfile.TemporaryDirectory(prefix="dqtl-download-") as d:
        try:
            for o in siblings:
                fs.get(str(o), os.path.join(d, basename(str(o))), recursive=fs.isdir(str(o)))
        except Exception as exc:
            raise _remote_error(s, exc) from None
        yield os.path.join(d, name)


def upload(local: str | os.PathLike[str], url: str) -> None:
    """Copy a finished local file or folder to ``url`` (replacing what is there)."""
    check_bucket(url)
    fs, p = filesystem(url)
    try:
        if os.path.isdir(local):
            fs.invalidate_cache()
            if fs.exists(p):
                fs.rm(p, recursive=True)
            fs.put(os.fspath(local), p, recursive=True)
        else:
            fs.put_file(os.fspath(local), p)
    except Exception as exc:
        raise _remote_error(url, exc) from None
    fs.invalidate_cache()


def _remove_quietly(path: str) -> None:
    """Remove a file or folder of this run if it is there (clean-up never raises)."""
    with contextlib.suppress(Exception):
        fs, p = filesystem(path)
        fs.invalidate_cache()
        if fs.exists(p):
            fs.rm(p, recursive=True)


#: every output published in this process, in order (the CLI's run report lists a run's files)
PUBLISHED: list[str] = []


def make_output_folder(folder: str, output: str) -> None:
    """Create the folder of ``output`` (with its parents), or one clear line naming the output."""
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(f"output {output}: {folder} cannot be a folder (it, or a folder above "
                         "it, is a file); choose another output prefix") from None
    except PermissionError:
        raise InputError(f"output {output}: no permission to create or write {folder}; choose "
                         "another output prefix") from None


class Publication:
    """The atomic publish step of one run: stage every output, then move them all into place.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with Publication() as pub:
    ...     with open(pub.stage(os.path.join(d, "a.txt")), "w") as f:
    ...         _ = f.write("x")
    >>> sorted(os.listdir(d))
    ['a.txt']
    """

    def __init__(self) -> None:
        self.token = secrets.token_hex(4)
        self.staged: list[tuple[str, str]] = []  # (staged, final)
        self.scratch: list[str] = []  # folders removed on commit and abort
        self.pending: list[Any] = []  # work still writing staged files

    def stage(self, final: str | os.PathLike[str]) -> str:
        """A staged sibling of ``final`` to write to (its folder is created)."""
        f = absolute(final)
        tmp = join(parent(f), f".{basename(f)}.{self.token}.tmp")
        if is_url(f):
            check_bucket(f)  # object stores have no folders to make; never create a bucket
        else:
            make_output_folder(os.path.dirname(f), f)
        self.staged.append((tmp, f))
        return tmp

    def scratch_dir(self, near: str | os.PathLike[str], suffix: str) -> str:
        """A work folder beside ``near`` removed when the publication ends."""
        d = join(parent(absolute(near)), f".{basename(absolute(near))}.{self.token}.{suffix}")
        if is_url(d):
            check_bucket(d)
        else:
            make_output_folder(os.path.dirname(d), absolute(near))
            os.makedirs(d, exist_ok=True)
        self.scratch.append(d)
        return d

    def after(self, work: Any) -> None:
        """Work still writing staged files (a figure drawn in the figure process:
        :mod:`dqtl.figures`), with ``result()`` (raises its error) and ``wait()``: :meth:`commit`
        first waits for its result (an error aborts the publication), :meth:`abort` waits for it
        before it removes the staged files."""
        self.pending.append(work)

    def _settle(self) -> None:
        while self.pending:
            work = self.pending.pop(0)
            try:
                work.result()
            except BaseException:
                self.abort()
                raise

    def commit(self) -> list[str]:
        """Move every staged output into place; returns the final paths."""
        self._settle()
        for tmp, final in self.staged:  # check every destination before moving any
            if not is_url(final) and os.path.isdir(final) and not os.path.isdir(tmp):
                self.abort()
                raise InputError(f"output {final} is a folder; remove it or choose another prefix")
        for tmp, final in self.staged:
            if not is_url(final):
                if os.path.isdir(tmp) and os.path.isdir(final):  # a store replacing its old self
                    old = f"{tmp}.old"
                    os.replace(final, old)
                    os.replace(tmp, final)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.replace(tmp, final)
            else:
                _move_remote(tmp, final)
        done = [f for _, f in self.staged]
        PUBLISHED.extend(done)
        self.staged = []
        self._clean_scratch()
        return done

    def abort(self) -> None:
        """Remove every staged output and work folder (outputs already in place stay)."""
        for work in self.pending:  # nothing may still be writing a staged file
            work.wait()
        self.pending = []
        for tmp, _ in self.staged:
            _remove_quietly(tmp)
        self.staged = []
        self._clean_scratch()

    def _clean_scratch(self) -> None:
        for d in self.scratch:
            _remove_quietly(d)
        self.scratch = []

    def __enter__(self) -> Publication:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
