"""The replayed-transcript evals: the whole suite, and evidence that each check and scorer can fail."""

from __future__ import annotations

import json
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from agent.sections import SECTION_SPECS
from agent.state import SECTIONS
from agent.transcript import DecisionEvent, load_transcript
from evals.checks import CHECKS
from evals.cli import TRANSCRIPTS, Evaluator, eval_main, score
from evals.replay import replay
from evals.scorers import MANDATORY_QUERIES, SCORERS, SPEC_SECTIONS
from tests.conftest import SHARED

SUITE = sorted(TRANSCRIPTS.glob("*.yaml"))


@pytest.fixture(scope="module")
def evaluator(loop):
    ev = Evaluator()  # one embedded knowledge server for the module
    yield ev
    loop.run_until_complete(ev.aclose())


# --- the suite ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SUITE, ids=[p.stem for p in SUITE])
def test_transcript_replays(loop, evaluator, path):
    result = loop.run_until_complete(evaluator.run(path))
    failures = "\n".join(f"[{s.name}]\n" + "\n".join(s.details) for s in result.failed)
    assert result.passed, failures


def test_suite_covers_what_the_phase_must_handle():
    suite = [load_transcript(p) for p in SUITE]
    assert len(suite) >= 20
    fields = lambda t, s: t.expected.decisions[s].fields if s in t.expected.decisions else {}  # noqa: E731
    projects = {t.project.fixture for t in suite}
    assert {"support-bot", "contract-assistant", "docs-qa", "unscoped"} <= projects
    assert any(t.project.sidecar for t in suite)  # an inline project
    assert {t.expected.sidecar["architecture"] for t in suite} >= {"fine-tuning", "hybrid", "rag-only"}
    assert {fields(t, "training_approach").get("approach") for t in suite} >= {"sft", "dpo", "combined"}
    assert {fields(t, "peft").get("method") for t in suite} >= {"full", "lora", "qlora"}
    assert {fields(t, "base_model").get("family") for t in suite} & {"falcon", "gpt2"}
    asked = lambda t: [q.question_id for s in t.sessions for q in s.turns]  # noqa: E731
    revisited = {q.answer for t in suite for s in t.sessions for q in s.turns if q.question_id == "menu.revisit"}
    assert set(SECTIONS) <= revisited
    menu = [q.answer for t in suite for s in t.sessions for q in s.turns if q.question_id == "menu"]
    assert "P" in menu and any(len(a) > 1 for a in menu)  # progress, and a question at the menu
    assert any(q.error for t in suite for s in t.sessions for q in s.turns)  # invalid answers re-asked
    assert any(isinstance(q.answer, dict) for t in suite for s in t.sessions for q in s.turns)  # a form answer
    recorded = [t for t in suite if t.knowledge.source == "recorded"]
    assert any(r.get("error") for t in recorded for recs in t.knowledge.records.values() for r in recs)
    assert all("consult_knowledge.retry" in asked(t) for t in recorded)
    assert any(len({s.thread for s in t.sessions}) > 1 and t.sessions[1].turns for t in suite)  # new thread from the sidecar
    assert any(s.resumed for t in suite for s in t.sessions)  # stopped and resumed on the same thread
    assert any(t.sessions[-1].turns and t.sessions[-1].turns[0].question_id == "menu" and len(t.sessions) > 1 for t in suite)
    answers = [q.answer for t in suite for s in t.sessions for q in s.turns if isinstance(q.answer, str)]
    assert any(len(a) > 3000 for a in answers) and any(not a.isascii() for a in answers)
    assert any("{{" in a and "#" in a and ": " in a for a in answers)  # YAML specials and Markdown


def test_scorer_constants_match_the_seed():
    seed = (SHARED / "seed" / "step-04-training-pipeline.md").read_text(encoding="utf-8")
    template = seed.split("### 9. Create Training Pipeline Spec", 1)[1].split("### 10.", 1)[0]
    assert tuple(re.findall(r"^## (.+)$", template, re.MULTILINE)) == SPEC_SECTIONS
    mandatory = seed.split("**MANDATORY QUERIES**", 1)[1].split("**Synthesis Approach:**", 1)[0]
    calls = re.findall(r'Endpoint: (\w+)\n(?:Query|Topic): "([^"]+)"', mandatory)
    assert tuple(f"{e}:{s}" for e, s in calls) == MANDATORY_QUERIES


# --- a changed prompt ---------------------------------------------------------------------


@contextmanager
def changed_ask_text(section: str, old: str, new: str):
    """Change one word of a section's question (specs are frozen dataclasses: patched and restored)."""
    spec = SECTION_SPECS[section]
    original = spec.ask_text
    assert old in original
    object.__setattr__(spec, "ask_text", original.replace(old, new, 1))
    try:
        yield
    finally:
        object.__setattr__(spec, "ask_text", original)


def _run_json(args: list[str], capsys) -> tuple[int, dict]:
    code = eval_main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


SAMPLE = ["rag-only-skip", "unscoped-chooses-rag-only", "resumed-new-thread", "knowledge-failure-retry", "full-fine-tuning-gpt2"]


def test_a_changed_prompt_fails_exactly_the_transcripts_that_saw_it_and_update_fixes_them(tmp_path, capsys):
    for name in SAMPLE:
        shutil.copy(TRANSCRIPTS / f"{name}.yaml", tmp_path)
    saw = {name for name in SAMPLE if load_transcript(tmp_path / f"{name}.yaml").saw("peft.compute")}
    assert saw and saw != set(SAMPLE)
    with changed_ask_text("peft", "resources", "hardware"):
        code, report = _run_json([str(tmp_path)], capsys)
        assert code == 1
        failed = {t["name"]: t for t in report["transcripts"] if not t["passed"]}
        assert set(failed) == saw
        for t in failed.values():
            bad = [s for s in t["scores"] if s["status"] == "fail"]
            assert [s["name"] for s in bad] == ["questions"]  # same answers, same decisions: only the prompt
            details = "\n".join(bad[0]["details"])
            assert "(`peft.compute`): the prompt changed" in details
            assert "-**What compute resources do you have?" in details and "+**What compute hardware do you have?" in details

        code, report = _run_json([str(tmp_path), "--update"], capsys)
        assert code == 0 and {t["name"] for t in report["transcripts"] if t["note"] == "updated"} == saw
        code, report = _run_json([str(tmp_path)], capsys)
        assert code == 0, report
        assert "hardware" in (tmp_path / f"{sorted(saw)[0]}.yaml").read_text()
    assert eval_main([str(tmp_path / f"{sorted(saw)[0]}.yaml")]) == 1  # the update really rewrote the expectation
    assert "(`peft.compute`): the prompt changed" in capsys.readouterr().out


# --- each check can fail, with a readable diff ---------------------------------------------


def _edit(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def test_a_changed_answer_that_diverges_is_reported_and_not_updated(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    shutil.copy(TRANSCRIPTS / "fine-tuning-sft-qlora.yaml", path)

    def answer_no(data):
        turn = data["sessions"][0]["turns"][1]  # base_model.decision: "yes" -> "no" is re-asked
        turn["answer"] = "no"
        del turn["answer_sha"]

    _edit(path, answer_no)
    assert eval_main([str(path), "--update"]) == 1
    out = capsys.readouterr().out
    assert "session 1, turn 3: expected `training_approach.goals`, the graph asked `base_model.decision`" in out
    assert "not updated" in out


def test_an_answer_edited_without_its_digest_is_a_load_failure(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    shutil.copy(TRANSCRIPTS / "rag-only-skip.yaml", path)
    shutil.copy(TRANSCRIPTS / "unscoped-chooses-rag-only.yaml", tmp_path / "u.yaml")
    _edit(tmp_path / "u.yaml", lambda d: d["sessions"][0]["turns"][0].update(answer="hybrid"))
    code, report = _run_json([str(tmp_path)], capsys)
    assert code == 1
    (bad,) = [t for t in report["transcripts"] if not t["passed"]]
    assert bad["scores"][0]["name"] == "load" and "answer_sha" in bad["scores"][0]["details"][0]


def test_changed_trajectory_decisions_artifacts_and_sidecar_are_each_diffed(tmp_path, capsys):
    path = tmp_path / "t.yaml"
    shutil.copy(TRANSCRIPTS / "fine-tuning-sft-qlora.yaml", path)

    def tamper(data):
        data["sessions"][0]["trajectory"][2] = ["base_model_decide", "peft", "__interrupt__"]
        data["expected"]["decisions"]["peft"]["fields"]["r"] = 64
        data["expected"]["artifacts"]["phase-2-training/spec.md"].remove("## Exit Criteria")
        data["expected"]["sidecar"]["phase_2_training"] = "in_progress"

    _edit(path, tamper)
    code, report = _run_json([str(path)], capsys)
    scores = {s["name"]: s for s in report["transcripts"][0]["scores"]}
    assert code == 1 and {n for n, s in scores.items() if s["status"] == "fail"} == {"trajectory", "state", "artifacts", "sidecar"}
    assert "after turn 2 (`base_model.decision`)" in scores["trajectory"]["details"][0]
    assert "+training_approach" in "\n".join(scores["trajectory"]["details"])
    assert "decisions.peft.fields.r: expected 64, got 16" in scores["state"]["details"][0]
    assert "+## Exit Criteria" in "\n".join(scores["artifacts"]["details"])
    assert "sidecar.phase_2_training: expected 'in_progress', got 'complete'" in scores["sidecar"]["details"][0]


def test_report_tables_and_wall_time(tmp_path, capsys):
    shutil.copy(TRANSCRIPTS / "rag-only-skip.yaml", tmp_path)
    assert eval_main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Transcripts" in out and "Scorers" in out and "rag-only-skip" in out
    for fn in (*CHECKS, *SCORERS):
        assert fn.__name__ in out
    assert re.search(r"1 transcripts, 0 failed, 13 scorers; wall time \d+\.\d\d s", out)
    assert eval_main([str(tmp_path / "missing.yaml")]) == 1


# --- each scorer can fail -------------------------------------------------------------------


@pytest.fixture(scope="module")
def replayed(loop, evaluator, tmp_path_factory):
    """Replay a transcript and keep its project folder, to break it afterwards."""

    def _replay(name: str):
        t = load_transcript(TRANSCRIPTS / f"{name}.yaml")
        run = loop.run_until_complete(replay(t, evaluator.driver(t), tmp_path_factory.mktemp(name)))
        assert not [s for s in score(run) if s.failed]
        return run

    return _replay


def _status(run, name: str) -> tuple[str, list[str]]:
    (s,) = [s for s in score(run) if s.name == name]
    return s.status, s.details


def test_artifact_scorers_fail_on_broken_files(replayed):
    run = replayed("fine-tuning-sft-qlora")
    spec = run.project_dir / "phase-2-training/spec.md"
    config = run.project_dir / "phase-2-training/templates/training-config.template.yaml"
    log = run.project_dir / "decision-log.md"
    spec.write_text(spec.read_text().replace("## Exit Criteria", "## Exit").replace("- Rank: 16", "- Rank: ?")
                    .replace("- [x] Templates generated", "- [ ] Templates generated"))
    config.write_text(config.read_text().replace("r: 16", "r: 8").replace('"MLflow"', '"{{TRACKING_TOOL}}"'))
    log.write_text(log.read_text().replace("**Decision:** SFT", "**Decision:** DPO"))
    run._files.clear()
    assert _status(run, "spec_complete") == ("fail", ["spec: `## Exit Criteria` missing", "spec: exit criterion not met: - [ ] Templates generated"])
    status, details = _status(run, "peft_hyperparameters_documented")
    assert status == "fail" and "spec: Parameter-Efficient Training lacks `- Rank: 16`" in details
    status, details = _status(run, "config_template_valid")
    assert status == "fail" and "placeholder left: {{TRACKING_TOOL}}" in details and "`lora.r` is 8, decided 16" in details
    assert _status(run, "sidecar_log_consistent") == ("fail", ["TP-002: sidecar says 'SFT', decision log says 'DPO'"])
    config.write_text("model: [unclosed\n")
    run._files.clear()
    assert _status(run, "config_template_valid")[0] == "fail"


def test_process_scorers_fail_on_a_bad_session(replayed):
    run = replayed("fine-tuning-sft-qlora")
    turn = run.actual.sessions[0].turns[6]  # peft.compute: a decision right after it was not confirmed
    run.decision_events.append(DecisionEvent(0, 7, "peft_ask", ("peft",)))
    assert _status(run, "decided_by_user") == ("fail", [f"TP-004 recorded by `peft_ask` after `{turn.question_id}` was answered {turn.answer[:60]!r}"])
    run.states["main"]["knowledge"] = [r for r in run.states["main"]["knowledge"] if r["ref"] != "get_warnings:fine-tuning"]
    assert _status(run, "knowledge_queried") == ("fail", ["`get_warnings:fine-tuning` was never queried"])
    turn.prompt += "\nWe will deploy it with vLLM next."
    status, details = _status(run, "no_later_phase_talk")
    assert status == "fail" and details[0].startswith("`peft.compute` talks about 'deploy'")


def test_skip_scorer_fails_when_rag_only_is_not_skipped(replayed):
    run = replayed("rag-only-skip")
    sidecar = run.project_dir / "sidecar.yaml"
    sidecar.write_text(re.sub(r'phase_2_training: "?skipped"?', "phase_2_training: complete", sidecar.read_text()))
    run._files.clear()
    assert _status(run, "skip_logic") == ("fail", ["RAG-only: sidecar says phase_2_training='complete', stepsCompleted=[1, 2, 3, 4]"])
    assert _status(run, "spec_complete")[0] == "n/a"


def test_the_generator_reproduces_a_stored_transcript(loop, evaluator, tmp_path):
    from agent.transcript import dump_transcript
    from evals.make_transcripts import record
    from evals.scenarios import SCENARIOS

    (scenario,) = [s for s in SCENARIOS if s.name == "knowledge-failure-retry"]
    embedded = evaluator.driver(load_transcript(TRANSCRIPTS / "rag-only-skip.yaml")).knowledge
    made = loop.run_until_complete(record(scenario, embedded, tmp_path))
    assert dump_transcript(made) == (TRANSCRIPTS / "knowledge-failure-retry.yaml").read_text(encoding="utf-8")


def test_model_mode_replays_the_recorded_replies(tmp_path, capsys):
    """The model transcript's outcome comes from its recorded replies: change one, and the replay
    shows it; take them away, and the replay cannot pretend to be the same session."""
    path = tmp_path / "t.yaml"
    shutil.copy(TRANSCRIPTS / "model-facilitated-session.yaml", path)
    transcript = load_transcript(path)
    assert transcript.mode == "model" and len(transcript.model_responses) >= 8
    assert eval_main([str(path)]) == 0
    capsys.readouterr()

    def recommend_combined(data):
        for reply in data["model_responses"]:
            for call in reply["tool_calls"]:
                if call["name"] == "TrainingApproachRecommendation":
                    call["args"].update(choice_value="combined", fields={"approach": "combined"})

    _edit(path, recommend_combined)  # the user still says yes: now to SFT then DPO
    assert eval_main([str(path)]) == 1
    assert "combined" in capsys.readouterr().out

    _edit(path, lambda data: data.update(model_responses=data["model_responses"][:2]))
    assert eval_main([str(path)]) == 1
