"""Seed section 12: the A/P/C menu, revisiting a decision, progress, and questions."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import Command

from agent import llm_tasks, offline
from agent.context import Context, get_context, knowledge_client
from agent.decisions import fields_by_section, write_phase
from agent.interview import InvalidAnswer, Option, Question, clean_text, match_choice, parse_choice
from agent.llm import Facilitator, usage_line
from agent.nodes.common import SectionNode, ask_and_parse, retry, say
from agent.planning.plan import plan
from agent.planning.pitfalls import check_pitfalls
from agent.sections.base import table
from agent.state import DECISION_IDS, SECTION_TITLES, SECTIONS, PipelineState

MENU_TITLE = "Phase 2 Complete - Select an Option:"


def menu_options(state: PipelineState) -> list[Option]:
    options = []
    if state.get("phase_status") != "skipped" and state.get("decisions"):
        options.append(Option(value="A", label="Analyze decisions further", description="Revisit one decision"))
    options.append(Option(value="P", label="View progress", description="Summary of the phase spec"))
    if {"base_model", "peft", "hyperparameters"} <= set(state.get("decisions") or {}):
        options.append(Option(value="F", label="Pre-flight check",
                              description="Export the TRL configs and train each stage two steps on a small model (CPU)"))
    options.append(Option(value="C", label="Continue to Phase 3", description="Inference Pipeline"))
    return options


def menu(state: PipelineState) -> Command[Literal["revisit", "progress", "verify_sidecar", "answer_question", "menu"]]:
    options = menu_options(state)
    notice = state.get("notice")
    line = " ".join(f"[{o.value}] {o.label}" for o in options)
    prompt = (f"{notice}\n\n---\n\n" if notice else "") + f"**{MENU_TITLE}** {line}\n\nOr type a question about this phase."
    question = Question(question_id="menu", section="menu", kind="menu", title=MENU_TITLE, prompt=prompt, options=options, default="C")

    def parse(raw: Any) -> tuple[str, str]:
        text = clean_text(raw)
        choice = match_choice(text, options)
        if choice:
            return "choice", choice
        if len(text) == 1 and text.upper() in "APFC":
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
        text = run_preflight_check(state)
        return Command(goto="menu", update={**update, "notice": text, **say(text)})
    goto = {"A": "revisit", "P": "progress", "C": "verify_sidecar"}[payload]
    return Command(goto=goto, update=update)


def run_preflight_check(state: PipelineState) -> str:
    """`training-pipeline preflight` in its own process (it trains models and changes folders), then the spec."""
    import subprocess
    import sys

    project = str(state.get("project_dir") or "")
    cmd = [sys.executable, "-c", "from agent.cli import main; raise SystemExit(main())", "preflight", "--project", project]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        output = (done.stdout + done.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        output = f"pre-flight could not run: {exc}"
    if state.get("phase_status") == "complete":
        write_phase(state)  # the spec's exit criteria carry the outcome
    status, line = preflight_outcome(state)
    tail = "\n".join(output.splitlines()[-12:])
    return f"**{line}**\n\n```\n{tail}\n```"


def preflight_outcome(state: PipelineState) -> tuple[str, str]:
    from agent.planning.export import fingerprint
    from agent.planning.preflight import load_report, outcome

    return outcome(load_report(state.get("project_dir") or "."), fingerprint(state.get("decisions") or {}))


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


def progress_text(state: PipelineState) -> str:
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
    if {"base_model", "peft"} <= set(fields):
        lines.append(f"Estimate: {plan(fields).summary}")
    pitfalls = check_pitfalls(fields, state.get("project"))
    if pitfalls:
        lines += ["", "**Pitfalls to keep in mind**"] + [f"- {p.message}" for p in pitfalls]
    if {"base_model", "peft", "hyperparameters"} <= set(fields):
        status, line = preflight_outcome(state)
        lines += ["", f"**{line}**" if status in ("failed", "stale") else line]
    if state.get("artifacts"):
        lines += ["", "Artifacts: " + ", ".join(f"`{a}`" for a in state["artifacts"])]
    used = usage_line(state.get("usage"))  # absent offline
    if used:
        lines += ["", used]
    return "\n".join(lines)


def progress(state: PipelineState) -> Command[Literal["menu"]]:
    text = progress_text(state)
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
        fac = await Facilitator.open(ctx, state.get("project"))
        if fac is not None:
            made = await llm_tasks.answer_question(fac, question, records[0], state.get("decisions") or {})
            if made is not None:
                text = made
            elif fac.notice:
                text = f"*{fac.notice}*\n\n{text}"
            usage = fac.state_update()
    return Command(goto="menu", update={"notice": text, "pending_question": None, "knowledge": records, **say(text), **usage})
