"""The rules that keep the house standing, checked on the source tree (see ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dqtl"
MAX_LINES = 800


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) of every import in a module, nested ones too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            for a in node.names:
                out.append((node.lineno, a.name, []))
    return out


def test_house_rules__io_never_imports_association():
    bad = [f"{_name(p)}:{line} imports {mod}"
           for p in _modules() if _name(p).startswith("dqtl.io")
           for line, mod, _ in _imports(p) if mod.startswith("dqtl.association")]
    assert not bad, bad


def test_house_rules__kernels_are_pure_arrays():
    """Kernels import no xarray, dask, I/O or higher dqtl layers."""
    allowed = ("dqtl.kernels", "dqtl.errors")
    bad = [f"{_name(p)}:{line} imports {mod}"
           for p in _modules() if _name(p).startswith("dqtl.kernels")
           for line, mod, _ in _imports(p)
           if mod.split(".")[0] in ("xarray", "dask", "distributed", "pandas", "zarr", "fsspec")
           or (mod.startswith("dqtl") and not mod.startswith(allowed))]
    assert not bad, bad


def test_house_rules__no_private_name_imported_across_modules():
    bad = []
    for p in _modules():
        for line, mod, names in _imports(p):
            if not mod.startswith("dqtl"):
                continue
            if any(part.startswith("_") and part != "__init__" for part in mod.split(".")):
                bad.append(f"{_name(p)}:{line} imports private module {mod}")
            bad += [f"{_name(p)}:{line} imports {mod}.{n}" for n in names
                    if n.startswith("_") and not n.startswith("__")]
    assert not bad, bad


def test_house_rules__no_module_over_800_lines():
    long = {_name(p): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_house_rules__no_import_cycles_between_io_modules():
    """``io`` modules form a DAG at import time (a lazy import counts too)."""
    graph: dict[str, set[str]] = {}
    for p in _modules():
        name = _name(p)
        if name.startswith("dqtl.io"):
            graph[name] = {m for _, m, _ in _imports(p) if m.startswith("dqtl.io") and m != name}
    seen: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        if seen.get(n) == 1:
            pytest.fail(f"import cycle: {' -> '.join([*stack, n])}")
        if seen.get(n) == 2:
            return
        seen[n] = 1
        for m in sorted(graph.get(n, ())):
            visit(m, [*stack, n])
        seen[n] = 2

    for n in sorted(graph):
        visit(n, [])


def test_house_rules__architecture_names_every_package_module():
    """ARCHITECTURE.md describes the code as it is: every module is named there."""
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    missing = [_name(p) for p in _modules()
               if p.name != "__init__.py" and p.name != "__main__.py"
               and "/data/" not in str(p) and f"{p.stem}.py" not in text]
    assert not missing, missing
