"""The transcript format and its recorder (agent/transcript.py), and `chat --record`."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.transcript import (
    REDACTED,
    KnowledgeSource,
    ProjectSource,
    Recorder,
    Redactor,
    Session,
    Shown,
    Transcript,
    TranscriptError,
    Turn,
    digest,
    dump_transcript,
    load_transcript,
    markdown_outline,
    outcome,
    save_transcript,
    yaml_outline,
)
from tests.conftest import ROOT


def payload(qid: str = "peft.compute", prompt: str = "What compute resources do you have?", **extra) -> dict:
    return {"question_id": qid, "section": qid.split(".")[0], "kind": "text", "title": "t", "prompt": prompt,
            "options": [], "default": None, "error": None, **extra}


def transcript(**extra) -> Transcript:
    return Transcript(name="t", project=ProjectSource(fixture="support-bot"), today="2026-04-01", **extra)


# --- the format --------------------------------------------------------------------------


def test_digest_is_twelve_hex_of_sha256_and_canonical_for_objects():
    assert digest("yes") == "8a798890fe93"
    assert len(digest("x")) == 12
    assert digest({"b": 1, "a": "é"}) == digest({"a": "é", "b": 1})


def test_a_prompt_that_does_not_match_its_digest_is_refused():
    with pytest.raises(ValueError, match="peft.compute: prompt text does not match"):
        Shown(question_id="peft.compute", prompt_sha=digest("old"), prompt="new")
    assert Shown(question_id="q.x", prompt_sha=digest("old")).prompt is None  # the text is optional


def test_an_answer_mangled_in_the_file_is_refused_and_a_missing_digest_computed():
    turn = Turn(question_id="q.x", prompt_sha=digest("p"), answer="yes")
    assert turn.answer_sha == digest("yes")
    with pytest.raises(ValueError, match="does not match answer_sha"):
        Turn(question_id="q.x", prompt_sha=digest("p"), answer="yes ", answer_sha=digest("yes"))


def test_project_source_needs_exactly_one_origin_and_stays_in_the_folder():
    with pytest.raises(ValueError, match="either `fixture` or `sidecar`"):
        ProjectSource()
    with pytest.raises(ValueError, match="either"):
        ProjectSource(fixture="support-bot", sidecar="project_name: x\n")
    with pytest.raises(ValueError, match="inside the project folder"):
        ProjectSource(sidecar="project_name: x\n", files={"../escape.md": "x"})


def test_load_names_the_file_on_bad_yaml_and_bad_shape(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(TranscriptError, match="bad.yaml"):
        load_transcript(bad)
    bad.write_text("name: x\nturns: []\n")
    with pytest.raises(TranscriptError, match="project"):
        load_transcript(bad)


# Anything a user can type must survive the file: YAML specials, Markdown, control and line-separator characters.
_typed = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=150, deadline=None)
@given(answer=_typed, prompt=_typed.filter(bool))
def test_any_text_round_trips_through_the_file(tmp_path_factory, answer, prompt):
    t = transcript(sessions=[Session(turns=[Turn(**Shown.of(payload(prompt=prompt)).model_dump(), answer=answer)])])
    path = tmp_path_factory.mktemp("rt") / "t.yaml"
    save_transcript(t, path)
    back = load_transcript(path)  # validates both digests
    assert back.sessions[0].turns[0].answer == answer and back.sessions[0].turns[0].prompt == prompt


def test_form_answers_and_outlines_round_trip(tmp_path):
    t = transcript(sessions=[Session(turns=[Turn(question_id="peft.decision", prompt_sha=digest("p"), prompt="p",
                                                 answer={"r": 32, "target_modules": ["q_proj", "v_proj"]})],
                                     trajectory=[["load_project", "__interrupt__"], ["peft_decide"]])])
    text = dump_transcript(t)
    assert "- [load_project, __interrupt__]" in text  # a trajectory step reads as one line
    assert "sidecar:" not in text.split("knowledge:")[0]  # empty project keys are left out
    path = tmp_path / "t.yaml"
    path.write_text(text)
    assert load_transcript(path) == t


# --- secrets -----------------------------------------------------------------------------


def test_redactor_removes_keys_by_value_and_by_shape(monkeypatch):
    monkeypatch.setenv("EXAMPLE_SERVICE_API_KEY", "hunter2-hunter2")
    r = Redactor()
    assert r.text("my key hunter2-hunter2 ok") == f"my key {REDACTED} ok"
    assert r.text("sk-abcdefghijklmnop1234") == REDACTED
    assert r.text("Authorization: Bearer abc.def.ghi") == f"Authorization: {REDACTED}"
    assert r.text("curl -H 'X-API-Key: kp_live_123'") == f"curl -H 'X-API-Key: {REDACTED}"
    assert r.text("Bearer eyJhbGciOi.payload") == f"Bearer {REDACTED}"
    assert r({"a": ["sk-abcdefghijklmnop1234", 3]}) == {"a": [REDACTED, 3]}
    assert r.text("broken \ud800 text") == "broken ? text"  # storable, never a crash while saving
    clean = "One 24 GB GPU, r: 16, alpha: 32, task-specific data"
    assert r.text(clean) == clean


# --- the recorder ------------------------------------------------------------------------


def test_recorder_builds_turns_trajectory_knowledge_and_decision_events():
    rec = Recorder(transcript(knowledge=KnowledgeSource(source="recorded")))
    rec.begin_session("main", today="2026-04-01")
    rec.on_update("load_project", {"project": {}})
    rec.on_update("consult_knowledge", {"knowledge": [{"query_id": "consult.x", "ref": "r", "items": []}]})
    rec.on_update("__interrupt__", ("interrupt",))
    rec.on_answer(payload(), "One 24 GB GPU")
    rec.on_update("peft_ask", {"answers": []})
    rec.on_update("peft_decide", {"decisions": {"peft": {}}})
    rec.end_session(payload("menu", "Select"))
    s = rec.transcript.sessions[0]
    assert s.trajectory == [["load_project", "consult_knowledge", "__interrupt__"], ["peft_ask", "peft_decide"]]
    assert s.today is None  # same day as the transcript
    assert [t.question_id for t in s.turns] == ["peft.compute"] and s.turns[0].answer_sha == digest("One 24 GB GPU")
    assert s.stopped_at.question_id == "menu"
    assert list(rec.transcript.knowledge.records) == ["consult.x"]
    assert [(e.session, e.step, e.node, e.sections) for e in rec.decision_events] == [(0, 1, "peft_decide", ("peft",))]


def test_recorder_threads_resume_only_a_stopped_session():
    rec = Recorder(transcript())
    with pytest.raises(TranscriptError, match="cannot resume"):
        rec.begin_session("t", resumed=True)
    rec.begin_session("t")
    rec.end_session(payload())
    assert rec.can_resume("t") and rec.thread_label("t", has_checkpoint=True) == "t"
    assert rec.thread_label("t", has_checkpoint=False) == "t#2"  # checkpoint lost: a new thread on replay
    rec.begin_session("t", resumed=True, today="2026-04-02")
    assert rec.transcript.sessions[1].today == "2026-04-02"


def test_recorder_keeps_secrets_out_of_answers_prompts_and_knowledge(monkeypatch):
    monkeypatch.setenv("EXAMPLE_SERVICE_API_KEY", "s3cret-value-123")
    rec = Recorder(transcript())
    rec.begin_session()
    rec.on_update("k", {"knowledge": [{"query_id": "q", "arguments": {"query": "s3cret-value-123"}}]})
    rec.on_answer(payload(prompt="Key? Bearer abcdefgh12345"), "it is s3cret-value-123")
    text = dump_transcript(rec.transcript)
    assert "s3cret" not in text and "abcdefgh12345" not in text and text.count(REDACTED) == 3


def test_outline_and_outcome_of_a_project(tmp_path):
    (tmp_path / "sidecar.yaml").write_text(
        "architecture: fine-tuning\ncurrentPhase: 3\nstepsCompleted: [1, 2, 3, 4]\n"
        "phases: {phase_2_training: complete}\ndecisions: [{id: tp-001, choice: Qwen3 8B}]\n"
    )
    (tmp_path / "decision-log.md").write_text("# Log\n```\n# not a heading\n```\n## TP-001: Base\n**Status:** Superseded\ntext\n")
    assert markdown_outline((tmp_path / "decision-log.md").read_text()) == ["# Log", "## TP-001: Base", "**Status:** Superseded"]
    assert yaml_outline("model:\n  name: x\nlora:\n  target_modules: [a]\n") == {"model.name": "x", "lora.target_modules": ["a"]}
    assert "__invalid_yaml__" in yaml_outline("a: [b\n")
    values = {"phase_status": "complete", "handoff": {"step_id": "step-05"},
              "decisions": {"peft": {"id": "tp-004", "choice": "LoRA", "fields": {"r": 8}}}, "superseded": [{"id": "tp-004"}]}
    out = outcome(tmp_path, values)
    assert out.handoff == "step-05" and out.decisions["peft"].fields == {"r": 8} and out.superseded == ["tp-004"]
    assert out.sidecar["decisions"] == ["tp-001: Qwen3 8B"] and out.sidecar["phase_2_training"] == "complete"
    assert out.artifacts["phase-2-training/spec.md"] is None


# --- chat --record -----------------------------------------------------------------------


def _chat(project, record, lines, env):
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "chat", "--project", str(project), "--offline", "--record", str(record)],
        input="".join(f"{ln}\n" for ln in lines), capture_output=True, text=True, env=env, cwd=ROOT, timeout=180,
    )


def test_chat_record_appends_a_resumed_session_keeps_no_secret_and_replays(tmp_path):
    from evals.cli import eval_main

    project, record = tmp_path / "demo", tmp_path / "session.yaml"
    env = {**os.environ, "EXAMPLE_SERVICE_API_KEY": "topsecret-abc-123", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-m", "agent.cli", "init-demo", str(project)], check=True, cwd=ROOT, env=env, capture_output=True)
    # Stops (end of input) at the training-data question, then resumes with the checkpoint in the folder.
    first = _chat(project, record, ["One 24 GB GPU; key sk-abcdefghijklmnop1234 and topsecret-abc-123", "yes",
                                    "18,000 chats as instruction pairs"], env)
    assert first.returncode == 0, first.stdout + first.stderr
    stopped = load_transcript(record)
    assert [t.question_id for t in stopped.sessions[0].turns] == ["base_model.constraints", "base_model.decision", "training_approach.goals"]
    assert stopped.sessions[0].stopped_at.question_id == "training_approach.decision"
    second = _chat(project, record, ["yes", "18,000 reviewed chats, PII removed"], env)
    assert second.returncode == 0, second.stdout + second.stderr
    t = load_transcript(record)
    assert [(s.thread, s.resumed) for s in t.sessions] == [("phase-2-training", False), ("phase-2-training", True)]
    assert t.sessions[1].turns[0].question_id == "training_approach.decision"
    assert t.project.sidecar and t.project.project_spec and "decision-log.md" in t.project.files
    assert t.knowledge.records and t.knowledge.source == "embedded"
    assert set(t.expected.decisions) == {"base_model", "training_approach"}
    text = record.read_text()
    assert "topsecret" not in text and "sk-abcdefghijklmnop1234" not in text and REDACTED in text
    assert yaml.safe_load(text)["sessions"][1]["resumed"] is True
    assert eval_main([str(record)]) == 0
