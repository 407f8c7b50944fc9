"""Two real `training-pipeline chat` processes on one project, a kill while the lock is
held, and the state folder's .gitignore."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from agent.checkpoint import ProjectCheckpointer
from agent.lock import GITIGNORE, STATE_DIR, LockHeld, ProjectLock
from agent.sidecar import load_sidecar, tp_entries, upsert_decision
from tests.driver import Session
from tests.test_kill_resume import RESUMED, SCRIPT, Chat, answer, copy_fixture

needs_cli = pytest.mark.skipif(SCRIPT is None, reason="the training-pipeline console script is not installed")


def lock_info(project) -> dict | None:
    try:
        return json.loads((project / STATE_DIR / "lock").read_text())
    except FileNotFoundError:
        return None


def state_files(project) -> dict[str, bytes]:
    """The sidecar and the checkpoint database: what a second session must not touch."""
    files = {"sidecar.yaml": (project / "sidecar.yaml").read_bytes()}
    for log in sorted((project / STATE_DIR / "checkpoints").glob("*")):
        files[log.name] = log.read_bytes()
    return files


def flat(text: str) -> str:
    return " ".join(text.split())  # rich wraps long lines


@needs_cli
@pytest.mark.slow
def test_a_second_session_names_the_holder_and_exits(tmp_path):
    project = copy_fixture("support-bot", tmp_path / "support-bot")
    first = Chat(project)
    try:
        assert first.question() == "base_model.constraints"
        first.send(answer("base_model.constraints"))
        assert first.question() == "base_model.decision"
        before = state_files(project)

        second = Chat(project)
        try:
            code = second.exit_code()
        finally:
            second.stop()
        out = flat(second.seen)
        assert code not in (0, None), out
        assert f"is in use by training-pipeline chat (pid {first.pid})" in out
        assert "Mode: offline" not in out  # refused before doing anything
        assert state_files(project) == before  # it wrote nothing
        assert lock_info(project)["pid"] == first.pid  # and left the holder's lock alone

        # The first session is unaffected: it records a decision and runs to the end.
        first.send("yes")
        assert first.question() == "training_approach.goals"
        qid = "training_approach.goals"
        while qid is not None:
            first.send(answer(qid))
            qid = first.question()
        assert "Done." in first.finish()
    finally:
        first.stop()
    raw = load_sidecar(project)  # valid after all of it
    assert raw["phases"]["phase_2_training"] == "complete"
    assert lock_info(project) is None  # released on exit


@needs_cli
@pytest.mark.slow
def test_two_sessions_started_together_one_wins(tmp_path):
    project = copy_fixture("contract-assistant", tmp_path / "contract-assistant")
    chats = [Chat(project), Chat(project)]  # started back to back: both race for the lock
    try:
        first_lines = []
        for chat in chats:
            first_lines.append(chat.child.expect([r"Mode: offline", r"is\s+in\s+use\s+by"]))
            chat.seen += chat.child.before + chat.child.after
        assert sorted(first_lines) == [0, 1], [flat(c.seen) for c in chats]
        winner, loser = (chats[0], chats[1]) if first_lines[0] == 0 else (chats[1], chats[0])
        assert loser.exit_code() not in (0, None)
        assert f"in use by training-pipeline chat (pid {winner.pid})" in flat(loser.seen)
        assert winner.question() == "base_model.constraints"
        assert lock_info(project)["pid"] == winner.pid
        winner.child.sendeof()  # Ctrl-D: stop, keeping every answer
        assert winner.exit_code() == 0
    finally:
        for chat in chats:
            chat.stop()
    load_sidecar(project)
    assert lock_info(project) is None


@needs_cli
@pytest.mark.slow
def test_a_killed_session_leaves_a_stale_lock_the_next_one_takes_over(tmp_path):
    project = copy_fixture("support-bot", tmp_path / "support-bot")
    first = Chat(project)
    try:
        assert first.question() == "base_model.constraints"
        first.send(answer("base_model.constraints"))
        assert first.question() == "base_model.decision"
        assert first.kill()
    finally:
        first.stop()
    stale = lock_info(project)
    assert stale is not None and stale["pid"] == first.pid  # SIGKILL gave it no chance to clean up

    second = Chat(project)
    try:
        assert second.question() == "base_model.decision"  # no lock message: taken over, and resumed
        assert RESUMED.search(second.seen) and "in use" not in second.seen
        assert lock_info(project)["pid"] == second.pid
        second.child.sendeof()
        assert second.exit_code() == 0
    finally:
        second.stop()
    assert lock_info(project) is None
    load_sidecar(project)


@needs_cli
def test_a_graph_run_in_another_process_is_refused_while_chat_holds_the_project(tmp_path, loop, knowledge):
    """The path the API server, Studio and the SDK take, against a real `chat`: refused with
    the holder's name, nothing written, and the chat session runs to the end unaffected."""
    project = copy_fixture("support-bot", tmp_path / "support-bot")
    first = Chat(project)
    try:
        assert first.question() == "base_model.constraints"
        before = (project / "sidecar.yaml").read_bytes()
        with pytest.raises(LockHeld, match=rf"in use by training-pipeline chat \(pid {first.pid}\)"):
            Session(loop, knowledge, str(project)).start()
        with pytest.raises(LockHeld, match="training-pipeline chat"):
            upsert_decision(project, {"id": "tp-001", "choice": "x", "rationale": "y", "knowledge_ref": "z"})
        assert (project / "sidecar.yaml").read_bytes() == before
        qid = "base_model.constraints"
        while qid is not None:
            first.send(answer(qid))
            qid = first.question()
        assert "Done." in first.finish()
    finally:
        first.stop()
    raw = load_sidecar(project)
    assert [d["id"] for d in tp_entries(raw)] == [f"tp-00{i}" for i in range(1, 7)]  # nothing lost
    assert raw["phases"]["phase_2_training"] == "complete"


# --- the state folder stays out of git ----------------------------------------------------


def test_the_lock_creates_the_state_folder_with_a_gitignore(tmp_path):
    with ProjectLock(tmp_path, "test"):
        ignore = tmp_path / STATE_DIR / ".gitignore"
        assert "*" in ignore.read_text().splitlines()
    assert ignore.read_text() == GITIGNORE  # kept after the lock is released


def test_the_checkpointer_creates_the_state_folder_with_a_gitignore(tmp_path):
    saver = ProjectCheckpointer(tmp_path)
    assert not (tmp_path / STATE_DIR).exists()  # no I/O until first use
    assert saver.folder.is_dir()
    assert (tmp_path / STATE_DIR / ".gitignore").read_text() == GITIGNORE


def test_other_checkpoint_folders_get_no_gitignore(tmp_path):
    saver = ProjectCheckpointer(tmp_path / "server", subdir=".")  # the API server's own folder
    assert saver.folder.is_dir()
    assert not (tmp_path / "server" / ".gitignore").exists()


def test_an_edited_gitignore_is_kept(tmp_path):
    (tmp_path / STATE_DIR).mkdir()
    (tmp_path / STATE_DIR / ".gitignore").write_text("lock\n")
    with ProjectLock(tmp_path, "test"):
        pass
    ProjectCheckpointer(tmp_path).folder
    assert (tmp_path / STATE_DIR / ".gitignore").read_text() == "lock\n"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_does_not_see_the_lock_or_the_checkpoints(tmp_path):
    project = copy_fixture("support-bot", tmp_path / "support-bot")
    git = ["git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "fixture"], check=True)
    saver = ProjectCheckpointer(project)
    (saver.folder / "checkpoints.sqlite").write_text("x\n")  # as a session leaves it
    with ProjectLock(project, "test"):
        status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=all"], check=True, capture_output=True, text=True)
    assert status.stdout == ""
