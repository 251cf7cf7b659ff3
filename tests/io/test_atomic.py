"""Atomic writers leave nothing behind on failure and publish normal permissions."""

from __future__ import annotations

import os

import pytest

from dqtl.io.atomic import atomic_dir, atomic_path


def test_atomic_path__failure_leaves_no_file(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path__success_publishes_with_umask_permissions(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("done")
    assert target.read_text() == "done"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir__replaces_existing_only_on_success(tmp_path):
    target = tmp_path / "store"
    target.mkdir()
    (target / "old").write_text("1")
    with pytest.raises(ValueError), atomic_dir(target) as tmp:
        (tmp / "new").write_text("2")
        raise ValueError("bad input")
    assert [p.name for p in target.iterdir()] == ["old"]
    with atomic_dir(target) as tmp:
        (tmp / "new").write_text("2")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
