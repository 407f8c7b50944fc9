"""kill -9 a real terminal session after its answers: the restart resumes where it stopped.

Each test runs `training-pipeline chat` in a pseudo-terminal, as a user would, on a
copy of a fixture project. After an answer the process gets SIGKILL, a new one is
started on the same folder, and it must show the question that comes next, or the
same one if the answer had not been recorded yet (an answer the checkpoint holds is
never asked for again). At the end the project's files equal, byte for byte, those of
an uninterrupted run, and the checkpoint holds the same list of answers: none lost,
none recorded twice.

The question on screen is read from the id `render_question` prints under the panel.

Kill points. A restart costs about 2 s, nearly all of it start-up, so the matrix is:
- support-bot: a kill after every answer, once the next question is on screen;
- contract-assistant (hybrid) and unscoped (asks for the architecture first): every
  other answer, chosen so that between the two every question is killed after once;
- support-bot again with a kill while each answer is being processed: the delay
  sweeps the time that answer took in the uninterrupted run;
- docs-qa (RAG-only: no questions, the skip record is written): kills spread over
  its run.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from agent.sidecar import load_sidecar, tp_entries
from agent.state import DECISION_IDS
from tests.conftest import FIXTURES
from tests.driver import HAPPY, answer_from

pexpect = pytest.importorskip("pexpect")

SCRIPT = shutil.which("training-pipeline", path=str(Path(sys.executable).parent)) or shutil.which("training-pipeline")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(SCRIPT is None, reason="the training-pipeline console script is not installed")]

# Wide and plain: rich honours COLUMNS/LINES even on a dumb terminal, and a dumb
# terminal gets no spinner animation or colour codes to parse around.
ENV = {k: v for k, v in os.environ.items() if not k.startswith("KNOWLEDGE_MCP_")}  # the embedded knowledge server
ENV.update({"COLUMNS": "200", "LINES": "50", "TERM": "dumb", "NO_COLOR": "1"})
TIMEOUT = 90  # seconds for one question to appear: generous, the machine may be busy

QUESTION_ID = re.compile(r"╰─+ ([A-Za-z0-9_.]+) ─+╯")  # the id under the question's panel
PROMPT = re.compile(r"\n> ")
# What the CLI says when it picks up the stopped run: at its open question, or inside the
# step that was killed. (The welcome's "Resuming: N of 6 decisions..." is a fresh run.)
RESUMED = re.compile(r"Resuming (where you stopped|the step that was interrupted)\.")
THREAD_ID = "phase-2-training"

ARTIFACTS = (
    "phase-2-training/spec.md",
    "phase-2-training/templates/training-config.template.yaml",
    "decision-log.md",
    "project-spec.md",
    "sidecar.yaml",
)

_answer = answer_from(HAPPY)


def answer(question_id: str) -> str:
    """What the user types: tests/driver.py's answers, yes to proposals, C at the menu."""
    return _answer({"question_id": question_id, "prompt": ""})


def copy_fixture(name: str, dest: Path) -> Path:
    shutil.copytree(FIXTURES / name, dest)
    for p in [dest, *dest.rglob("*")]:  # the shared copy is read-only
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dest


class Chat:
    """One `training-pipeline chat --project DIR` process in a pseudo-terminal."""

    def __init__(self, project: Path):
        # --offline: the deterministic rules, whatever model settings the environment holds,
        # so runs can be compared byte for byte.
        self.child = pexpect.spawn(
            SCRIPT, ["chat", "--project", str(project), "--offline"], env=ENV, encoding="utf-8",
            timeout=TIMEOUT, dimensions=(50, 200),
        )  # fmt: skip
        self.seen = ""  # what the process printed up to the current question

    @property
    def pid(self) -> int:
        return self.child.pid

    def started(self) -> None:
        """Wait for the first line the session prints (it holds the project lock by then)."""
        self.child.expect_exact("Mode: offline")
        self.seen += self.child.before + self.child.after

    def question(self) -> str | None:
        """The id of the question waiting at `> `, or None once the session has ended."""
        found = self.child.expect([QUESTION_ID, pexpect.EOF])
        self.seen += self.child.before
        if found == 1:
            return None
        qid = self.child.match.group(1)
        self.child.expect(PROMPT)
        return qid

    def send(self, text: str) -> None:
        self.child.sendline(text)

    def kill(self) -> bool:
        """SIGKILL the process; False if it had already exited by itself."""
        if not self.child.isalive():
            return False
        self.child.kill(signal.SIGKILL)
        self.child.wait()
        self.child.delayafterclose = 0  # reaped already: no need to wait for it after closing the pty
        self.child.close()
        return self.child.signalstatus == signal.SIGKILL  # else it exited just before the signal

    def finish(self) -> str:
        """Wait for the process to end by itself and return its output; it must exit 0."""
        self.child.expect(pexpect.EOF)
        self.seen += self.child.before
        self.child.close()
        assert self.child.exitstatus == 0, f"exit {self.child.exitstatus}, signal {self.child.signalstatus}:\n{self.seen[-3000:]}"
        return self.seen

    def exit_code(self) -> int | None:
        self.child.expect(pexpect.EOF)
        self.seen += self.child.before
        self.child.close()
        return self.child.exitstatus

    def stop(self) -> None:
        """Clean-up: never leave a process behind, whatever the test did."""
        if self.child.isalive():
            self.child.kill(signal.SIGKILL)
        self.child.close(force=True)


@dataclass
class Reference:
    """An uninterrupted session: the questions in order, how long each answer took, the result."""

    questions: list[str]
    seconds: list[float]
    files: dict[str, bytes]
    answers: list[dict]
    work_seconds: float  # from the first line of output to the exit


@dataclass(frozen=True)
class Kill:
    """When to kill after an answer: `after` seconds after sending it, or None: once the next question shows."""

    after: float | None = None


@dataclass
class Outcome:
    kills: int = 0
    not_taken: int = 0  # restarts that showed the same question again: the answer was not recorded yet
    runs: int = 1  # times the graph was started from its input: resuming starts none
    log: list[str] = field(default_factory=list)


def project_files(project: Path) -> dict[str, bytes]:
    """Every file of the project except the session's own state folder.

    Temp files an atomic write was killed in the middle of (`.sidecar.yaml.<random>.tmp`)
    are left out: nothing reads them, but they are left behind (reported).
    """
    return {
        rel: p.read_bytes()
        for p in sorted(project.rglob("*"))
        if p.is_file()
        and ".training-pipeline" not in p.relative_to(project).parts
        and not re.fullmatch(r"\..+\.[^./]+\.tmp", p.name)
        for rel in [p.relative_to(project).as_posix()]
    }


def checkpointed(project: Path):
    """The state snapshot the project's checkpoint holds, read the way the next session reads it."""
    from agent.checkpoint import ProjectCheckpointer
    from graph import builder

    app = builder.compile(checkpointer=ProjectCheckpointer(project))
    return asyncio.run(app.aget_state({"configurable": {"thread_id": THREAD_ID}}))


def checkpointed_answers(project: Path) -> list[dict]:
    return list(checkpointed(project).values.get("answers") or [])


def describe(snapshot) -> str:
    """Where a stopped run stands, for failure messages."""
    tasks = [(t.name, "interrupt" if t.interrupts else "writes saved" if t.result is not None else "to run") for t in snapshot.tasks]
    return f"step {snapshot.metadata.get('step')} ({snapshot.metadata.get('source')}), next {snapshot.next}, tasks {tasks}"


def runs_started(project: Path) -> int:
    """How many times the graph was started from its input on the thread (a resume starts none)."""
    from agent.checkpoint import ProjectCheckpointer
    from graph import builder

    app = builder.compile(checkpointer=ProjectCheckpointer(project))
    history = app.get_state_history({"configurable": {"thread_id": THREAD_ID}})
    return sum(1 for snapshot in history if snapshot.metadata.get("source") == "input")


def run_uninterrupted(project: Path) -> Reference:
    chat = Chat(project)
    try:
        questions, seconds = [], []
        chat.started()
        began = time.monotonic()
        qid = chat.question()
        while qid is not None:
            questions.append(qid)
            start = time.monotonic()
            chat.send(answer(qid))
            qid = chat.question()
            seconds.append(time.monotonic() - start)
        assert "Done." in chat.finish()
        work = time.monotonic() - began
    finally:
        chat.stop()
    return Reference(questions, seconds, project_files(project), checkpointed_answers(project), work)


def check_after_restart(project: Path, ref: Reference, taken: int) -> None:
    """The sidecar is valid and holds every decision confirmed so far, as the reference has it."""
    raw = load_sidecar(project)  # raises if a kill left it unreadable or invalid
    final = {e["id"]: e for e in tp_entries(yaml.safe_load(ref.files["sidecar.yaml"]))}
    have = {e["id"]: e for e in tp_entries(raw)}
    confirmed = {DECISION_IDS[q.split(".")[0]] for q in ref.questions[:taken] if q.endswith(".decision")}
    assert confirmed <= set(have), f"decisions lost from the sidecar: {sorted(confirmed - set(have))}"
    for tp_id, entry in have.items():
        assert entry == final[tp_id], f"{tp_id} differs from the uninterrupted run"


def run_with_kills(project: Path, ref: Reference, plan: Callable[[int], Kill | None]) -> Outcome:
    """Answer as in `ref`; after answer i, kill as `plan(i)` says (None: no kill) and restart."""
    out = Outcome()
    qs = ref.questions
    i = 0  # how many answers have been taken: qs[i] must be on screen
    tried_mid: set[int] = set()  # one kill mid-answer per answer; if it came too early, the retry goes through
    chat = Chat(project)
    try:
        qid = chat.question()
        while True:
            assert qid == qs[i], f"expected {qs[i]} after {i} answers, got {qid}\n{chat.seen[-2000:]}"
            answered = qid
            chat.send(answer(qid))
            kill = plan(i)
            mid = kill is not None and kill.after is not None and i not in tried_mid
            if mid:
                tried_mid.add(i)
                time.sleep(kill.after)  # deliberate: the kill lands while the answer is being processed
            else:
                shown = chat.question()
                if shown is None:  # the last answer ends the session
                    assert i == len(qs) - 1, chat.seen[-2000:]
                    chat.finish()
                    return out
                i, qid = i + 1, shown
                assert qid == qs[i], f"after answering {answered}: {qid}"
                if kill is None:
                    continue
            if not chat.kill():  # it ended by itself first: only the last answer does that
                assert i == len(qs) - 1, chat.seen[-2000:]
                chat.finish()
                return out
            out.kills += 1
            # What the checkpoint holds decides what the restart may show: an answer it has
            # recorded must never be asked for again.
            snapshot = checkpointed(project)
            state = snapshot.values
            recorded = sum(1 for a in state.get("answers") or [] if a["accepted"])
            chat = Chat(project)
            qid = chat.question()
            if state.get("handoff"):  # the last answer had done its work before the kill
                assert i == len(qs) - 1, chat.seen[-2000:]
                if qid is None:  # the restart finished the interrupted step
                    chat.finish()
                else:  # the run had ended: a finished phase reopens at its menu, as a new run
                    assert qid == "menu" and "already completed" in chat.seen, chat.seen[-2000:]
                    out.runs += 1
                return out
            if mid and qid == answered:
                assert recorded <= i, f"the answer to {qid} was recorded, yet it was asked again after the restart"
                out.not_taken += 1
                out.log.append(f"{answered}: asked again")
            elif mid:
                i += 1
                out.log.append(f"{answered}: taken")
            assert qid == qs[i], f"after {i} answers expected {qs[i]}, got {qid}\n{chat.seen[-2000:]}"
            assert RESUMED.search(chat.seen), (
                f"the restart at {qid}, killed after answering {answered} at {describe(snapshot)}, "
                f"did not resume the stopped run:\n{chat.seen[:1500]}"
            )
            check_after_restart(project, ref, i)
    finally:
        chat.stop()


def assert_same_as_reference(project: Path, ref: Reference, out: Outcome) -> None:
    files = project_files(project)
    for name in ARTIFACTS:
        assert name in ref.files, f"the uninterrupted run did not write {name}"
        assert files.get(name) == ref.files[name], f"{name} differs from the uninterrupted run"
    assert files == ref.files, f"files differ: {sorted(set(files) ^ set(ref.files))}"
    answers = checkpointed_answers(project)
    # Zero answers lost, none recorded twice: the same list as without kills.
    assert [a["question_id"] for a in answers] == [a["question_id"] for a in ref.answers]
    assert answers == ref.answers
    assert runs_started(project) == out.runs, "a restart began the run again instead of resuming it"


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> Callable[[str], Reference]:
    """One uninterrupted run per fixture, shared by the tests of this module."""
    cache: dict[str, Reference] = {}

    def get(name: str) -> Reference:
        if name not in cache:
            project = copy_fixture(name, tmp_path_factory.mktemp("reference") / name)
            cache[name] = run_uninterrupted(project)
        return cache[name]

    return get


@pytest.mark.parametrize(
    "fixture, kill_after",
    [
        ("support-bot", lambda i: True),
        # unscoped asks one question more at the front, so even indices here and there
        # are complementary questions: together every question is killed after once.
        ("contract-assistant", lambda i: i % 2 == 0),
        ("unscoped", lambda i: i % 2 == 0),
    ],
    ids=["support-bot", "contract-assistant", "unscoped"],
)
def test_kill_after_an_answer_resumes_at_the_next_question(fixture, kill_after, references, tmp_path):
    ref = references(fixture)
    assert len(ref.questions) >= 13 and ref.questions[-1] == "menu"
    assert (ref.questions[0] == "architecture") == (fixture == "unscoped")
    project = copy_fixture(fixture, tmp_path / fixture)
    planned = [i for i in range(len(ref.questions) - 1) if kill_after(i)]  # the last answer ends the session

    out = run_with_kills(project, ref, lambda i: Kill() if i in planned else None)

    assert out.kills == len(planned) and out.not_taken == 0
    assert_same_as_reference(project, ref, out)


def test_kill_while_an_answer_is_processed(references, tmp_path):
    ref = references("support-bot")
    project = copy_fixture("support-bot", tmp_path / "support-bot")
    # From right after sending (the process has usually not read it yet) to about when
    # the next question showed in the uninterrupted run.
    fractions = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

    out = run_with_kills(project, ref, lambda i: Kill(after=ref.seconds[i] * fractions[i % len(fractions)]))

    print(f"\n{out.kills} kills, {out.not_taken} before the answer was recorded: " + "; ".join(out.log))
    assert out.kills >= len(ref.questions) - 1
    assert_same_as_reference(project, ref, out)


def test_kill_during_the_rag_only_skip(references, tmp_path):
    ref = references("docs-qa")
    assert ref.questions == []  # nothing to ask: the skip record is written and the session ends
    project = copy_fixture("docs-qa", tmp_path / "docs-qa")

    kills = 0
    for fraction in (0.0, 0.25, 0.5, 0.75, 0.9):  # of the reference's time from its first line to its exit
        chat = Chat(project)
        try:
            chat.started()
            time.sleep(ref.work_seconds * fraction)  # deliberate: the kill point is what is tested
            killed = chat.kill()
        finally:
            chat.stop()
        if not killed:  # it finished first: later points would too
            break
        kills += 1
        load_sidecar(project)  # the kill left it valid

    chat = Chat(project)
    try:
        qid = chat.question()
        if qid is not None:  # the skip was recorded before a kill: Phase 2 opens at its menu
            assert qid == "menu" and "already skipped" in chat.seen
            chat.send(answer(qid))
            assert chat.question() is None
        assert "Done." in chat.finish()
    finally:
        chat.stop()
    assert kills >= 1
    assert project_files(project) == ref.files


# --- the windows a kill can hit between steps, made deterministically ------------------------


class _Killed(Exception):
    pass


def stopped_session(project: Path, answers: list[str], *, interrupt_after: Sequence[str] = (), lose_next_checkpoint: bool = False):
    """Run the graph in this process up to a state a kill leaves, and return that state.

    After the questions in `answers` are answered, the last answer's run stops either at
    a breakpoint (`interrupt_after`: the step's checkpoint is saved, the next step has not
    run) or just before its next checkpoint (`lose_next_checkpoint`: the step's writes are
    saved, the checkpoint after it is not), as SIGKILL would leave it.
    """
    from langgraph.types import Command

    from agent.checkpoint import ProjectCheckpointer
    from agent.context import Context
    from agent.knowledge.client import KnowledgeClient, KnowledgeConfig
    from graph import builder

    class DiesBeforeTheNextCheckpoint(ProjectCheckpointer):
        armed = False

        async def aput(self, *args, **kwargs):
            if self.armed:
                raise _Killed
            return await super().aput(*args, **kwargs)

    async def run():
        async with KnowledgeClient(KnowledgeConfig()) as knowledge:
            saver = DiesBeforeTheNextCheckpoint(project)
            app = builder.compile(checkpointer=saver, interrupt_after=list(interrupt_after))
            config = {"configurable": {"thread_id": THREAD_ID}}
            context = Context(offline=True, knowledge_client=knowledge)
            await app.ainvoke({"project_dir": str(project)}, config, context=context)
            for n, text in enumerate(answers):
                last = n == len(answers) - 1
                saver.armed = last and lose_next_checkpoint
                try:
                    await app.ainvoke(Command(resume=text), config, context=context)
                except _Killed:
                    assert saver.armed
                else:
                    assert not saver.armed, "the run ended without another checkpoint"
            saver.armed = False
            return await app.aget_state(config)

    return asyncio.run(run())


def test_a_restart_between_two_steps_continues_the_run(tmp_path):
    project = copy_fixture("support-bot", tmp_path / "support-bot")
    state = stopped_session(project, [answer("base_model.constraints")], interrupt_after=["base_model_ask"])
    assert state.next and not state.interrupts  # the answer recorded, the proposal not made yet

    chat = Chat(project)
    try:
        assert chat.question() == "base_model.decision", chat.seen[-2000:]  # not the constraints again
        assert RESUMED.search(chat.seen)
        chat.child.sendeof()  # Ctrl-D: stop, keeping every answer
        assert chat.exit_code() == 0
    finally:
        chat.stop()
    assert [a["question_id"] for a in checkpointed_answers(project)] == ["base_model.constraints"]
    assert runs_started(project) == 1


def test_a_restart_after_a_step_saved_its_writes_continues_the_run(tmp_path):
    project = copy_fixture("support-bot", tmp_path / "support-bot")
    state = stopped_session(project, [answer("base_model.constraints"), "yes"], lose_next_checkpoint=True)
    assert not state.next and state.tasks and not state.interrupts  # the decision's writes saved, nothing after

    chat = Chat(project)
    try:
        assert chat.question() == "training_approach.goals", chat.seen[-2000:]
        chat.child.sendeof()
        assert chat.exit_code() == 0
    finally:
        chat.stop()
    assert [a["question_id"] for a in checkpointed_answers(project)] == ["base_model.constraints", "base_model.decision"]
    assert runs_started(project) == 1, "the restart began the run again: welcome and the knowledge consultation ran twice"
