"""The whole of step 4 driven through the compiled graph on copies of every fixture."""

from __future__ import annotations

import re

import jsonschema
import pytest
import yaml

from agent.interview import PAYLOAD_SCHEMA
from agent.state import DECISION_IDS, SECTIONS
from tests.conftest import SHARED
from tests.driver import HAPPY, TODAY, Session, answer_from

SECTION_ORDER_ASKS = [
    "base_model.constraints", "base_model.decision",
    "training_approach.goals", "training_approach.decision",
    "training_data.description", "training_data.decision",
    "peft.compute", "peft.decision",
    "hyperparameters.budget", "hyperparameters.decision",
    "infrastructure.preference", "infrastructure.decision",
]


def session(loop, knowledge, project) -> Session:
    return Session(loop, knowledge, str(project))


def seed_skip_record() -> str:
    seed = (SHARED / "seed" / "step-04-training-pipeline.md").read_text(encoding="utf-8")
    block = seed.split("**1. Create Skip Record**", 1)[1]
    return re.search(r"```markdown\n(.*?)```", block, re.S).group(1)


# --- the full run: SUCCESS and FAILURE metrics of the seed ------------------------------------


@pytest.fixture(scope="module", params=["support-bot", "contract-assistant", "unscoped"])
def finished(request, loop, knowledge, tmp_path_factory):
    import shutil

    from tests.conftest import FIXTURES

    project = tmp_path_factory.mktemp("p") / request.param
    shutil.copytree(FIXTURES / request.param, project)
    for p in [project, *project.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    s = session(loop, knowledge, project)
    values = s.run(answer_from(HAPPY))
    return project, s, values


def test_six_sections_asked_in_order_then_menu(finished):
    project, s, _ = finished
    first = ["architecture"] if project.name == "unscoped" else []
    assert s.question_ids == first + SECTION_ORDER_ASKS + ["menu"]


def test_success_skip_logic_handled(finished):
    project, _, values = finished
    assert yaml.safe_load((project / "sidecar.yaml").read_text())["phases"]["phase_2_training"] == "complete"
    assert "SKIPPED" not in (project / "phase-2-training" / "spec.md").read_text()


def test_success_knowledge_queried(finished):
    _, _, values = finished
    consulted = {r["query_id"] for r in values["knowledge"] if not r.get("error") and r["items"]}
    assert {"consult.fine_tuning_methods", "consult.training_approach", "consult.fine_tuning_warnings", "consult.dataset_creation"} <= consulted


def test_success_base_model_with_rationale(finished):
    from agent.model_catalog import find_model

    _, _, values = finished
    d = values["decisions"]["base_model"]
    f = d["fields"]
    model = find_model(f["model_id"])
    # The recorded fields are the catalogue's own for the model chosen, not free-floating text.
    assert model is not None and f["name"] == model.hf_repo and f["params_b"] == model.params_b
    assert f["context_length"] == model.context_length and f["family"] == model.family and f["license"] == model.license
    # Every fixture's answer says "Apache-2.0 or MIT only" and "One 24 GB GPU": both hold, and the rationale says why.
    assert f["license"] in ("apache-2.0", "mit")
    assert model.name in d["rationale"] and "Apache-2.0 or MIT" in d["rationale"] and "24 GB" in d["rationale"]
    assert model.params_b * 0.6 + 4 <= 24  # trains with QLoRA on the stated card


def test_success_training_approach_with_data_requirements(finished):
    project, _, values = finished
    assert values["decisions"]["training_approach"]["fields"]["approach"] == "sft"
    spec = (project / "phase-2-training" / "spec.md").read_text()
    assert "## Training Approach" in spec and "40,000" in spec


def test_success_peft_documented(finished):
    project, _, values = finished
    peft = values["decisions"]["peft"]["fields"]
    assert peft["method"] in ("lora", "qlora") and peft["r"] and peft["alpha"] and peft["target_modules"]
    spec = (project / "phase-2-training" / "spec.md").read_text()
    assert f"Rank: {peft['r']}" in spec and f"Alpha: {peft['alpha']}" in spec


def test_success_hyperparameters_justified(finished):
    project, _, _ = finished
    spec = (project / "phase-2-training" / "spec.md").read_text()
    section = spec.split("## Hyperparameters", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| ") and "Parameter" not in ln]
    assert len(rows) >= 3 and all(ln.rstrip(" |").split("|")[-1].strip() for ln in rows)


def test_success_infrastructure_planned(finished):
    from agent.planning.fit import fits_gpu, gpu_hours
    from agent.planning.gpu import parse_gpu
    from agent.planning.plan import try_plan

    project, _, values = finished
    decisions = values["decisions"]
    infra = decisions["infrastructure"]["fields"]
    # "Our own GPU, tracked in MLflow", with "One 24 GB GPU (RTX 4090)" said at PEFT.
    assert infra["platform"] == "Local GPU" and infra["tracking_tool"] == "MLflow" and infra["spot_instances"] is False
    gpu = parse_gpu(infra["instance_type"], infra["gpu_count"])
    assert gpu is not None and gpu.memory_gb == 24 and gpu.count == 1 and "4090" in gpu.card
    assert infra["project"] == project.name and decisions["base_model"]["fields"]["model_id"] in infra["experiment"]
    plan = try_plan({s: d["fields"] for s, d in decisions.items()})
    assert plan is not None and plan.gpu_source == "infrastructure" and fits_gpu(plan, gpu, headroom=1.0), plan.summary
    assert "No hourly cost" in infra["estimated_cost"] and f"{plan.hours:.1f} h" in infra["estimated_cost"]
    # "About 12 GPU hours": the plan keeps to it, or the overrun was shown and acknowledged.
    acknowledged = {w for d in decisions.values() for w in d["warnings_acknowledged"]}
    assert gpu_hours(plan) <= 12 or "plan-over-time-budget" in acknowledged


def test_success_config_template_generated(finished):
    project, _, values = finished
    config = yaml.safe_load((project / "phase-2-training" / "templates" / "training-config.template.yaml").read_text())
    assert config["model"]["name"] == values["decisions"]["base_model"]["fields"]["name"]
    assert config["lora"]["r"] == values["decisions"]["peft"]["fields"]["r"]


def test_success_spec_complete(finished):
    project, _, _ = finished
    spec = (project / "phase-2-training" / "spec.md").read_text()
    for heading in ["## Objective", "## Knowledge Consulted", "## Base Model", "## Training Approach", "## Parameter-Efficient Training",
                    "## Hyperparameters", "## Infrastructure", "## Decisions Made", "## Exit Criteria"]:
        assert heading in spec
    assert "- [ ]" not in spec  # every exit criterion met


def test_sidecar_records_every_decision_and_completion(finished):
    project, _, values = finished
    raw = yaml.safe_load((project / "sidecar.yaml").read_text())
    assert raw["currentPhase"] == 3 and 4 in raw["stepsCompleted"]
    by_id = {d["id"]: d for d in raw["decisions"]}
    for section in SECTIONS:
        entry = by_id[DECISION_IDS[section]]
        assert entry["choice"] == values["decisions"][section]["choice"] and entry["knowledge_ref"] and entry["rationale"]
    if project.name != "unscoped":
        assert {"arch-001", "fp-001", "fp-002"} <= set(by_id)  # earlier phases' entries kept


def test_decision_log_and_project_spec(finished):
    project, _, _ = finished
    log = (project / "decision-log.md").read_text()
    for i in range(1, 7):
        assert f"## TP-00{i}:" in log
    assert project.name == "unscoped" or ("## ARCH-001:" in log and "## FP-002:" in log)
    assert "## Phase 2: Training Pipeline" in (project / "project-spec.md").read_text()


def test_failure_no_decision_without_user_input(finished):
    _, s, values = finished
    confirmed = [p["question_id"] for p in s.payloads if p["question_id"].endswith(".decision")]
    assert len(confirmed) == 6 and len(values["decisions"]) == 6
    accepted = [a for a in values["answers"] if a["accepted"] and a["question_id"].endswith(".decision")]
    assert [a["question_id"].split(".")[0] for a in accepted] == list(SECTIONS)


def test_failure_no_later_phase_talk(finished):
    _, s, _ = finished
    for p in s.payloads:
        assert not re.search(r"\b(deploy|serving|vLLM|quality gate)\b", p["prompt"], re.I), p["question_id"]


def test_handoff_after_continue(finished):
    _, _, values = finished
    assert values["handoff"]["step_id"] == "step-05-inference-pipeline"


def test_every_payload_matches_the_contract(finished):
    _, s, _ = finished
    for p in s.payloads:
        jsonschema.validate(p, PAYLOAD_SCHEMA)


# --- skip, unscoped ------------------------------------------------------------------------


def test_rag_only_gets_the_skip_record(loop, knowledge, project_copy):
    project = project_copy("docs-qa")
    s = session(loop, knowledge, project)
    values = s.run(answer_from({}))
    assert s.question_ids == []
    assert (project / "phase-2-training" / "spec.md").read_text() == seed_skip_record()
    raw = yaml.safe_load((project / "sidecar.yaml").read_text())
    assert raw["phases"]["phase_2_training"] == "skipped" and raw["stepsCompleted"] == [1, 2, 3, 4] and raw["currentPhase"] == 3
    assert "Phase 2: Training Pipeline - SKIPPED" in (project / "project-spec.md").read_text()
    assert values["handoff"]["step_id"] == "step-05-inference-pipeline"


def test_unscoped_asks_for_the_architecture(loop, knowledge, project_copy):
    project = project_copy("unscoped")
    s = session(loop, knowledge, project)
    first = s.start()
    assert first["question_id"] == "architecture" and {o["value"] for o in first["options"]} == {"rag-only", "fine-tuning", "hybrid"}
    assert yaml.safe_load((project / "sidecar.yaml").read_text())["architecture"] is None  # nothing guessed
    nxt = s.resume("2")
    assert nxt["question_id"] == "base_model.constraints"
    assert yaml.safe_load((project / "sidecar.yaml").read_text())["architecture"] == "fine-tuning"


# --- invalid answers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "99", "not-an-option", "x" * 100_000, "bad\x00text\x1b[31m"],
    ids=["empty", "blank", "out-of-range", "unknown", "100KB", "control"],
)
def test_invalid_answers_reask_with_error(loop, knowledge, project_copy, bad):
    project = project_copy("unscoped")
    s = session(loop, knowledge, project)
    first = s.start()
    again = s.resume(bad)
    assert again["question_id"] == first["question_id"] == "architecture"
    assert again["error"]
    assert s.resume("fine-tuning")["question_id"] == "base_model.constraints"
    rejected = [a for a in s.values()["answers"] if not a["accepted"]]
    assert rejected and rejected[0]["error"] == again["error"]


def test_invalid_decision_edit_reasks(loop, knowledge, project_copy):
    s = session(loop, knowledge, project_copy("support-bot"))
    s.run_until(answer_from(HAPPY), lambda p: p["question_id"] == "peft.decision")
    again = s.resume("alpha: many")
    assert again["question_id"] == "peft.decision" and "alpha" in again["error"]
    again = s.resume("method: qlora\nquantization: none")
    assert again["question_id"] == "peft.decision" and "4bit" in again["error"]
    updated = s.resume("r: 32, alpha: 64")
    assert updated["question_id"] == "peft.decision" and updated["error"] is None
    assert updated["default"]["r"] == 32 and updated["default"]["alpha"] == 64
    assert "peft" not in s.values().get("decisions", {})  # edits alone record nothing
    s.resume("yes")
    assert s.values()["decisions"]["peft"]["fields"]["r"] == 32


def test_picking_another_option_updates_the_proposal(loop, knowledge, project_copy):
    s = session(loop, knowledge, project_copy("support-bot"))
    payload = s.run_until(answer_from(HAPPY), lambda p: p["question_id"] == "training_approach.decision")
    assert payload["default"]["approach"] == "sft"
    updated = s.resume("3")  # combined
    assert updated["question_id"] == "training_approach.decision" and updated["default"]["approach"] == "combined"
    s.resume("yes")
    assert s.values()["decisions"]["training_approach"]["fields"]["approach"] == "combined"


# --- the menu ----------------------------------------------------------------------------


def test_menu_progress_question_and_revisit_each_section(loop, knowledge, project_copy):
    project = project_copy("support-bot")
    s = session(loop, knowledge, project)
    s.run_until(answer_from(HAPPY), lambda p: p["question_id"] == "menu")
    before = {k: v for k, v in s.values()["decisions"].items()}

    progress = s.resume("P")
    assert progress["question_id"] == "menu" and "6 of 6 decisions" in progress["prompt"]

    answered = s.resume("What LoRA rank should I use for a hard task?")
    assert answered["question_id"] == "menu" and "From the knowledge base" in answered["prompt"]

    scoped = s.resume("How should we deploy the model with vLLM?")
    assert scoped["question_id"] == "menu" and "later phase" in scoped["prompt"]

    edits = {
        "base_model": "llama-3.1-8b", "training_approach": "combined", "training_data": "sft_examples: 12000",
        "peft": "qlora", "hyperparameters": "num_epochs: 1", "infrastructure": "tracking_tool: Weights & Biases",
    }
    for section in SECTIONS:
        payload = s.resume("A")
        assert payload["question_id"] == "menu.revisit"
        payload = s.resume(section)
        assert payload["question_id"] == f"{section}.{SECTION_ORDER_ASKS[SECTIONS.index(section) * 2].split('.')[1]}"
        payload = s.resume(payload["default"] or "same as before")
        assert payload["question_id"] == f"{section}.decision"
        payload = s.resume(edits[section])
        assert payload["question_id"] == f"{section}.decision"
        payload = s.resume("yes")
        assert payload["question_id"] == "menu"
        after = s.values()["decisions"]
        assert after[section] != before[section]
        for other in SECTIONS:
            if other != section:
                assert after[other] == before[other], (section, other)
        before = dict(after)
        log = (project / "decision-log.md").read_text()
        assert log.count(f"## {DECISION_IDS[section].upper()}:") == 2 and "Superseded" in log

    raw = yaml.safe_load((project / "sidecar.yaml").read_text())
    tp = [d for d in raw["decisions"] if d["id"].startswith("tp-")]
    assert len(tp) == 6 and raw["phases"]["phase_2_training"] == "complete"
    config = yaml.safe_load((project / "phase-2-training/templates/training-config.template.yaml").read_text())
    assert config["training"]["approach"] == "combined" and config["model"]["quantization"] == "4bit"
    assert s.resume("C") is None and s.values()["handoff"]


def test_completed_project_opens_at_the_menu(loop, knowledge, project_copy):
    project = project_copy("support-bot")
    Session(loop, knowledge, str(project)).run(answer_from(HAPPY))
    again = Session(loop, knowledge, str(project))  # a new thread on the finished project
    payload = again.start()
    assert payload["question_id"] == "menu" and "already completed" in payload["prompt"]
    assert len(again.values()["decisions"]) == 6


def test_new_thread_asks_only_open_sections(loop, knowledge, project_copy):
    project = project_copy("support-bot")
    first = Session(loop, knowledge, str(project))
    first.run_until(answer_from(HAPPY), lambda p: p["question_id"] == "peft.compute")
    second = Session(loop, knowledge, str(project))  # checkpoint lost: start from the sidecar
    payload = second.start()
    assert payload["question_id"] == "peft.compute"
    assert set(second.values()["decisions"]) == {"base_model", "training_approach", "training_data"}


# --- artifacts ---------------------------------------------------------------------------

HOSTILE = 'He said "yes": it\'s #1 — naïve café, 100% {{not a placeholder}}\n- a list? | pipe'


def test_hostile_text_round_trips_into_the_config(loop, knowledge, project_copy):
    project = project_copy("support-bot")
    s = session(loop, knowledge, project)
    s.run_until(answer_from(HAPPY), lambda p: p["question_id"] == "infrastructure.decision")
    s.resume(f"project: {HOSTILE.splitlines()[0]}")
    s.resume({"experiment": HOSTILE})
    config = yaml.safe_load((project / "phase-2-training/templates/training-config.template.yaml").read_text()) if (project / "phase-2-training/templates/training-config.template.yaml").exists() else None
    assert config is not None
    assert config["tracking"]["project"] == HOSTILE.splitlines()[0]
    assert config["tracking"]["experiment"] == HOSTILE


def test_write_artifacts_twice_is_byte_identical_and_keeps_unknown_keys(loop, knowledge, project_copy):
    from agent.nodes.finish import write_artifacts

    project = project_copy("contract-assistant")
    sidecar_path = project / "sidecar.yaml"
    sidecar_path.write_text(sidecar_path.read_text() + "stories:\n  - id: S-1\n    points: 3\nquality_gate: {passed: null}\n")
    s = session(loop, knowledge, project)
    s.run_until(answer_from(HAPPY), lambda p: p["question_id"] == "menu")
    files = ["phase-2-training/spec.md", "phase-2-training/templates/training-config.template.yaml", "decision-log.md", "project-spec.md", "sidecar.yaml"]
    first = {f: (project / f).read_bytes() for f in files}
    write_artifacts(s.values())
    assert {f: (project / f).read_bytes() for f in files} == first
    raw = yaml.safe_load(sidecar_path.read_text())
    assert raw["stories"] == [{"id": "S-1", "points": 3}] and raw["quality_gate"] == {"passed": None}
    assert raw["user_name"] == "sam" and raw["created"] == "2026-02-10"


def test_decisions_are_dated_by_the_context(finished):
    _, _, values = finished
    assert {d["date"] for d in values["decisions"].values()} == {TODAY}


# --- steps per answer ------------------------------------------------------------------------------


def nodes_run(s: Session, answer) -> list[str]:
    """The nodes one answer ran, up to the next question (the asking node counted once)."""
    from langgraph.types import Command

    async def run() -> list[str]:
        ran = []
        async for update in s.app.astream(Command(resume=answer), s.config, context=s.context, stream_mode="updates"):
            ran += [name for name in update if name != "__interrupt__"]
        return ran

    s.answers.append(answer)
    return s.loop.run_until_complete(run())


def test_a_section_answer_runs_two_nodes_before_the_next_question(loop, knowledge, project_copy):
    """The node before a question posts it, so each answer is: its node, the next one, then the
    next question asks at once (not a run to post it and another to ask). An invalid answer is
    asked again at once, with its error, in the chat."""
    s = session(loop, knowledge, project_copy("support-bot"))
    answer = answer_from(HAPPY)
    payload = s.start()
    assert payload["question_id"] == "base_model.constraints"
    assert nodes_run(s, "") == ["base_model_ask"]  # invalid: the same question, once
    assert s.pending()["error"] and s.values()["messages"][-1].content.startswith("**")
    ran = {}
    while (payload := s.pending())["question_id"] != "infrastructure.decision":
        ran[payload["question_id"]] = nodes_run(s, answer(payload))
    for section, asked in zip(SECTIONS, SECTION_ORDER_ASKS[0::2]):
        assert ran[asked] == [f"{section}_ask", f"{section}_recommend"], (asked, ran[asked])
    for before, after in zip(SECTIONS, SECTIONS[1:]):
        assert ran[f"{before}.decision"] == [f"{before}_decide", after], ran[f"{before}.decision"]
    asking = s.values()["asking"]
    assert asking["node"] == "infrastructure_decide" and asking["question_id"] == "infrastructure.decision"


def test_a_plan_without_data_counts_says_what_it_lacks(loop, knowledge, project_copy):
    """'One 24 GB GPU, 10 GPU hours' everywhere, every proposal accepted: the plan fits the card,
    says its headroom as the share kept free, and asks for the example count it cannot time without."""
    s = session(loop, knowledge, project_copy("support-bot"))
    said = "One 24 GB GPU, 10 GPU hours"
    s.run(answer_from({qid: said for qid in SECTION_ORDER_ASKS[0::2]}, menu=["How long will training take?"]))
    prompts = {p["question_id"]: p["prompt"] for p in s.payloads}
    hyper = prompts["hyperparameters.decision"]
    assert "(the number of examples is not known yet)" in hyper and "for 0 examples" not in hyper
    assert re.search(r"Plan check: peak [\d.]+ GB fits 1 x 24 GB GPU with 10% headroom", hyper), hyper
    menu = [p["prompt"] for p in s.payloads if p["question_id"] == "menu"][-1]
    assert "it needs the number of training examples (TP-003" in menu and "hyperparameters (TP-005)" not in menu
