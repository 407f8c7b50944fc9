"""One session per project: a lock file inside the project folder.

`.training-pipeline/lock` is created with O_CREAT|O_EXCL and holds who took it
(pid, host, what, since when), so a second session can say exactly who is in
the way. A lock left behind by a process that died on this machine is taken
over automatically. Checking and taking over a lock happen under an advisory
`flock` on a guard file, so two sessions that both find the same stale lock
cannot both win; the kernel drops that flock when its process dies, so the
guard itself can never go stale.

The folder gets a `.gitignore` holding `*`: people keep project folders in git,
and the lock and the checkpoint logs are this machine's session state, not project
content.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.errors import ProjectError
from agent.fsutil import UnsafePath, atomic_write_text, safe_mkdir

try:  # POSIX; elsewhere the O_EXCL create alone serializes sessions
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

STATE_DIR = ".training-pipeline"
LOCK_NAME = "lock"
GUARD_NAME = "lock.guard"
WRITES_NAME = "writes.lock"  # flocked around each read-modify-write of the project's files
GITIGNORE = "# Session state of training-pipeline (lock, checkpoints): not project content.\n*\n"
# Without the guard flock, an unreadable lock is only presumed abandoned after this long:
# its creator may still be between creating the file and writing it.
_UNREADABLE_GRACE_S = 10.0

# Lock files this process holds: tells our own live lock from one left by an earlier
# process that had the same pid (pid 1 in a restarted container, for instance).
_held_here: set[Path] = set()
_held_guard = threading.Lock()


class LockHeld(ProjectError, ValueError):
    """Another session holds the project; `info` is what its lock file says."""

    def __init__(self, message: str, info: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.info = info


class ProjectLock:
    """`with ProjectLock(project_dir, "training-pipeline chat"): ...`"""

    def __init__(self, project_dir: Path | str, holder: str) -> None:
        self.project_dir = Path(project_dir)
        self.holder = holder
        self.path: Path | None = None
        self._info: dict[str, Any] | None = None

    @property
    def held(self) -> bool:
        return self._info is not None

    def acquire(self) -> ProjectLock:
        if self._info is not None:
            raise RuntimeError("this ProjectLock is already held")
        if not self.project_dir.is_dir():
            raise ProjectError(f"Project folder not found: {self.project_dir}. Check the path.")
        state_dir = ensure_state_dir(self.project_dir)
        path = state_dir / LOCK_NAME
        info = _my_info(self.holder)
        with _guard(state_dir):
            for _ in range(2):  # the second round follows removing a stale lock
                try:
                    _create(path, info)
                except FileExistsError:
                    current = _read(path)
                    if _is_stale(current, path):
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                        continue
                    raise LockHeld(_held_message(self.project_dir, path, current), current) from None
                break
            else:  # pragma: no cover - only if the file keeps reappearing under the guard
                raise LockHeld(_held_message(self.project_dir, path, None), None)
        with _held_guard:
            _held_here.add(path)
        self.path, self._info = path, info
        return self

    def release(self) -> None:
        if self._info is None or self.path is None:
            return
        path, info = self.path, self._info
        self._info = None
        with _held_guard:
            _held_here.discard(path)
        with _guard(path.parent):
            if _read(path) == info:  # never remove a lock someone else took over
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def __enter__(self) -> ProjectLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


_writers = threading.local()  # the folders this thread is writing in (nested writes re-enter)
_thread_locks: dict[Path, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextlib.contextmanager
def project_writes(project_dir: Path | str) -> Iterator[None]:
    """Held around each read-modify-write of the sidecar and the artifacts.

    One writer at a time per project, across threads (a lock) and processes (an
    advisory flock the kernel drops when its holder dies, so it never goes stale).
    Whatever the entry point (terminal, API server, SDK, a script), a writer
    in a process that does not hold the session lock of a project another session
    holds is refused with LockHeld, which names that session.
    """
    folder = Path(project_dir)
    key = folder.resolve()
    held: set[Path] = _writers.__dict__.setdefault("folders", set())
    if key in held:  # a write inside a write of the same thread
        yield
        return
    with _thread_locks_guard:
        thread_lock = _thread_locks.setdefault(key, threading.Lock())
    with thread_lock:
        state_dir = _writable_state_dir(folder)
        fd = _open_writes_lock(state_dir)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            check_not_held_elsewhere(folder, state_dir)
            held.add(key)
            try:
                yield
            finally:
                held.discard(key)
        finally:
            os.close(fd)  # closing drops the flock


def check_not_held_elsewhere(project_dir: Path | str, state_dir: Path | None = None) -> None:
    """Raise LockHeld if a live session in another process holds the project.

    A lock this process holds, or one left by a process that is gone, lets the caller on.
    """
    path = (state_dir or Path(project_dir).resolve() / STATE_DIR) / LOCK_NAME
    info = _read(path)
    if info is None:
        if not path.exists():
            return
        with contextlib.suppress(OSError):  # unreadable: only trust it while it is fresh (being created)
            if time.time() - path.stat().st_mtime > _UNREADABLE_GRACE_S:
                return
    elif info.get("pid") == os.getpid() and info.get("host") == socket.gethostname():
        with _held_guard:
            if path in _held_here:
                return  # this process's own session
    if info is not None and _is_stale(info, path):
        return  # its process is gone: the next session takes it over
    raise LockHeld(_held_message(Path(project_dir), path, info), info)


def _writable_state_dir(folder: Path) -> Path:
    if not folder.is_dir():
        raise ProjectError(f"Project folder not found: {folder}. Check the path.")
    try:
        return ensure_state_dir(folder)
    except UnsafePath as exc:
        raise ProjectError(f"{exc}. {STATE_DIR} must be a folder inside the project, not a link out of it.") from None
    except OSError as exc:
        raise ProjectError(
            f"Cannot write in the project folder {folder}: {exc.strerror or exc}. Make it writable "
            f"(for example `chmod u+w {folder}`), then answer again: nothing was changed, and your answer is kept."
        ) from None


def _open_writes_lock(state_dir: Path) -> int:
    try:
        return os.open(state_dir / WRITES_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ProjectError(
            f"Cannot write in {state_dir}: {exc.strerror or exc}. Make it writable, then answer again: "
            "nothing was changed, and your answer is kept."
        ) from None


def ensure_state_dir(project_dir: Path | str) -> Path:
    """`<project>/.training-pipeline`, created if needed, with its `.gitignore`.

    An existing `.gitignore` is left as it is: someone who edited it meant it.
    """
    state_dir = safe_mkdir(project_dir, STATE_DIR)
    ignore = state_dir / ".gitignore"
    if not ignore.exists():
        # Atomic, so a kill mid-write cannot leave an empty file that would then be kept.
        with contextlib.suppress(OSError):  # a nicety: a folder we cannot write fails on the lock itself
            atomic_write_text(ignore.name, GITIGNORE, root=state_dir)
    return state_dir


def _my_info(holder: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "holder": holder,
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    start = _process_start(os.getpid())
    if start is not None:
        info["pid_start"] = start
    return info


def _create(path: Path, info: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, (json.dumps(info, indent=2) + "\n").encode("utf-8"))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink()
        raise
    os.close(fd)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_stale(info: dict[str, Any] | None, path: Path) -> bool:
    if info is None:  # unreadable: a creator that crashed before writing it
        if fcntl is not None:
            return True  # creators write it while holding the guard we now hold
        with contextlib.suppress(OSError):
            return time.time() - path.stat().st_mtime > _UNREADABLE_GRACE_S
        return True
    if info.get("host") != socket.gethostname():
        return False  # a process on another machine cannot be checked from here
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    if pid == os.getpid():
        with _held_guard:
            return path not in _held_here
    if not _alive(pid):
        return True
    recorded, current = info.get("pid_start"), _process_start(pid)
    return recorded is not None and current is not None and recorded != current  # pid reused


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    except OSError:
        return True  # cannot tell: assume it is running
    return _proc_state(pid) != "Z"  # a zombie has exited, only its parent has not reaped it


def _proc_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (Linux only)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()


def _proc_state(pid: int) -> str | None:
    fields = _proc_fields(pid)
    return fields[0] if fields else None


def _process_start(pid: int) -> int | None:
    """Start time in clock ticks since boot: tells a reused pid from the original."""
    fields = _proc_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


@contextlib.contextmanager
def _guard(state_dir: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(state_dir / GUARD_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def _held_message(project: Path, path: Path, info: dict[str, Any] | None) -> str:
    if info is None:
        who = "another session (its lock file cannot be read)"
    else:
        host = info.get("host")
        where = "" if host == socket.gethostname() else f" on host {host}"
        who = f"{info.get('holder') or 'another session'} (pid {info.get('pid')}{where}) since {info.get('started')}"
    return (
        f"Project {project} is in use by {who}.\n"
        "Finish or stop that session, then try again. If it is not running any more "
        f"(for example it ran on another machine that was shut down), delete {path} and try again."
    )
