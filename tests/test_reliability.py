"""The reliability harness in CI: 100 fuzzed sessions, every regression case, and checks that the checks bite.

The long run is `make reliability` (1,000 sessions and kill-anywhere runs); see evals/reliability.py.
Each run draws new sessions from a random seed (RELIABILITY_SEED=N replays one; CI uses a fixed one): a fixed set
of 100 missed bugs that 150 random ones found. A failure is shrunk and printed with its seed and
as a regression case (JSON) to add to tests/data/reliability_regressions.json.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from evals import reliability as r

REGRESSIONS = Path(__file__).parent / "data" / "reliability_regressions.json"
CASES = json.loads(REGRESSIONS.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def warm(loop):
    # The embedded server answers every catalog query once; sessions replay the records (~0.2 s a session).
    return loop.run_until_complete(r.warm_knowledge())


@pytest.mark.slow
def test_fuzzed_sessions_keep_every_invariant(loop, warm, tmp_path):
    # CI replays one fixed draw, so a submission's result does not depend on luck; a developer's
    # run draws new sessions each time, which is how new bugs are found.
    fixed = "20261125" if os.environ.get("CI") else None
    seed = int(os.environ.get("RELIABILITY_SEED") or fixed or random.randrange(2**32))
    try:
        stats = r.fuzz(loop, warm, tmp_path, 100, seed=seed, raise_on_failure=True, max_budget=20)
    except AssertionError as exc:
        raise AssertionError(f"RELIABILITY_SEED={seed}\n{exc}") from None
    assert stats.sessions >= 100
    assert stats.answers > 1000
    assert all(stats.faults.values()), f"every kind of fault was injected: {stats.faults}"


@pytest.mark.parametrize("raw", CASES, ids=[c["name"] for c in CASES])
def test_regression_case(loop, warm, tmp_path, raw):
    case, answers = r.replay_case(raw)
    outcome = r.run_case(loop, case, answers, warm, tmp_path)
    assert not outcome.failed, outcome.report()
    assert not answers.queue, f"the session no longer asks {answers.queue[0][0]} where the case answered it"


@pytest.mark.xfail(strict=True, reason="langgraph 1.2: resume=None raises UnboundLocalError, {} is read as an empty "
                   "map of interrupt ids (the answer vanishes), an int past 64 bits cannot be checkpointed")
@pytest.mark.parametrize("value", [None, {}, 2**64], ids=["none", "empty-mapping", "int-past-64-bits"])
def test_resume_values_langgraph_itself_cannot_take(loop, warm, tmp_path, value):
    # The strategies leave these out; when LangGraph takes them, this passes and fails as XPASS: put them back.
    outcome = run(loop, warm, tmp_path, [("base_model.decision", value)])
    assert not outcome.failed, outcome.report()


# --- the checks themselves: a broken graph must be caught -----------------------------------------

SUPPORT_BOT = [("base_model.constraints", "One 24 GB GPU"), ("base_model.decision", "maybe")]


def run(loop, warm, tmp_path, answers, fixture="support-bot", **case):
    return r.run_case(loop, r.Case(fixture, 0, **case), r.ReplayedAnswers(answers), warm, tmp_path)


def test_a_clean_session_passes(loop, warm, tmp_path):
    outcome = run(loop, warm, tmp_path, SUPPORT_BOT)
    assert not outcome.failed, outcome.report()
    assert len(outcome.transcript) >= 13


def test_a_decision_recorded_without_yes_is_caught(loop, warm, tmp_path, monkeypatch):
    import agent.nodes.sections as sections

    monkeypatch.setattr(sections, "is_yes", lambda text: True)  # "maybe" now records the proposal
    outcome = run(loop, warm, tmp_path, SUPPORT_BOT)
    assert any("decision base_model changed on base_model.decision='maybe'" in v for v in outcome.violations), outcome.report()


def test_a_lost_answer_is_caught(loop, warm, tmp_path, monkeypatch):
    import agent.nodes.common as common

    monkeypatch.setattr(common, "_keepable", lambda raw: "(dropped)")
    outcome = run(loop, warm, tmp_path, SUPPORT_BOT)
    assert outcome.lost == len(outcome.transcript) > 0


def test_a_changed_phase_is_caught(loop, warm, tmp_path, monkeypatch):
    import agent.sidecar as sidecar

    finish = sidecar._finish_phase

    def greedy(raw, status):  # what an obeyed prompt injection would do
        finish(raw, status)
        raw["phases"]["phase_3_inference"] = "complete"

    monkeypatch.setattr(sidecar, "_finish_phase", greedy)
    outcome = run(loop, warm, tmp_path, SUPPORT_BOT)
    assert any("phase phase_3_inference changed" in v for v in outcome.violations), outcome.report()


def test_a_corrupt_config_template_is_caught(loop, warm, tmp_path, monkeypatch):
    import agent.artifacts.writer as writer

    monkeypatch.setattr(writer, "render_config_template", lambda decisions, project: "model: {name: [unclosed\n")
    outcome = run(loop, warm, tmp_path, SUPPORT_BOT)
    assert any("artifacts" in c for c in outcome.corrupted), outcome.report()


def test_a_write_outside_the_project_is_caught(loop, warm, tmp_path, monkeypatch):
    import agent.artifacts.writer as writer  # agent.decisions imports it when it writes

    write = writer.write_phase_artifacts

    def leaky(project_dir, *args, **kwargs):
        (Path(project_dir).parent / "stray.md").write_text("x")
        return write(project_dir, *args, **kwargs)

    monkeypatch.setattr(writer, "write_phase_artifacts", leaky)
    outcome = run(loop, warm, tmp_path, SUPPORT_BOT)
    assert any("written outside the project" in v and "stray.md" in v for v in outcome.violations), outcome.report()


def test_a_disk_fault_is_injected_surfaced_and_resumed(loop, warm, tmp_path):
    outcome = run(loop, warm, tmp_path, SUPPORT_BOT, faults=r.Faults(disk=(3, "ENOSPC")))
    assert outcome.faults["disk"] == 1
    assert not outcome.failed, outcome.report()


def test_regression_cases_round_trip_through_json():
    outcome = r.Outcome(r.Case("unscoped", 3, r.Faults(knowledge={"consult.training_approach": 2}, disk=(2, "EIO"))))
    outcome.transcript = [("architecture", "x" * 5000), ("architecture", "\ud800"), ("base_model.decision", {"r": 8})]
    raw = json.loads(json.dumps({"name": "t", **r.regression_case(outcome)}))
    case, answers = r.replay_case(raw)
    assert case == outcome.case
    assert answers.queue == outcome.transcript


def test_file_and_process_faults_are_handled_and_reported(warm, tmp_path):
    results = r.file_and_process_faults(warm, tmp_path, racing=30)
    assert [x.name for x in results if not x.ok] == [], "\n".join(f"{x.name}: {x.detail}" for x in results)
    assert {x.kind for x in results} == {"file", "process"}
    table = r.Stats(scenarios=results).table()
    assert "file faults" in table and "process faults" in table
    for name in ("alias bomb", "FIFO named sidecar.yaml", "full disk", "phase-2-training linked outside",
                 "session held by another process", "2 processes x 30 upserts"):
        assert name in table
    assert "0 of 60 lost" in table


def test_a_failing_file_fault_shows_in_the_table(warm, tmp_path, monkeypatch):
    from agent import yamlio

    monkeypatch.setattr(yamlio, "load_checked", yamlio.load)  # as before: the last of two keys silently wins
    result = r._hostile_sidecar("duplicate keys", r.HOSTILE_SIDECARS["duplicate keys"], warm, tmp_path)
    stats = r.Stats(scenarios=[result])
    assert not result.ok and not stats.ok
    assert "FAILED: duplicate keys" in stats.table()


# --- the answers cover the whole range: any option, any in-range field value, a proposing model -------


def test_field_answers_reach_both_ends_of_every_range():
    from hypothesis import find

    from agent.state import FIELDS_MODELS

    for section, model in FIELDS_MODELS.items():
        for name, prop in model.model_json_schema()["properties"].items():
            strategy = r.field_range(section, name)
            prop = next((o for o in prop.get("anyOf", []) if o.get("type") != "null"), prop)
            if "maximum" not in prop:
                continue
            assert strategy is not None, (section, name)
            top = float(prop["maximum"])
            assert float(find(strategy, lambda v, top=top: float(v) >= top)) == top, (section, name)


def test_huge_micro_batch_and_length_get_a_plan_not_a_crash(loop, warm, tmp_path):
    # More activation memory than any GPU has: the session used to die in the infrastructure sizing.
    answers = [("base_model.constraints", "One 24 GB GPU"), ("hyperparameters.decision", "batch_size: 4096, max_length: 10000000"),
               ("hyperparameters.decision", "yes"), ("infrastructure.preference", "our cloud")]
    replayed = r.ReplayedAnswers(answers)
    outcome = r.run_case(loop, r.Case("support-bot", 0), replayed, warm, tmp_path)
    assert not outcome.failed, outcome.report()
    assert not replayed.queue, "every answer was asked for"


def test_a_proposing_model_gets_its_values_recorded_without_crashing(loop, warm, tmp_path):
    seen = 0
    for seed in range(4):
        case = r.Case("support-bot", 0, faults=r.Faults(model=["propose"], model_seed=seed))
        runner = r.Runner(case, r.ReplayedAnswers([]), warm, tmp_path)
        outcome = loop.run_until_complete(runner.run())
        assert not outcome.failed, outcome.report()
        seen += sum(d["rationale"] == "Values drawn from the whole allowed range." for d in runner.decisions.values())
    assert seen, "no proposal of the model passed validation and was recorded"
