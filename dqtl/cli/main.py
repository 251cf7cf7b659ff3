"""``dqtl`` command line: one small module per sub-command, each calling the public API only.

Every sub-command module exposes ``register(subparsers)`` which adds its parser and sets
``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
Bad input (:class:`dqtl.errors.InputError`, ``ValueError``, ``TypeError``, ``OSError``) becomes one
line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import import_module
from typing import Any

from dqtl import __version__

# sub-command modules, in the order they are listed by ``dqtl --help``
COMMAND_MODULES = [
    "dqtl.cli.convert",
    "dqtl.cli.check",
    "dqtl.cli.cis",
    "dqtl.cli.trans",
    "dqtl.cli.finemap",
    "dqtl.cli.coloc",
    "dqtl.cli.meta",
    "dqtl.cli.mediate",
    "dqtl.cli.prepare_expression",
    "dqtl.cli.genotype_qc",
    "dqtl.cli.factors",
    "dqtl.cli.covariates",
    "dqtl.cli.simulate",
    "dqtl.cli.example",
    "dqtl.cli.tensorqtl",
]

log = logging.getLogger("dqtl")


class _Parser(argparse.ArgumentParser):
    """argparse parser whose usage errors are one line on stderr (no usage block) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        msg = " ".join(message.split())
        print(f"{self.prog}: error: {msg} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dqtl",
        description="Dask-distributed, out-of-core eQTL mapping on VCF Zarr genotypes.",
    )
    parser.add_argument("--version", action="version", version=f"dqtl {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = import_module(name)
        except ModuleNotFoundError as exc:  # a sub-command not built yet must not break the rest
            if exc.name == name:
                continue
            raise
        module.register(sub)
    for sp in sub.choices.values():
        _common_options(sp)
    return parser


def _did_you_mean(p: argparse.ArgumentParser, extra: Sequence[str]) -> str:
    """"; did you mean --x?" for a misspelt long option, else ""."""
    import difflib

    known = [o for o in p._option_string_actions if o.startswith("--")]
    for word in extra:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.75)
            if close:
                return f"; did you mean {close[0]}?"
    return ""


def _common_options(sp: argparse.ArgumentParser) -> None:
    """-q/-v after the sub-command too, and tensorQTL's spelling of every long option
    (``--maf_threshold`` for ``--maf-threshold``) as an alias."""
    if "--quiet" not in sp._option_string_actions:
        sp.add_argument("-v", "--verbose", action="count", default=0, dest="sub_verbose",
                        help="more log output (-vv for debug)")
        sp.add_argument("-q", "--quiet", action="store_true", dest="sub_quiet",
                        help="only warnings and errors")
    for action in list(sp._actions):
        for opt in list(action.option_strings):
            if opt.startswith("--") and "-" in opt[2:]:
                alias = "--" + opt[2:].replace("-", "_")
                if alias not in sp._option_string_actions:
                    action.option_strings = [*action.option_strings, alias]
                    sp._option_string_actions[alias] = action


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (pytest and notebooks swap it)."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = _StderrHandler()
    handler.setLevel(level)  # the run log may lower the logger's own level to INFO
    handler.setFormatter(logging.Formatter("%(asctime)s dqtl %(levelname)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("dqtl")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = True  # tests (caplog) and embedding applications still see the records


def _message(exc: BaseException) -> str:
    """One line for an error that reached the CLI: the file named for OS errors (without the
    errno prefix), the missing name for a KeyError."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f" {exc.filename!s}" if exc.filename else ""
        extra = f" -> {exc.filename2!s}" if getattr(exc, "filename2", None) else ""
        hint = {17: "it already exists: remove it or choose another path",
                20: "a path component is a file, not a folder: choose another path",
                21: "it is a folder: give a file path",
                13: "no permission: choose a path you can write", 28: "the disk is full"}.get(
                    exc.errno or 0, "")
        msg = f"{exc.strerror}:{where}{extra}" + (f" ({hint})" if hint else "")
    elif isinstance(exc, KeyError) and exc.args:
        msg = f"{exc.args[0]!s} was not found (a missing column, variable or key)"
    elif isinstance(exc, AssertionError):
        msg = f"an internal check failed ({exc!s}); please report it with the command line"
    else:
        msg = str(exc)
    return " ".join(msg.split())


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that every open publication and work folder is
    cleaned up on the way out, as for Ctrl-C."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    import signal
    import threading

    old = None
    if threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _main(argv)
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def tune_malloc() -> bool:
    """glibc only: one heap for all threads, blocks up to 64 MiB from the heap (not fresh mmaps),
    freed memory kept for reuse. Returns whether the settings were applied.

    The kernels allocate the same large temporaries task after task (decoded genotype blocks,
    residualized windows); by default glibc serves most of them by fresh mmaps whose pages fault
    in at first touch and are unmapped at free, in one arena per thread. Measured (3 runs each,
    against glibc's defaults): page faults about halved (independent at sequencing density 109k-146k
    -> 61k-63k), peak RSS lower (cis nominal at array density 540-556 -> 518-526 MiB, permutations
    at sequencing density 751-772 -> 712-730 MiB), wall time 0-0.3 s lower. The limit was 32 MiB
    while permutation tasks also kept a float64 residualized copy (holes that a larger block did
    not fit then raised their peak by ~50 MiB); without it, a task's decoded block (48 MiB at
    500 samples) comes from the heap too: independent signals 2.51-2.73 -> 2.40-2.53 s at
    sequencing density (system time 0.5-0.8 -> 0.2-0.4 s: a fresh 48 MiB mapping faults in at
    9-100 ms on this VM), 3.10-3.16 -> 2.95-3.06 s at array density, peak RSS +0-40 MiB
    (3 alternating runs each). Blocks above 64 MiB stay mmaps. The command's process only
    (``console``), where dqtl owns the allocator; ``DQTL_MALLOC=system`` keeps glibc's defaults.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    return all(mallopt(param, value) == 1 for param, value in (
        (m_arena_max, 1), (m_mmap_threshold, 64 << 20), (m_trim_threshold, (1 << 31) - 1)))


#: where Linux lists virtio devices (:func:`free_page_reporting`)
VIRTIO_DEVICES = "/sys/bus/virtio/devices"


def free_page_reporting(root: str = VIRTIO_DEVICES) -> bool:
    """Whether this machine is a VM whose memory balloon reports free pages to its host
    (a virtio device of type 5, the balloon, with feature bit 5, ``VIRTIO_BALLOON_F_REPORTING``,
    negotiated): the host then drops the memory behind free 2 MiB blocks, and a process that
    takes one pays for the host to back it again."""
    import os

    try:
        names = os.listdir(root)
    except OSError:
        return False
    for name in names:
        try:
            with open(os.path.join(root, name, "device")) as f:
                if int(f.read().strip(), 16) != 5:
                    continue
            with open(os.path.join(root, name, "features")) as f:
                bits = f.read().strip()
        except (OSError, ValueError):
            continue
        if len(bits) > 5 and bits[5] == "1":
            return True
    return False


def no_numpy_hugepages(root: str = VIRTIO_DEVICES) -> bool:
    """On a VM that reports free memory to its host (:func:`free_page_reporting`), numpy's large
    arrays without ``madvise(MADV_HUGEPAGE)``, unless ``NUMPY_MADVISE_HUGEPAGE`` is set (the
    user's choice stands). Returns whether the setting was made.

    numpy asks the kernel for transparent huge pages for every array of 4 MiB or more; a process
    whose heap grows to its peak then takes 2 MiB pages for it, each zeroed at its first touch.
    With free page reporting the free 2 MiB blocks are exactly the ones the host dropped: each
    huge-page fault waits for the host (~13 ms each on this project's VMs: 82 of them took ~1.1 s
    of system time in a permutation run at sequencing density; 4 KiB faults of the same memory
    come from blocks the host still backs, a few ms in all). Measured here: permutations at
    sequencing density 6.41 -> 5.65 s (means of 6 alternating runs against the previous commit,
    system time 1.44 -> 0.50 s); at array density 7.80-8.24 -> 7.45-7.97 s (2 runs each). Where
    the memory was just touched by another process (the host backs it again) huge pages are cheap
    and save some TLB misses: sequencing density 6.46 against 6.35 s, array density 9.29 against
    8.85 s with the advice (means of 4 alternating runs each, a noisy hour) - which is every
    machine without free page reporting, where numpy's default stays. The command's process and
    the processes it starts (the variable is inherited); ``console`` only, and
    ``DQTL_MALLOC=system`` keeps numpy's default with glibc's."""
    import os

    if "NUMPY_MADVISE_HUGEPAGE" in os.environ or not free_page_reporting(root):
        return False
    os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"  # read when numpy is imported (here and in children)
    np = sys.modules.get("numpy")
    if np is not None:  # already imported (an embedding caller): numpy's own switch
        setter = getattr(getattr(getattr(np, "_core", None), "multiarray", None), "_set_madvise_hugepage", None)
        if setter is None:
            return False
        setter(False)
    return True


#: numpy sub-packages nothing in a command uses that scipy imports anyway: its array-API layer
#: copies numpy's namespace (``scipy._lib.array_api_compat.numpy``: every name of ``dir(numpy)``,
#: which loads numpy's lazy sub-packages), and numpy.f2py brings its Fortran parser and
#: charset_normalizer, numpy.testing brings unittest
DEFERRED_IMPORTS = ("numpy.f2py", "numpy.testing")


class _DeferredImports:
    """Meta-path finder: the modules ``names``, when imported, are lazy modules
    (:class:`importlib.util.LazyLoader`): executed on the first access to one of their
    attributes, not when another library merely imports them."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in self.names:
            return None
        import importlib.machinery
        import importlib.util

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def defer_unused_imports(names: Sequence[str] = DEFERRED_IMPORTS) -> bool:
    """Import ``names`` lazily from now on in this process (:class:`_DeferredImports`; a name
    already imported stays as it is). Returns whether the finder was installed (once).

    Measured: importing what ``dqtl cis`` needs took 1.08 s against 1.19 s (10 alternating runs
    each; numpy.f2py and numpy.testing otherwise run when scipy is first imported). The
    command's process only (``console``); ``DQTL_LAZY_IMPORTS=0`` imports them as usual.
    """
    if any(isinstance(f, _DeferredImports) for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, _DeferredImports(names))
    return True


def console() -> None:
    """The ``dqtl`` command: :func:`main`, then a quick exit.

    A finished run has published its files, closed its logs and its cluster connection; what
    remains at exit is tearing down every module of the numerical stack (0.3-0.5 s of a
    whole-process run). So the exit handlers run (temporary stores are removed, logging is
    shut down), the standard streams are flushed, and the process ends with ``os._exit``.
    ``DQTL_FULL_EXIT=1`` keeps the interpreter's normal shutdown (e.g. for coverage tools).
    """
    import os

    if os.environ.get("DQTL_MALLOC", "") != "system":
        tune_malloc()
        no_numpy_hugepages()
    if os.environ.get("DQTL_LAZY_IMPORTS", "") != "0":
        defer_unused_imports()
    rc = main()
    if os.environ.get("DQTL_FULL_EXIT", "") not in ("", "0"):
        raise SystemExit(rc)
    try:
        import atexit
        import logging

        atexit._run_exitfuncs()
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(rc)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the sub-command that was given them, not by the top level
            subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            where = subs.choices.get(getattr(args, "command", None) or "", parser)
            where.error(f"unrecognized arguments: {' '.join(extra)}{_did_you_mean(where, extra)}")
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    _setup_logging(args.verbose + getattr(args, "sub_verbose", 0),
                   args.quiet or getattr(args, "sub_quiet", False))
    from dqtl import figures

    try:
        # a command that draws starts its figure process first: it imports matplotlib while
        # this process imports the numerical stack (dqtl.figures)
        draws = getattr(args, "figures", False)  # True, or a function of the arguments
        preload = getattr(args, "figure_imports", ("pandas",))  # what the jobs' data need
        with figures.beside(enabled=bool(draws(args) if callable(draws) else draws),
                            preload=tuple(preload(args) if callable(preload) else preload)):
            return _run(args, argv)
    except (ValueError, TypeError, OSError, KeyError, AssertionError) as exc:
        msg = _message(exc)
        print(f"dqtl {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # a command that returned a non-zero code inside its run log
        return int(exc.code) if isinstance(exc.code, int) else 2
    except _Terminated:
        print(f"dqtl {args.command}: terminated (SIGTERM); nothing was published", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"dqtl {args.command}: interrupted; nothing was published", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """The sub-command inside its run log (when it writes one) and its dask settings."""
    import dask

    from dqtl.runlog import RunLog, run_log_path

    log_path = run_log_path(args)
    runlog = RunLog(log_path, list(argv) if argv is not None else sys.argv[1:]) if log_path else None
    with dask.config.set({"dqtl.multiallelic": getattr(args, "multiallelic", "error"),
                          "dqtl.genotype_cache": getattr(args, "genotype_cache", None)}):
        if runlog is None:
            return int(args.func(args) or 0)
        with runlog:
            rc = int(args.func(args) or 0)
            if rc:
                raise SystemExit(rc)
        return rc


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
