"""Path safety and atomic writes: nothing lands outside the project, nothing half-written."""

from __future__ import annotations

import os

import pytest

import agent.fsutil as fsutil
from agent.fsutil import UnsafePath, atomic_write_text, fsync_dir, safe_join, safe_mkdir


@pytest.fixture
def root(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (tmp_path / "outside").mkdir()
    return project


def test_safe_join_allows_paths_inside(root):
    assert safe_join(root, "phase-2-training", "spec.md") == root.resolve() / "phase-2-training" / "spec.md"
    assert safe_join(root, "a/../b.txt") == root.resolve() / "b.txt"
    assert safe_join(root, ".") == root.resolve()


@pytest.mark.parametrize("parts", [("..", "outside", "x"), ("a/../../outside/x",), ("../project-evil",), ("..",)])
def test_safe_join_refuses_parent_escapes(root, parts):
    with pytest.raises(UnsafePath, match="outside the project folder"):
        safe_join(root, *parts)


def test_safe_join_refuses_absolute_paths(root, tmp_path):
    with pytest.raises(UnsafePath):
        safe_join(root, str(tmp_path / "outside" / "x"))
    with pytest.raises(UnsafePath):
        safe_join(root, "sub", "/etc/passwd")


def test_safe_join_refuses_symlinks_out_of_the_folder(root, tmp_path):
    (root / "link-dir").symlink_to(tmp_path / "outside", target_is_directory=True)
    (root / "link-file").symlink_to(tmp_path / "outside" / "f.txt")
    with pytest.raises(UnsafePath):
        safe_join(root, "link-dir", "spec.md")
    with pytest.raises(UnsafePath):
        safe_join(root, "link-file")


def test_safe_join_follows_symlinks_that_stay_inside(root):
    (root / "real").mkdir()
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    assert safe_join(root, "alias", "x") == root.resolve() / "real" / "x"


def test_atomic_write_creates_parents_and_replaces(root):
    target = atomic_write_text("phase-2-training/templates/a.yaml", "one\n", root=root)
    assert target.read_text() == "one\n"
    atomic_write_text(target, "two\n", root=root)  # absolute, but inside the root
    assert target.read_text() == "two\n"
    assert [p.name for p in target.parent.iterdir()] == ["a.yaml"]


def test_atomic_write_keeps_the_file_mode(root):
    target = atomic_write_text("spec.md", "v1", root=root)
    assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    target.chmod(0o640)
    atomic_write_text("spec.md", "v2", root=root)
    assert target.stat().st_mode & 0o777 == 0o640


def test_atomic_write_refuses_outside_targets(root, tmp_path):
    with pytest.raises(UnsafePath):
        atomic_write_text(tmp_path / "outside" / "x.md", "x", root=root)
    with pytest.raises(UnsafePath):
        atomic_write_text("../outside/x.md", "x", root=root)
    (root / "out").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(UnsafePath):
        atomic_write_text("out/x.md", "x", root=root)
    assert list((tmp_path / "outside").iterdir()) == []


def test_crash_between_write_and_rename_keeps_old_file(root, monkeypatch):
    target = atomic_write_text("notes.md", "old content\n", root=root)

    def crash(src, dst):
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(fsutil, "_replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_text("notes.md", "new content\n", root=root)
    assert target.read_text() == "old content\n"
    assert sorted(p.name for p in root.iterdir()) == ["notes.md"]  # the temp file was removed


def test_safe_mkdir(root, tmp_path):
    made = safe_mkdir(root, ".training-pipeline/checkpoints")
    assert made.is_dir() and made == root.resolve() / ".training-pipeline" / "checkpoints"
    assert safe_mkdir(root, ".training-pipeline/checkpoints") == made  # idempotent
    with pytest.raises(UnsafePath):
        safe_mkdir(root, "../outside/new")
    assert not (tmp_path / "outside" / "new").exists()


def test_fsync_dir_tolerates_missing_folder(tmp_path):
    fsync_dir(tmp_path)
    fsync_dir(tmp_path / "missing")
    assert os.path.isdir(tmp_path)


def test_temp_left_by_a_killed_writer_is_swept_on_the_next_write(tmp_path):
    import os
    import time

    from agent import fsutil

    stale = tmp_path / ".sidecar.yaml.abc123.tmp"
    fresh = tmp_path / ".sidecar.yaml.def456.tmp"  # a write still in progress: left alone
    other = tmp_path / ".spec.md.abc123.tmp"  # another file's temp: not ours to judge
    for p in (stale, fresh, other):
        p.write_text("half a file")
    old = time.time() - fsutil.STALE_TEMP_S - 60
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    fsutil.atomic_write_text("sidecar.yaml", "a: 1\n", root=tmp_path)
    assert not stale.exists() and fresh.exists() and other.exists()
    assert (tmp_path / "sidecar.yaml").read_text() == "a: 1\n"
