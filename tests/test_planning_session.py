"""Whole sessions against the planner: what the user states (GPUs, budget, data) holds for the plan.

Memory and time figures come from the estimator, which is recalibrated on its own; these tests
assert relations (fits the stated GPU, within the stated hours, flagged when not), never figures.
"""

from __future__ import annotations

import pytest
import yaml

from agent.planning.constraints import from_decisions
from agent.planning.fit import HEADROOM, fits_gpu, gpu_hours
from agent.planning.pitfalls import check_pitfalls, open_errors
from agent.planning.plan import try_plan
from agent.state import SECTIONS
from tests.driver import HAPPY, Session, answer_from

# The answers of the scenario where each section once recommended on its own (issue scenario 1).
STATED = {
    **HAPPY,
    "peft.compute": "One 24 GB GPU (RTX 4090) for training",
    "hyperparameters.budget": "About 10 GPU hours per run",
    "infrastructure.preference": "Local GPU (the RTX 4090)",
}
# contract-assistant is a hybrid project; support-bot is made one too; unscoped answers the architecture both ways.
FIXTURES = ["support-bot", "contract-assistant", "unscoped", "unscoped-hybrid", "support-bot-hybrid"]


def fixture_copy(project_copy, name: str):
    project = project_copy(name.removesuffix("-hybrid"))
    if name.endswith("-hybrid") and name != "unscoped-hybrid":
        path = project / "sidecar.yaml"
        raw = yaml.safe_load(path.read_text())
        raw["architecture"] = "hybrid"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return project


def final_plan(values):
    decisions = values["decisions"]
    fields = {s: d["fields"] for s, d in decisions.items()}
    stated = from_decisions(decisions, values.get("project"))
    return try_plan(fields), stated


@pytest.mark.parametrize("name", FIXTURES)
def test_default_session_fits_what_was_stated(loop, knowledge, project_copy, name):
    project = fixture_copy(project_copy, name)
    script = {**STATED, "architecture": "hybrid" if name == "unscoped-hybrid" else "fine-tuning"}
    s = Session(loop, knowledge, str(project))
    values = s.run(answer_from(script))
    assert values.get("handoff"), "the session reached Phase 3"
    p, stated = final_plan(values)
    assert p is not None and stated.gpu_spec.card == "RTX 4090"
    # The plan's own figures against what was stated: memory fits the 24 GB card...
    assert p.gpu_card == "RTX 4090" and p.gpu_count == 1
    assert fits_gpu(p, stated.gpu_spec, headroom=1.0), p.summary
    # ...and time fits 10 GPU hours, or the overrun is a recorded, acknowledged trade-off.
    if gpu_hours(p) > 10:
        acknowledged = {w for d in values["decisions"].values() for w in d["warnings_acknowledged"]}
        assert "plan-over-time-budget" in acknowledged, p.summary
    assert not open_errors(values["decisions"], values.get("project"))


# --- propagation: a changed decision re-checks the ones after it ------------------------------


def at_menu(loop, knowledge, project, script=STATED):
    s = Session(loop, knowledge, str(project))
    payload = s.run_until(answer_from(script), lambda p: p["question_id"] == "menu")
    return s, payload


def revisit(s, section, answer_to_ask=None):
    s.resume("A")
    asked = s.resume(section)
    return s.resume(answer_to_ask if answer_to_ask is not None else (asked["default"] or "same as before"))


def test_revisiting_the_base_model_flags_peft_target_modules_until_revisited(loop, knowledge, project_copy):
    from agent.planning.cli import read_decisions

    project = project_copy("support-bot")
    s, _ = at_menu(loop, knowledge, project)
    revisit(s, "base_model")
    after = s.resume("falcon-7b")
    assert after["default"]["model_id"] == "falcon-7b"
    menu = s.resume("yes")
    assert menu["question_id"] == "menu"
    said = [m.content for m in s.values()["messages"] if "no longer hold" in str(m.content)]
    assert said and "TP-004" in said[-1] and "q_proj" in said[-1]
    # Listed at P, and C does not go on to Phase 3.
    progress = s.resume("P")
    assert "Must be revisited" in progress["prompt"] and "TP-004" in progress["prompt"]
    assert "K" in {o["value"] for o in progress["options"]}
    blocked = s.resume("C")
    assert blocked is not None and blocked["question_id"] == "menu" and "TP-004" in blocked["prompt"]
    assert not s.values().get("handoff")
    # The recorded plan is an error-severity pitfall: what an export refuses.
    errors = [p for p in check_pitfalls(read_decisions(project)) if p.severity == "error"]
    assert any(p.id == "target-module-not-in-model" and p.section == "peft" for p in errors)
    # Revisiting TP-004 proposes Falcon's own layers, flagged no more; then C continues.
    proposal = revisit(s, "peft")
    assert "q_proj" not in proposal["default"]["target_modules"] and "query_key_value" in proposal["default"]["target_modules"]
    s.resume("yes")
    assert s.resume("C") is None and s.values()["handoff"]


def test_an_invalid_decision_can_be_kept_and_is_recorded(loop, knowledge, project_copy):
    project = project_copy("support-bot")
    s, _ = at_menu(loop, knowledge, project)
    revisit(s, "base_model")
    s.resume("falcon-7b")
    s.resume("yes")
    kept = s.resume("K")
    assert kept["question_id"] == "menu" and "Kept" in kept["prompt"]
    assert "target-module-not-in-model" in s.values()["decisions"]["peft"]["warnings_acknowledged"]
    raw = yaml.safe_load((project / "sidecar.yaml").read_text())
    assert "tp-004:target-module-not-in-model" in raw["warnings_acknowledged"]
    assert s.resume("C") is None and s.values()["handoff"]


def test_edited_values_are_what_the_rationale_spec_and_revisit_show(loop, knowledge, project_copy):
    project = project_copy("support-bot")
    s = Session(loop, knowledge, str(project))
    s.run_until(answer_from(STATED), lambda p: p["question_id"] == "hyperparameters.decision")
    updated = s.resume("learning_rate: 1e-4, num_epochs: 3")
    assert updated["default"]["learning_rate"] == 1e-4 and updated["default"]["num_epochs"] == 3
    s.run_until(answer_from(STATED), lambda p: p["question_id"] == "menu")
    d = s.values()["decisions"]["hyperparameters"]
    assert "0.0001" in d["rationale"] and "Epochs: 3" in d["rationale"]
    assert "0.0002 for" not in d["rationale"] and "Epochs: 1 " not in d["rationale"]
    spec = (project / "phase-2-training" / "spec.md").read_text()
    lr_row = next(ln for ln in spec.splitlines() if ln.startswith("| Learning Rate |"))
    assert "| 0.0001 |" in lr_row and "0.0002 for" not in lr_row
    # A revisit proposes the recorded values, not the published defaults.
    proposal = revisit(s, "hyperparameters")
    assert proposal["default"]["learning_rate"] == 1e-4 and proposal["default"]["num_epochs"] == 3


def test_picking_an_option_keeps_the_rank_edited_before(loop, knowledge, project_copy):
    s = Session(loop, knowledge, str(project_copy("support-bot")))
    s.run_until(answer_from(STATED), lambda p: p["question_id"] == "peft.decision")
    s.resume("r: 32, alpha: 64")
    picked = s.resume("lora")
    assert picked["default"]["method"] == "lora" and picked["default"]["r"] == 32 and picked["default"]["alpha"] == 64
    full = s.resume("full")
    assert full["default"]["method"] == "full" and full["default"]["r"] is None


def test_a_revisit_refits_recorded_values_that_no_longer_fit(loop, knowledge, project_copy):
    # Qwen3 14B QLoRA at micro-batch 8, fitted to an H100; then the infrastructure becomes one RTX 4090.
    project = project_copy("support-bot")
    big = {**STATED, "peft.compute": "One H100 80GB", "hyperparameters.budget": "About 1000 GPU hours per run",
           "infrastructure.preference": "Local GPU (the H100)"}
    s = Session(loop, knowledge, str(project))
    s.run_until(answer_from(big), lambda p: p["question_id"] == "base_model.decision")
    s.resume("qwen3-14b")
    s.run_until(answer_from(big), lambda p: p["question_id"] == "hyperparameters.decision")
    s.resume("batch_size: 8")
    s.run_until(answer_from(big), lambda p: p["question_id"] == "menu")
    assert s.values()["decisions"]["hyperparameters"]["fields"]["batch_size"] == 8
    revisit(s, "infrastructure", "Local GPU (the RTX 4090)")
    s.resume("yes")
    proposal = revisit(s, "hyperparameters")
    assert proposal["default"]["batch_size"] < 8  # the recorded 8 no longer fits: fitted again, not proposed again
    decided = {k: d["fields"] for k, d in s.values()["decisions"].items()}
    p = try_plan({**decided, "hyperparameters": proposal["default"]})
    assert p.gpu_card == "RTX 4090"
    stated = from_decisions(s.values()["decisions"], s.values()["project"])
    assert stated.gpu_spec.card == "RTX 4090"
    if fits_gpu(p, stated.gpu_spec):
        assert "fits 1 x RTX 4090" in proposal["prompt"]
    else:
        assert "a constraint has to give" in proposal["prompt"]


# --- saying what was understood -------------------------------------------------------------


def test_two_rtx_3090_wins_over_the_project_spec_and_says_so(loop, knowledge, project_copy):
    s = Session(loop, knowledge, str(project_copy("support-bot")))
    proposal = s.run_until(answer_from({**STATED, "peft.compute": "two RTX 3090"}), lambda p: p["question_id"] == "peft.decision")
    assert "Understood from your answer: GPUs: 2 x RTX 3090" in proposal["prompt"]
    assert "the project spec's constraints" in proposal["prompt"] and "1 x 24 GB" in proposal["prompt"]
    assert "2 x RTX 3090 (24 GB each), 90% of it planned for (from your answer on compute resources)" in proposal["prompt"]
    # Corrected in the same question: the answer is read again.
    again = s.resume("4 x H100")
    assert again["question_id"] == "peft.decision" and "GPUs: 4 x H100" in again["prompt"]
    assert s.values()["section_context"]["peft"] == "4 x H100"


def test_reported_data_problems_are_issues_not_checks_done(loop, knowledge, project_copy):
    text = "12,000 support replies; about 30% of replies are low quality and contain customer emails"
    s = Session(loop, knowledge, str(project_copy("support-bot")))
    proposal = s.run_until(answer_from({**STATED, "training_data.description": text}), lambda p: p["question_id"] == "training_data.decision")
    assert "Quality checks already covered" not in proposal["prompt"]
    assert proposal["default"]["quality_checks"] == []
    assert "Quality: \"low quality\" (about 30% of the data)" in proposal["prompt"] and "PII: \"contain customer emails\"" in proposal["prompt"]
    assert "data: 12,000 instruction examples" in proposal["prompt"]


def test_an_example_count_said_in_the_first_answer_reaches_the_data_decision_and_the_time(loop, knowledge, project_copy):
    first = "One 24 GB GPU, 10 GPU hours, 5,000 examples"
    s = Session(loop, knowledge, str(project_copy("support-bot")))
    script = {**HAPPY, "base_model.constraints": first, "training_approach.goals": "Answer support tickets in our tone",
              "training_data.description": "Reviewed support conversations"}
    proposal = s.run_until(answer_from(script), lambda p: p["question_id"] == "training_data.decision")
    assert proposal["default"]["sft_examples"] == 5000
    assert "5,000 instruction-response examples" in proposal["prompt"]
    values = s.run(answer_from(script))
    assert values["decisions"]["training_data"]["fields"]["sft_examples"] == 5000
    p, _ = final_plan(values)
    assert p is not None and gpu_hours(p) > 0  # the plan has a time to check against the 10 hours


@pytest.mark.parametrize("text,count,card", [
    ("two RTX 3090", 2, "RTX 3090"), ("2x RTX 3090", 2, "RTX 3090"), ("4 x H100", 4, "H100"),
    ("One 24 GB GPU (RTX 4090) for training", 1, "RTX 4090"), ("Local GPU (the RTX 4090)", 1, "RTX 4090"),
])
def test_gpus_are_read_from_free_text(text, count, card):
    from agent.planning.constraints import read_gpu

    g = read_gpu(text)
    assert g is not None and g.count == count and card in g.card


# --- never raises ---------------------------------------------------------------------------


def test_activations_no_gpu_holds_get_a_plan_not_a_crash():
    from agent.sections.base import SectionInputs
    from agent.sections.infrastructure import recommend

    decisions = {
        "base_model": {"model_id": "qwen3-8b", "params_b": 8.19, "context_length": 32768, "family": "qwen3"},
        "training_approach": {"approach": "combined"},
        "training_data": {"sft_examples": 40000, "dpo_pairs": 5000},
        "peft": {"method": "qlora", "quantization": "4bit", "r": 16, "alpha": 32, "target_modules": ["q_proj"]},
        "hyperparameters": {"learning_rate": 2e-4, "batch_size": 4096, "gradient_accumulation_steps": 1, "num_epochs": 2, "max_length": 32768},
    }
    for where in ("", "our cloud", "Local GPU (the RTX 4090)"):
        proposal = recommend(SectionInputs(context=where, decisions=decisions))
        assert "does not fit" in " ".join(proposal.reasoning).lower() or "not fit" in proposal.fields["estimated_cost"].lower() or proposal.notes
    found = check_pitfalls({**decisions, "infrastructure": {"instance_type": "RTX 4090", "gpu_count": 1}})
    assert any(p.id == "plan-does-not-fit-gpu" and p.severity == "error" for p in found)


@pytest.mark.parametrize("model,approach", [("qwen3-14b", "sft"), ("qwen3-8b", "combined")])
def test_larger_model_and_two_stages_fit_the_stated_card(loop, knowledge, project_copy, model, approach):
    # Qwen3 14B QLoRA once got micro-batch 2 on 24 GB and did not fit; SFT then DPO must fit in both stages.
    script = dict(STATED)
    if approach == "combined":
        script["training_approach.goals"] = "40,000 resolved tickets as instruction pairs, and 6,000 preference pairs (chosen vs rejected)"
        script["training_data.description"] = "40,000 reviewed ticket conversations and 6,000 preference pairs, PII redacted"
    s = Session(loop, knowledge, str(project_copy("support-bot")))
    s.run_until(answer_from(script), lambda p: p["question_id"] == "base_model.decision")
    s.resume(model)
    assert s.run_until(answer_from(script), lambda p: False) is None  # answered to the end
    values = s.values()
    assert values["decisions"]["base_model"]["fields"]["model_id"] == model
    assert values["decisions"]["training_approach"]["fields"]["approach"] == approach
    p, stated = final_plan(values)
    assert [st.stage for st in p.stages] == (["sft", "dpo"] if approach == "combined" else ["sft"])
    assert all(fits_gpu(p.model_copy(update={"memory": st.memory}), stated.gpu_spec, headroom=1.0) for st in p.stages), p.summary
    acknowledged = {w for d in values["decisions"].values() for w in d["warnings_acknowledged"]}
    assert gpu_hours(p) <= 10 or "plan-over-time-budget" in acknowledged
    assert not open_errors(values["decisions"], values.get("project"))
