"""A project folder is never lost or corrupted: real workflow files, hand edits, hostile
files, failing disks, and writers in several processes at once."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import yaml

import agent.fsutil as fsutil
from agent.artifacts.decision_log import update_decision_log
from agent.artifacts.writer import write_phase_artifacts
from agent.lock import LockHeld, ProjectLock
from agent.sidecar import (
    ProjectError,
    load_sidecar,
    mark_phase_complete,
    tp_entries,
    upsert_decision,
)
from tests.driver import HAPPY, Session, answer_from
from tests.test_sidecar import tp, write_sidecar

ROOT = Path(__file__).resolve().parents[1]

# A sidecar as later versions of the workflow write it: requirement entries without a
# choice, decisions without knowledge_ref, keys this step does not know, comments and
# quoting styles throughout.
REAL_WORKFLOW = """\
# AI Engineering Project Sidecar
# This file tracks project state across workflow sessions

project_name: 'helpdesk'   # renamed in January
created: "2026-01-05"
user_name: dana
workflow_status: "in-progress"
currentStep: step-04-training-pipeline
steps:
  - {id: 1, status: done}
  - {id: 2, status: done}
stories: []
outputs:
  scoping: phase-0-scoping/architecture-decision.md   # reviewed
quality_gate: {threshold: 0.8, passed: null}

# Workflow State
architecture: "fine-tuning"
currentPhase: 2
stepsCompleted: [1, 2, 3]

decisions:
  - id: req-001
    type: business_requirement
    requirement: "Answer tier-1 tickets in our tone"
    phase: 0
    date: 2026-01-05
  # architecture chosen with the support lead
  - id: "arch-001"
    choice: 'fine-tuning'
    rationale: "Tone must be consistent"
    phase: 0
    date: 2026-01-05
  - id: fp-001
    choice: "Recursive chunking"
    rationale: >-
      Keeps each exchange
      intact

# Warnings Acknowledged
warnings_acknowledged: []

# Phase Status
phases:
  phase_0_scoping: "complete"   # signed off
  phase_1_feature: complete
  phase_2_training: "pending"
  phase_3_inference: 'pending'
"""

# Lines of what this step does not own; each must survive every write byte for byte.
UNOWNED = [
    line
    for line in REAL_WORKFLOW.splitlines()
    if line.strip()
    and not line.startswith(("currentPhase:", "stepsCompleted:", "  phase_2_training:", "warnings_acknowledged:"))
]


# --- item 3: real workflow files --------------------------------------------------------------


def test_a_real_workflow_sidecar_loads_and_keeps_every_entry_and_key(tmp_path):
    folder = write_sidecar(tmp_path / "p", REAL_WORKFLOW)
    before = load_sidecar(folder)
    assert before["decisions"][0]["type"] == "business_requirement"
    upsert_decision(folder, tp(1))
    upsert_decision(folder, tp(2, rationale="two\nlines"))
    upsert_decision(folder, tp(1, choice="revised"))
    mark_phase_complete(folder)
    after = load_sidecar(folder)
    assert after["decisions"][:3] == before["decisions"][:3]
    assert [d["id"] for d in tp_entries(after)] == ["tp-001", "tp-002"]
    for key in ("workflow_status", "currentStep", "steps", "stories", "outputs", "quality_gate"):
        assert after[key] == before[key]
    text = (folder / "sidecar.yaml").read_text(encoding="utf-8")
    missing = [line for line in UNOWNED if line not in text.splitlines()]
    assert missing == []  # comments, quoting and flow style of everything not owned
    assert "stepsCompleted: [1, 2, 3, 4]" in text
    assert '  phase_2_training: "complete"' in text  # quoted as it was


def test_a_real_workflow_sidecar_goes_through_the_whole_step(tmp_path, loop, knowledge):
    folder = write_sidecar(tmp_path / "helpdesk", REAL_WORKFLOW)
    values = Session(loop, knowledge, str(folder)).run(answer_from(HAPPY))
    assert values["handoff"]["step"] == 5
    raw = load_sidecar(folder)
    assert [d["id"] for d in tp_entries(raw)] == [f"tp-00{i}" for i in range(1, 7)]
    assert raw["phases"]["phase_2_training"] == "complete"
    text = (folder / "sidecar.yaml").read_text(encoding="utf-8")
    assert [line for line in UNOWNED if line not in text.splitlines()] == []


# --- item 4: hand edits survive ----------------------------------------------------------------


def _decision(section: str, n: int, choice: str, **extra) -> dict:
    return {"id": f"tp-00{n}", "section": section, "title": section.replace("_", " ").title(), "choice": choice,
            "rationale": f"why {choice}", "date": "2026-04-01", "knowledge_refs": ["get_patterns:x"], **extra}


SECTIONS6 = ["base_model", "training_approach", "training_data", "peft", "hyperparameters", "infrastructure"]


def test_revisiting_tp_001_keeps_a_reviewer_note_and_a_sign_off_in_the_decision_log():
    decisions = {s: _decision(s, i, f"choice {i}") for i, s in enumerate(SECTIONS6, 1)}
    header = "---\nproject_name: \"p\"\n---\n\n# p - Decision Log\n\n## Decisions\n\n## ARCH-001: Architecture\n**Decision:** Fine-tuning\n"
    log = update_decision_log(header, decisions, [])
    note = "> Reviewer (sam): the data owner confirmed the PII redaction on 2026-04-02.\n"
    log = log.replace("**Date:** 2026-04-01\n**Phase:** 2 - Training Pipeline\n**Choice Rationale:** why choice 3\n",
                      "**Date:** 2026-04-01\n**Phase:** 2 - Training Pipeline\n**Choice Rationale:** why choice 3\n" + note, 1)
    assert note in log
    signed = "\nSigned off by the ML lead, 2026-04-03. Changes need a new review.\n"
    log = log + signed

    revised = {**decisions, "base_model": _decision("base_model", 1, "choice 1b", date="2026-04-05")}
    superseded = [{**decisions["base_model"], "superseded_on": "2026-04-05"}]
    after = update_decision_log(log, revised, superseded)
    assert note in after
    assert after.endswith(signed)
    assert "**Decision:** choice 1b" in after and "**Status:** Superseded on 2026-04-05" in after
    assert after.index("## TP-001") < after.index("**Decision:** choice 1b") < after.index("## TP-002")
    assert update_decision_log(after, revised, superseded) == after  # a second run changes nothing


# --- item 5: duplicate keys ----------------------------------------------------------------------


def test_duplicate_keys_are_an_error_that_names_them(tmp_path):
    text = REAL_WORKFLOW + "architecture: rag-only\n"
    folder = write_sidecar(tmp_path / "p", text)
    with pytest.raises(ProjectError, match=r"'architecture' \(again at line \d+\)"):
        load_sidecar(folder)
    with pytest.raises(ProjectError, match="architecture"):
        upsert_decision(folder, tp(1))
    assert (folder / "sidecar.yaml").read_text(encoding="utf-8") == text


def test_duplicate_keys_inside_an_entry_are_named_too(tmp_path):
    folder = write_sidecar(tmp_path / "p", REAL_WORKFLOW.replace("    type: business_requirement\n", "    type: business_requirement\n    phase: 1\n"))
    with pytest.raises(ProjectError, match=r"'phase'"):
        load_sidecar(folder)


# --- hostile or odd files: a clear error, nothing written ------------------------------------------


def alias_bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    return "project_name: bomb\n" + "\n".join(lines) + "\n"


def assert_refused(folder: Path, match: str) -> None:
    before = os.stat(folder / "sidecar.yaml")
    with pytest.raises(ProjectError, match=match):
        load_sidecar(folder)
    with pytest.raises(ProjectError, match=match):
        upsert_decision(folder, tp(1))
    after = os.stat(folder / "sidecar.yaml")
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (before.st_mtime_ns, before.st_size, before.st_ino)


def test_an_alias_bomb_is_refused(tmp_path):
    text = alias_bomb()
    assert len(text) < 2000
    folder = write_sidecar(tmp_path / "p", text)
    assert_refused(folder, "expands to more than")


def test_deep_nesting_is_refused(tmp_path):
    folder = write_sidecar(tmp_path / "p", "project_name: deep\nx: " + "[" * 1000 + "]" * 1000 + "\n")
    assert_refused(folder, "nested more than")


def test_deep_block_nesting_is_refused(tmp_path):
    nested = "".join(f"{'  ' * i}k{i}:\n" for i in range(1000)) + "  " * 1000 + "v: 1\n"
    folder = write_sidecar(tmp_path / "p", "project_name: deep\n" + nested)
    assert_refused(folder, "nested more than")


def test_a_50_mb_sidecar_is_refused(tmp_path):
    folder = write_sidecar(tmp_path / "p", "project_name: big\nblob: |\n")
    with open(folder / "sidecar.yaml", "a", encoding="utf-8") as fh:
        line = "  " + "x" * 1022 + "\n"
        fh.write(line * (50 * 1024))
    assert_refused(folder, r"is 50\.\d MB")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_fifo_named_sidecar_is_refused_without_hanging(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    os.mkfifo(folder / "sidecar.yaml")
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            load_sidecar(folder)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(60)  # a generous bound: the point is that it returns at all
    if worker.is_alive():
        with open(folder / "sidecar.yaml", "w"):  # unblock the reader so the test run can end
            pass
        pytest.fail("reading a FIFO named sidecar.yaml hung")
    assert isinstance(outcome[0], ProjectError) and "named pipe (FIFO)" in str(outcome[0])


# --- failing disks: a message that names the fix, the answer kept ---------------------------------------


def fail_writes(monkeypatch, err: int) -> None:
    def fail(src, dst):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(fsutil, "_replace", fail)


@pytest.mark.parametrize(
    "err,fix",
    [(errno.ENOSPC, "Free some space on that disk"), (errno.EROFS, "writable"), (errno.EACCES, "writable")],
)
def test_a_failing_write_names_the_fix_and_changes_nothing(project_copy, monkeypatch, err, fix):
    folder = project_copy("support-bot")
    before = (folder / "sidecar.yaml").read_bytes()
    fail_writes(monkeypatch, err)
    with pytest.raises(ProjectError, match=fix) as caught:
        upsert_decision(folder, tp(1))
    assert os.strerror(err) in str(caught.value) and "sidecar.yaml" in str(caught.value)
    assert (folder / "sidecar.yaml").read_bytes() == before
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_at_a_confirmation_keeps_the_answer_for_the_retry(project_copy, loop, knowledge, monkeypatch):
    folder = project_copy("support-bot")
    session = Session(loop, knowledge, str(folder))
    payload = session.run_until(answer_from(HAPPY), lambda p: p["question_id"] == "base_model.decision")
    before = (folder / "sidecar.yaml").read_bytes()
    fields = {**payload["default"], "max_seq_len": 1024} if "max_seq_len" in payload["default"] else dict(payload["default"])
    fail_writes(monkeypatch, errno.ENOSPC)
    again = session.resume(fields)  # the answer typed at the moment the disk is full
    assert again["question_id"] == "base_model.decision"
    assert "No space left on device" in again["error"] and "Free some space" in again["error"]
    assert again["default"] == fields  # kept: Enter (or yes) submits it again
    assert (folder / "sidecar.yaml").read_bytes() == before
    monkeypatch.undo()
    after = session.resume("yes")
    assert after["question_id"] != "base_model.decision"
    recorded = tp_entries(load_sidecar(folder))
    assert [e["id"] for e in recorded] == ["tp-001"]
    assert recorded[0]["training_pipeline"]["fields"] == fields


def test_a_phase_folder_linked_out_of_the_project_is_named_and_the_run_resumes(project_copy, tmp_path, loop, knowledge):
    folder = project_copy("support-bot")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (folder / "phase-2-training").rename(tmp_path / "moved-aside")
    (folder / "phase-2-training").symlink_to(outside, target_is_directory=True)
    session = Session(loop, knowledge, str(folder))
    with pytest.raises(ProjectError, match="phase-2-training is a link to .*Replace the link with a real folder"):
        session.run(answer_from(HAPPY))
    assert list(outside.iterdir()) == []
    (folder / "phase-2-training").unlink()
    (folder / "phase-2-training").mkdir()
    loop.run_until_complete(session.app.ainvoke(None, session.config, context=session.context))  # resume the failed step
    assert (folder / "phase-2-training" / "spec.md").is_file()
    assert len(tp_entries(load_sidecar(folder))) == 6  # every answer given before is kept


# --- item 2: every writer in every process takes the lock -------------------------------------------

UPSERTER = textwrap.dedent(
    """
    import sys
    from agent.sidecar import upsert_decision
    folder, first = sys.argv[1], int(sys.argv[2])
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    sys.stdin.readline()  # start together
    for n in range(first, first + 100):
        upsert_decision(folder, {"id": f"tp-{n:03d}", "choice": f"c{n}", "rationale": "r", "knowledge_ref": "k"})
    """
)


def test_two_processes_upserting_100_decisions_each_lose_none(project_copy):
    folder = project_copy("support-bot")
    procs = [
        subprocess.Popen([sys.executable, "-c", UPSERTER, str(folder), str(first)], cwd=ROOT, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for first in (100, 200)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    ids = sorted(d["id"] for d in tp_entries(load_sidecar(folder)))
    assert ids == [f"tp-{n:03d}" for n in range(100, 300)]
    assert [d["id"] for d in load_sidecar(folder)["decisions"][:3]] == ["arch-001", "fp-001", "fp-002"]


HOLDER = textwrap.dedent(
    """
    import sys
    from agent.lock import ProjectLock
    lock = ProjectLock(sys.argv[1], "training-pipeline chat").acquire()
    sys.stdout.write("held\\n"); sys.stdout.flush()
    sys.stdin.readline()
    lock.release()
    """
)


class Holder:
    """Another process holding the project the way `training-pipeline chat` does."""

    def __init__(self, folder: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=ROOT, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout.readline() == "held\n"

    def release(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)


def test_a_graph_run_from_another_process_is_refused_while_a_session_holds_the_project(project_copy, loop, knowledge):
    folder = project_copy("support-bot")
    before = (folder / "sidecar.yaml").read_bytes()
    holder = Holder(folder)
    try:
        with pytest.raises(LockHeld, match=rf"in use by training-pipeline chat \(pid {holder.proc.pid}\)") as caught:
            Session(loop, knowledge, str(folder)).start()
        assert isinstance(caught.value, ValueError)
        with pytest.raises(LockHeld):
            upsert_decision(folder, tp(1))
        with pytest.raises(LockHeld):
            write_phase_artifacts(folder, {}, [], [], {"name": "support-bot"})
        assert (folder / "sidecar.yaml").read_bytes() == before
    finally:
        holder.release()
    assert Session(loop, knowledge, str(folder)).start()["question_id"] == "base_model.constraints"


def test_a_session_started_elsewhere_mid_run_stops_the_writes_and_keeps_the_answer(project_copy, loop, knowledge):
    folder = project_copy("support-bot")
    session = Session(loop, knowledge, str(folder))  # e.g. a run in the LangGraph API server
    session.run_until(answer_from(HAPPY), lambda p: p["question_id"] == "base_model.decision")
    before = (folder / "sidecar.yaml").read_bytes()
    holder = Holder(folder)  # then `chat` takes the project
    try:
        again = session.resume("yes")
        assert again["question_id"] == "base_model.decision"
        assert f"in use by training-pipeline chat (pid {holder.proc.pid})" in again["error"]
        assert (folder / "sidecar.yaml").read_bytes() == before
    finally:
        holder.release()
    assert session.resume("yes")["question_id"] != "base_model.decision"
    assert [e["id"] for e in tp_entries(load_sidecar(folder))] == ["tp-001"]


def test_the_holding_session_itself_writes_freely(project_copy, loop, knowledge):
    folder = project_copy("support-bot")
    with ProjectLock(folder, "training-pipeline chat"):  # as the terminal runs its graph in-process
        values = Session(loop, knowledge, str(folder)).run(answer_from(HAPPY))
    assert values["phase_status"] == "complete"
    assert yaml.safe_load((folder / "sidecar.yaml").read_text())["phases"]["phase_2_training"] == "complete"


def test_a_layout_the_fast_path_does_not_take_still_keeps_comments_and_quoting(tmp_path):
    # A document marker and decisions written flow-style: the whole file goes through the round trip.
    text = "---\n" + REAL_WORKFLOW.replace("stories: []\n", "stories: []  # none yet\n")
    folder = write_sidecar(tmp_path / "p", text)
    upsert_decision(folder, tp(1))
    mark_phase_complete(folder)
    out = (folder / "sidecar.yaml").read_text(encoding="utf-8").splitlines()
    assert out[0] == "---"
    kept = [line for line in UNOWNED if line not in out and "stories" not in line]
    assert kept == [] and "stories: []  # none yet" in out
    assert [d["id"] for d in tp_entries(load_sidecar(folder))] == ["tp-001"]


def test_an_entry_replaced_at_the_end_of_the_list_keeps_the_comment_below_it(tmp_path):
    folder = write_sidecar(tmp_path / "p", REAL_WORKFLOW)
    upsert_decision(folder, tp(1))
    upsert_decision(folder, tp(1, choice="again"))
    text = (folder / "sidecar.yaml").read_text(encoding="utf-8")
    assert "\n\n# Warnings Acknowledged\nwarnings_acknowledged: []\n" in text
    assert text.index("choice: again") < text.index("# Warnings Acknowledged")
