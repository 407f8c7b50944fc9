"""Safe file writes inside a project folder.

Every file the step writes goes through `atomic_write_text`: a reader sees the old
file or the new one, never half of one, and nothing lands outside the project.
"""

from __future__ import annotations

import glob
import os
import tempfile
import time
from pathlib import Path


class UnsafePath(ValueError):
    """A path that would leave the project folder."""


def safe_join(root: Path | str, *parts: str) -> Path:
    """Join `parts` under `root`, refusing anything that resolves outside it.

    Symlinks are resolved, so a link pointing out of the folder is refused too.
    """
    root_resolved = Path(root).resolve()
    candidate = root_resolved.joinpath(*parts)
    resolved = candidate.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise UnsafePath(f"refusing to write outside the project folder: {Path(*parts)}")
    return resolved


def atomic_write_text(path: Path | str, text: str, *, root: Path | str) -> Path:
    """Write `text` to `path` (inside `root`) via temp file, fsync and rename."""
    root_resolved = Path(root).resolve()
    rel = Path(path)
    if rel.is_absolute():
        try:
            rel = rel.resolve().relative_to(root_resolved)
        except ValueError as exc:
            raise UnsafePath(f"refusing to write outside the project folder: {path}") from exc
    target = safe_join(root_resolved, str(rel))
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_temps(target)
    # The temp file lives in the target's folder so the rename stays on one file system.
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        _keep_mode(fd, target)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        _replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def _keep_mode(fd: int, target: Path) -> None:
    """mkstemp creates 0600 files: give the new file the old one's mode (0644 if new)."""
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)


STALE_TEMP_S = 5.0  # older than any write in progress: a temp this old was left by a killed process


def _sweep_stale_temps(target: Path) -> None:
    """Remove temp files of `target` that a process killed mid-write left behind."""
    cutoff = time.time() - STALE_TEMP_S
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        try:
            if leftover.lstat().st_mtime < cutoff:
                leftover.unlink()
        except FileNotFoundError:
            pass


def _replace(src: str, dst: Path) -> None:
    """The rename step, separate so tests can inject a crash between write and rename."""
    os.replace(src, dst)


def safe_mkdir(root: Path | str, *parts: str) -> Path:
    """Create the folder `parts` under `root` (and its parents); refuse anything outside `root`."""
    folder = safe_join(root, *parts)
    folder.mkdir(parents=True, exist_ok=True)
    # Re-check after creation: a symlink swapped in meanwhile must not lead us out.
    return safe_join(root, *parts)


def fsync_dir(folder: Path | str) -> None:
    """Make a create, rename or unlink inside `folder` durable (best effort on platforms without it)."""
    _fsync_dir(Path(folder))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
