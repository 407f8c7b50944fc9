"""Seed section 12: the A/P/C menu, revisiting a decision, progress, and questions."""

from __future__ import annotations

import re
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Command

from agent import llm_tasks, offline
from agent.context import Context, get_context, knowledge_client, project_folder
from agent.decisions import fields_by_section, write_phase
from agent.interview import InvalidAnswer, Option, Question, clean_text, match_choice, parse_choice
from agent.knowledge.stages import knowledge_update
from agent.llm import Facilitator, usage_line
from agent.nodes.common import SectionNode, ask_and_parse, retry, say
from agent import sidecar
from agent.decisions import sidecar_entry
from agent.planning.constraints import from_decisions
from agent.planning.pitfalls import Pitfall, check_pitfalls, open_errors
from agent.planning.plan import plan, try_plan
from agent.sections.base import table
from agent.state import DECISION_IDS, SECTION_TITLES, SECTIONS, PipelineState

MENU_TITLE = "Phase 2 Complete - Select an Option:"


def unresolved(state: PipelineState) -> list[Pitfall]:
    """Errors in the plan that no decision has acknowledged: they hold Phase 3 back."""
    if state.get("phase_status") == "skipped":
        return []
    return open_errors(state.get("decisions") or {}, state.get("project"))


def menu_options(state: PipelineState) -> list[Option]:
    options = []
    if state.get("phase_status") != "skipped" and state.get("decisions"):
        options.append(Option(value="A", label="Analyze decisions further", description="Revisit one decision"))
    options.append(Option(value="P", label="View progress", description="Summary of the phase spec"))
    if {"base_model", "peft", "hyperparameters"} <= set(state.get("decisions") or {}):
        options.append(Option(value="F", label="Pre-flight check",
                              description="Export the TRL configs and train each stage two steps on a small model (CPU)"))
    options.append(Option(value="C", label="Continue to Phase 3", description="Inference Pipeline"))
    errors = unresolved(state)
    if errors:
        options.append(Option(value="K", label="Keep the plan as it is",
                              description=f"Acknowledge the {len(errors)} error{'s' if len(errors) > 1 else ''} listed, recorded in the decisions"))
    return options


def errors_text(errors: list[Pitfall]) -> str:
    lines = [f"- **{DECISION_IDS[e.section].upper()} {SECTION_TITLES[e.section]}**: {e.message} Fix: {e.fix}" for e in errors]
    return "**Must be revisited (A) or kept (K) before Phase 3**\n" + "\n".join(lines)


def keep_plan(state: PipelineState, errors: list[Pitfall], update: dict[str, Any], root: str) -> Command:
    """Record the errors as acknowledged trade-offs on the decisions they belong to (state and sidecar)."""
    decisions = state.get("decisions") or {}
    changed: dict[str, dict[str, Any]] = {}
    for e in errors:
        if e.section not in decisions:
            continue
        d = changed.get(e.section) or dict(decisions[e.section])
        d["warnings_acknowledged"] = [*d.get("warnings_acknowledged", []), e.id]
        changed[e.section] = d
    for section, d in changed.items():
        sidecar.upsert_decision(root, sidecar_entry(d), acknowledged=[f"{d['id']}:{w}" for w in d["warnings_acknowledged"]])
    text = "Kept as acknowledged trade-offs:\n" + "\n".join(f"- {DECISION_IDS[e.section].upper()}: {e.message}" for e in errors)
    return Command(goto="menu", update={**update, "decisions": changed, "notice": text})


def menu(state: PipelineState, runtime: Runtime[Context]) -> Command[Literal["revisit", "progress", "verify_sidecar", "answer_question", "menu"]]:
    options = menu_options(state)
    notice = state.get("notice")
    line = " ".join(f"[{o.value}] {o.label}" for o in options)
    prompt = (f"{notice}\n\n---\n\n" if notice else "") + f"**{MENU_TITLE}** {line}\n\nOr type a question about this phase."
    # No default: the seed proceeds only when the user selects C, so Enter alone never leaves the phase.
    question = Question(question_id="menu", section="menu", kind="menu", title=MENU_TITLE, prompt=prompt, options=options, default=None)

    def parse(raw: Any) -> tuple[str, str]:
        text = clean_text(raw, allow_empty=True)
        if not text:
            raise InvalidAnswer(f"Choose {', '.join(o.value for o in options)} (C continues to Phase 3), or type a question.")
        choice = match_choice(text, options)
        if choice:
            return "choice", choice
        if len(text) == 1 and text.upper() in "APFCK":
            raise InvalidAnswer(f"{text.upper()} is not available here: choose {', '.join(o.value for o in options)}.")
        return "question", text

    value, update = ask_and_parse(state, question, parse)
    if value is None:
        return retry("menu", update)
    kind, payload = value
    update["notice"] = None
    if kind == "question":
        return Command(goto="answer_question", update={**update, "pending_question": payload})
    if payload == "F":
        text = run_preflight_check(state, project_folder(state, get_context(runtime)))
        return Command(goto="menu", update={**update, "notice": text, **say(text)})
    if payload in ("C", "K"):
        errors = unresolved(state)
        if payload == "K":
            return keep_plan(state, errors, update, project_folder(state, get_context(runtime)))
        if errors:  # an invalid plan does not go on to Phase 3 unseen
            return Command(goto="menu", update={**update, "notice": errors_text(errors)})
    goto = {"A": "revisit", "P": "progress", "C": "verify_sidecar"}[payload]
    return Command(goto=goto, update=update)


def run_preflight_check(state: PipelineState, root: str) -> str:
    """`training-pipeline preflight` in its own process (it trains models and changes folders), then the spec."""
    import subprocess
    import sys

    cmd = [sys.executable, "-c", "from agent.cli import main; raise SystemExit(main())", "preflight", "--project", root]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        output = (done.stdout + done.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        output = f"pre-flight could not run: {exc}"
    if state.get("phase_status") == "complete":
        write_phase(state, root)  # the spec's exit criteria carry the outcome
    status, line = preflight_outcome(state, root)
    tail = "\n".join(output.splitlines()[-12:])
    return f"**{line}**\n\n```\n{tail}\n```"


def preflight_outcome(state: PipelineState, root: str) -> tuple[str, str]:
    from agent.planning.export import fingerprint
    from agent.planning.preflight import load_report, outcome

    return outcome(load_report(root), fingerprint(state.get("decisions") or {}))


def revisit(state: PipelineState) -> Command[Literal[SectionNode, "revisit"]]:
    decisions = state.get("decisions") or {}
    options = [
        Option(value=s, label=f"{DECISION_IDS[s].upper()} {SECTION_TITLES[s]}", description=decisions[s]["choice"])
        for s in SECTIONS
        if s in decisions
    ]
    question = Question(
        question_id="menu.revisit",
        section="menu",
        kind="choice",
        title="Revisit a decision",
        prompt="Which decision do you want to analyze again? Only that decision changes; every artifact is regenerated "
        "and the decision log keeps the old record, marked superseded.",
        options=options,
    )
    value, update = ask_and_parse(state, question, lambda raw: parse_choice(raw, options))
    if value is None:
        return retry("revisit", update)
    return Command(goto=value, update={**update, "revisiting": value})


def progress_text(state: PipelineState, root: str) -> str:
    decisions = state.get("decisions") or {}
    status = state.get("phase_status", "pending")
    lines = [f"**Progress: Phase 2 is {status.replace('_', ' ')}** ({len(decisions)} of 6 decisions recorded)", ""]
    rows = [[DECISION_IDS[s].upper(), SECTION_TITLES[s], decisions[s]["choice"] if s in decisions else "*open*"] for s in SECTIONS]
    lines.append(table(["ID", "Decision", "Choice"], rows))
    knowledge = state.get("knowledge") or []
    ok = {r["query_id"] for r in knowledge if not r.get("error")}
    failed = {r["query_id"] for r in knowledge if r.get("error")} - ok
    lines += ["", f"Knowledge queries: {len(ok)} answered" + (f", {len(failed)} could not be consulted" if failed else "") + "."]
    fields = fields_by_section(state)
    estimate = try_plan(fields, gpu=from_decisions(state.get("decisions"), state.get("project")).gpu_spec) if {"base_model", "peft"} <= set(fields) else None
    if estimate is not None:
        lines.append(f"Estimate: {estimate.summary}")
    errors = unresolved(state)
    if errors:
        lines += ["", errors_text(errors)]
    open_ids = {(e.section, e.id) for e in errors}
    pitfalls = [p for p in check_pitfalls(state.get("decisions") or {}, state.get("project")) if (p.section, p.id) not in open_ids]
    if pitfalls:
        lines += ["", "**Pitfalls to keep in mind**"] + [f"- {p.message}" for p in pitfalls]
    if {"base_model", "peft", "hyperparameters"} <= set(fields):
        status, line = preflight_outcome(state, root)
        lines += ["", f"**{line}**" if status in ("failed", "stale") else line]
    if state.get("artifacts"):
        lines += ["", "Artifacts: " + ", ".join(f"`{a}`" for a in state["artifacts"])]
    used = usage_line(state.get("usage"))  # absent offline
    if used:
        lines += ["", used]
    return "\n".join(lines)


def progress(state: PipelineState, runtime: Runtime[Context]) -> Command[Literal["menu"]]:
    text = progress_text(state, project_folder(state, get_context(runtime)))
    return Command(goto="menu", update={"notice": text, **say(text)})


async def answer_question(state: PipelineState, runtime: Runtime[Context]) -> Command[Literal["menu"]]:
    question = state.get("pending_question") or ""
    usage: dict[str, Any] = {}
    if offline.is_out_of_scope(question):  # Phase 3/4 topics: kept out of the step, no model asked
        text = offline.out_of_scope_answer()
        records: list[dict[str, Any]] = []
    else:
        ctx = get_context(runtime)
        record = await knowledge_client(ctx).ask(question, stage="menu")
        records = [record.model_dump(mode="json")]
        text = offline.answer(question, records[0])
        from_plan = plan_answer(question, fields_by_section(state))
        fac = await Facilitator.open(ctx, state.get("project"))
        if fac is not None:
            made = await llm_tasks.answer_question(fac, question, records[0], state.get("decisions") or {})
            if made is not None:
                text = made
            elif fac.notice:
                text = f"*{fac.notice}*\n\n{text}"
            usage = fac.state_update()
        if from_plan:  # the plan's own figures first, whatever else was found
            text = f"{from_plan}\n\n{text}"
    return Command(goto="menu", update={"notice": text, "pending_question": None, **knowledge_update(records), **say(text), **usage})


# Questions about the plan's own figures, by topic: answered from the plan before anything else.
PLAN_TOPICS = {
    "time": r"how long|hours?|time|duration|days?|minutes|fast|slow|finish",
    "memory": r"memory|vram|gb|fits?|oom|out of memory",
    "cost": r"cost|costs|price|expensive|cheap|budget|money|pay|usd|dollars?",
    "gpu": r"gpus?|hardware|cards?|a100|h100|l4|a10g?|4090",
    "model": r"which model|what model|base model",
}


def _usd(x: float) -> str:
    return f"${x:,.0f}" if x >= 10 else f"${x:,.2f}"


def plan_topics(question: str) -> list[str]:
    """The plan topics a question asks about, in PLAN_TOPICS order."""
    q = question.casefold()
    return [topic for topic, words in PLAN_TOPICS.items() if re.search(rf"(?<![a-z0-9])(?:{words})(?![a-z0-9])", q)]


def plan_answer(question: str, fields: dict[str, dict]) -> str | None:
    """The plan's figures that answer `question`, or None when it is not about them or there is
    no plan yet (the base model and PEFT decisions make one)."""
    topics = plan_topics(question)
    if not topics or not {"base_model", "peft"} <= set(fields):
        return None
    p = plan(fields)
    where = f"{p.gpu_count}x {p.gpu_card}"
    lines: list[str] = []
    for topic in topics:
        if topic == "time":
            if p.hours is not None:
                lines.append(f"Training takes roughly **{p.hours:.1f} hours** of wall-clock time on {where} "
                             f"(range {p.hours_low:.1f}-{p.hours_high:.1f}).")
            else:
                data = fields.get("training_data") or {}
                missing = [need for need, known in (
                    ("the number of training examples (TP-003: `sft_examples` or `dpo_pairs`)", bool(data.get("sft_examples") or data.get("dpo_pairs"))),
                    ("the hyperparameters (TP-005)", "hyperparameters" in fields),
                ) if not known]
                lines.append("The plan has no time estimate yet: it needs " + " and ".join(missing or ["the training data (TP-003)"]) + ".")
        elif topic == "memory":
            fit = "fits" if p.fits else "does NOT fit"
            lines.append(f"It needs about **{p.memory.total_gb:.0f} GB** of GPU memory at its peak, which {fit} {where}.")
        elif topic == "cost":
            if p.cost is not None:
                lines.append(f"Estimated cost on {p.cost.platform_name}: **{_usd(p.cost.total_usd)}** "
                             f"at {_usd(p.cost.usd_per_gpu_hour)}/GPU-hour (prices as of {p.cost.as_of}).")
            elif p.cost_options:
                c = p.cost_options[0]
                lines.append(f"Cheapest listed option: {c.platform_name} {c.card} at about **{_usd(c.total_usd)}** (prices as of {c.as_of}).")
            else:
                lines.append("The plan has no cost estimate yet: it needs a time estimate and a platform (TP-006).")
        elif topic == "gpu":
            lines.append(f"The plan runs on **{where}**" + (" (your infrastructure choice)." if p.gpu_source == "infrastructure" else " (recommended)."))
        elif topic == "model" and not lines:
            lines.append(f"The plan trains **{p.model}** ({p.params_b:g}B) with {p.method.upper() if p.method != 'full' else 'full fine-tuning'}.")
    if not lines:
        return None
    return "**From your plan:** " + " ".join(dict.fromkeys(lines))
