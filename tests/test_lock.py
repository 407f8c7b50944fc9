"""One session per project, across real processes; stale locks are taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.lock import LockHeld, ProjectLock, _process_start
from agent.sidecar import ProjectError

ROOT = Path(__file__).resolve().parents[1]

HOLD = textwrap.dedent(
    """
    import sys
    from agent.lock import ProjectLock
    lock = ProjectLock(sys.argv[1], "training-pipeline chat (test holder)").acquire()
    print("held", flush=True)
    sys.stdin.readline()  # hold until told to go
    lock.release()
    print("released", flush=True)
    """
)

TRY = textwrap.dedent(
    """
    import sys
    from agent.lock import LockHeld, ProjectLock
    try:
        with ProjectLock(sys.argv[1], "second session"):
            print("acquired", flush=True)
    except LockHeld as exc:
        print(exc, flush=True)
        sys.exit(3)
    """
)


def python(code: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, **kw
    )


def lock_file(project: Path) -> Path:
    return project / ".training-pipeline" / "lock"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # exited and reaped: its pid names no process
    return proc.pid


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


def test_two_processes_one_gets_the_lock_the_other_a_message(project):
    holder = python(HOLD, str(project))
    try:
        assert holder.stdout.readline().strip() == "held"
        info = json.loads(lock_file(project).read_text())
        assert info["pid"] == holder.pid and info["host"] == socket.gethostname()
        assert info["holder"] == "training-pipeline chat (test holder)" and info["started"]

        second = python(TRY, str(project))
        out, _ = second.communicate(timeout=30)
        assert second.returncode == 3
        assert f"pid {holder.pid}" in out
        assert "training-pipeline chat (test holder)" in out
        assert f"since {info['started']}" in out
        assert "Finish or stop that session" in out and str(lock_file(project)) in out

        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        holder.wait(timeout=30)
        assert not lock_file(project).exists()

        third = python(TRY, str(project))
        out, _ = third.communicate(timeout=30)
        assert (third.returncode, out.strip()) == (0, "acquired")
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_process_is_recovered(project):
    holder = python(HOLD, str(project))
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert json.loads(lock_file(project).read_text())["pid"] == holder.pid  # left behind

    with ProjectLock(project, "recovering session") as lock:
        assert lock.held
        info = json.loads(lock_file(project).read_text())
        assert (info["pid"], info["holder"]) == (os.getpid(), "recovering session")
    assert not lock_file(project).exists()


def test_stale_lock_file_with_dead_pid_is_recovered(project):
    lock_file(project).parent.mkdir()
    stale = {"pid": dead_pid(), "host": socket.gethostname(), "holder": "old", "started": "2026-01-01T00:00:00+00:00"}
    lock_file(project).write_text(json.dumps(stale))
    with ProjectLock(project, "new"):
        assert json.loads(lock_file(project).read_text())["holder"] == "new"


@pytest.mark.skipif(_process_start(os.getpid()) is None, reason="needs /proc to tell a reused pid")
def test_reused_pid_is_recognised(project):
    lock_file(project).parent.mkdir()
    alive = os.getppid()  # a live process, but not the one that wrote the lock
    stale = {"pid": alive, "host": socket.gethostname(), "holder": "old", "started": "x", "pid_start": -1}
    lock_file(project).write_text(json.dumps(stale))
    with ProjectLock(project, "new"):
        assert json.loads(lock_file(project).read_text())["pid"] == os.getpid()


def test_live_foreign_pid_blocks(project):
    lock_file(project).parent.mkdir()
    info = {"pid": os.getppid(), "host": socket.gethostname(), "holder": "other chat", "started": "2026-01-01T10:00:00+01:00"}
    lock_file(project).write_text(json.dumps(info))
    with pytest.raises(LockHeld) as err:
        ProjectLock(project, "me").acquire()
    assert err.value.info == info
    assert f"other chat (pid {os.getppid()}) since 2026-01-01T10:00:00+01:00" in str(err.value)


def test_lock_from_another_host_is_not_taken_over(project):
    lock_file(project).parent.mkdir()
    info = {"pid": dead_pid(), "host": "some-other-machine", "holder": "chat", "started": "2026-01-01T00:00:00Z"}
    lock_file(project).write_text(json.dumps(info))
    with pytest.raises(LockHeld, match="on host some-other-machine"):
        ProjectLock(project, "me").acquire()
    assert json.loads(lock_file(project).read_text()) == info


def test_unreadable_lock_is_recovered(project):
    lock_file(project).parent.mkdir()
    lock_file(project).write_text('{"pid": 12')  # its writer died mid-write
    with ProjectLock(project, "me"):
        assert json.loads(lock_file(project).read_text())["holder"] == "me"


def test_second_lock_in_the_same_process_is_refused(project):
    first = ProjectLock(project, "first").acquire()
    with pytest.raises(LockHeld, match=f"first \\(pid {os.getpid()}\\)"):
        ProjectLock(project, "second").acquire()
    first.release()
    first.release()  # idempotent
    with ProjectLock(project, "second"):
        pass


def test_release_never_removes_someone_elses_lock(project):
    lock = ProjectLock(project, "mine").acquire()
    other = {"pid": os.getppid(), "host": socket.gethostname(), "holder": "took over", "started": "later"}
    lock_file(project).write_text(json.dumps(other))
    lock.release()
    assert json.loads(lock_file(project).read_text()) == other


def test_lock_errors_are_project_errors(tmp_path):
    assert issubclass(LockHeld, ProjectError)
    with pytest.raises(ProjectError, match="Project folder not found"):
        ProjectLock(tmp_path / "missing", "me").acquire()


def test_acquire_twice_on_one_object_is_a_bug(project):
    with ProjectLock(project, "me") as lock:
        with pytest.raises(RuntimeError):
            lock.acquire()
