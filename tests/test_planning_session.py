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
FIXTURES = ["support-bot", "contract-assistant", "unscoped", "unscoped-hybrid", "contract-assistant-hybrid"]


def fixture_copy(project_copy, name: str):
    base, _, arch = name.partition("-hybrid")
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
