"""The seed's SYSTEM SUCCESS/FAILURE METRICS as scorers over a replayed session.

Each scorer reads what the replay left behind (prompts shown, answers given, graph
state, project files) and passes, fails with the reasons, or does not apply (n/a)
to this session (e.g. no spec to check when the session stopped mid-way).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from agent.state import ARCHITECTURES, DECISION_IDS, SECTIONS
from agent.transcript import load_yaml
from evals.checks import Score, verdict
from evals.replay import Run

SPEC = "phase-2-training/spec.md"
CONFIG = "phase-2-training/templates/training-config.template.yaml"
LOG = "decision-log.md"

# Seed section 2: the four mandatory queries, as the seed writes them (endpoint:topic-or-query).
MANDATORY_QUERIES = (
    "search_knowledge:QLoRA LoRA fine-tuning rank alpha configuration",
    "get_decisions:SFT vs DPO",
    "get_warnings:fine-tuning",
    "search_knowledge:instruction dataset creation training data quality",
)
# Seed section 9: every `##` section of the spec template (tests/test_evals.py checks this list against the seed).
SPEC_SECTIONS = (
    "Objective", "Knowledge Consulted", "Base Model", "Training Approach", "Parameter-Efficient Training",
    "Hyperparameters", "Infrastructure", "Decisions Made", "Exit Criteria",
)
# Phase 3 and 4 topics the step must not discuss; pointing the user to a later phase is fine.
LATER_PHASE = re.compile(r"\b(deploy\w*|serving|vllm|tgi|quality gates?|inference endpoints?)\b", re.IGNORECASE)


# --- what a run shows ---------------------------------------------------------------------



# The words that confirm a proposal, written out here rather than taken from agent.interview.is_yes:
# a scorer must not share the code it judges (tests/test_confirmation_words.py pins both to this list).
CONFIRMATIONS = frozenset({"y", "yes", "ok", "okay", "accept", "confirm", "confirmed", "agree", "sure", "looks good", "lgtm"})


def is_confirmation(text: str) -> bool:
    """Whether a typed answer confirms a proposal: one of CONFIRMATIONS, any case, surrounding
    spaces and a trailing . or ! ignored."""
    return text.strip().casefold().rstrip(".!") in CONFIRMATIONS

def _read(run: Run, rel: str) -> str | None:
    return run.read(rel)


def _sidecar(run: Run) -> dict[str, Any]:
    return run.sidecar()


def _shown(run: Run) -> list[tuple[str, str]]:
    """(question_id, prompt) of every question shown, answered or not."""
    out = []
    for s in run.actual.sessions:
        out += [(t.question_id, t.prompt or "") for t in s.turns]
        if s.stopped_at:
            out.append((s.stopped_at.question_id, s.stopped_at.prompt or ""))
    return out


def _is_section_question(qid: str) -> bool:
    return qid.split(".")[0] in SECTIONS


def _complete(run: Run) -> bool:
    return run.final_values.get("phase_status") == "complete" and _read(run, SPEC) is not None


def _section(markdown: str, heading: str) -> str | None:
    """The body of `## heading` (up to the next `## `), or None."""
    m = re.search(rf"^## {re.escape(heading)}[ \t]*\n(.*?)(?=^## |\Z)", markdown, re.MULTILINE | re.DOTALL)
    return m.group(1) if m else None


def _log_entries(text: str) -> list[dict[str, Any]]:
    """TP entries of the decision log: id, decision line, rationale, superseded or not."""
    entries = []
    for block in re.split(r"^(?=## )", text, flags=re.MULTILINE):
        m = re.match(r"## (TP-\d{3}):", block)
        if not m:
            continue
        entries.append({"id": m.group(1).lower(), "decision": _log_field(block, "Decision"),
                        "rationale": _log_field(block, "Choice Rationale"),
                        "superseded": bool(re.search(r"^\*\*Status:\*\* Superseded", block, re.MULTILINE))})
    return entries


def _log_field(block: str, name: str) -> str:
    m = re.search(rf"^\*\*{name}:\*\*[ \t]*(.*)$", block, re.MULTILINE)
    return m.group(1) if m else ""


def _same_text(a: str, b: str) -> bool:
    norm = lambda s: " ".join(s.replace("<br>", " ").split())  # noqa: E731 - the log writes line breaks as <br>
    return norm(a) == norm(b)


# --- the metrics ----------------------------------------------------------------------------


def skip_logic(run: Run) -> Score:
    """RAG-only skips with the skip record; fine-tuning and hybrid do not; unknown is asked first."""
    side = _sidecar(run)
    arch, status = side.get("architecture"), (side.get("phases") or {}).get("phase_2_training")
    asked = [q for q, _ in _shown(run)]
    problems = []
    if run.start_sidecar.get("architecture") not in ARCHITECTURES and asked and asked[0] != "architecture":
        problems.append(f"the sidecar has no architecture, but the first question was `{asked[0]}` (never guess)")
    spec = _read(run, SPEC) or ""
    if arch == "rag-only":
        if "**Status:** SKIPPED" not in spec:
            problems.append("RAG-only project without the skip record in phase-2-training/spec.md")
        if status != "skipped" or 4 not in (side.get("stepsCompleted") or []):
            problems.append(f"RAG-only: sidecar says phase_2_training={status!r}, stepsCompleted={side.get('stepsCompleted')}")
        problems += [f"RAG-only project asked `{q}`" for q in asked if _is_section_question(q)]
    elif arch in ARCHITECTURES:
        if status == "skipped" or "**Status:** SKIPPED" in spec:
            problems.append(f"{arch} project marked as skipped")
    else:
        problems += [f"architecture still unknown, yet `{q}` was asked" for q in asked if _is_section_question(q)]
        if status in ("complete", "skipped"):
            problems.append(f"architecture unknown, yet phase_2_training is {status}")
    return verdict("skip_logic", problems)


def knowledge_queried(run: Run) -> Score:
    """The four mandatory queries were made (a failure counts only if the user was told and chose)."""
    if _sidecar(run).get("architecture") == "rag-only":
        return Score("knowledge_queried", "n/a", ["RAG-only: no knowledge stage"])
    asked = [q for q, _ in _shown(run)]
    if not any(_is_section_question(q) for q in asked) and not run.final_values.get("decisions"):
        return Score("knowledge_queried", "n/a", ["no decision section reached"])
    records = [r for values in run.states.values() for r in values.get("knowledge") or []]
    problems = []
    for ref in MANDATORY_QUERIES:
        made = [r for r in records if r.get("ref") == ref]
        if not made:
            problems.append(f"`{ref}` was never queried")
        elif all(r.get("error") for r in made) and "consult_knowledge.retry" not in asked:
            problems.append(f"`{ref}` failed ({made[-1]['error']}) and the user was not asked to retry or continue")
    return verdict("knowledge_queried", problems)


def _explicit(answer: Any) -> bool:
    return isinstance(answer, dict) or (isinstance(answer, str) and is_confirmation(answer))


def decided_by_user(run: Run) -> Score:
    """Each decision recorded right after the user confirmed that section's proposal."""
    confirmed: set[str] = set()
    problems = []
    for ev in run.decision_events:
        if ev.node == "load_project":
            continue  # restored from the sidecar: decided in an earlier session
        session = run.actual.sessions[ev.session]
        turn = session.turns[ev.step - 1] if ev.step > 0 else None
        for section in ev.sections:
            tp = DECISION_IDS[section].upper()
            if turn is None:
                problems.append(f"{tp} recorded by `{ev.node}` before any answer in session {ev.session + 1}")
            elif turn.question_id != f"{section}.decision" or not _explicit(turn.answer):
                problems.append(f"{tp} recorded by `{ev.node}` after `{turn.question_id}` was answered {str(turn.answer)[:60]!r}")
            else:
                confirmed.add(section)
    restored = {e.get("training_pipeline", {}).get("section") for e in run.start_sidecar.get("decisions") or []
                if isinstance(e, dict) and isinstance(e.get("training_pipeline"), dict)}
    for section in run.final_values.get("decisions") or {}:
        if section not in confirmed | restored:
            problems.append(f"{DECISION_IDS[section].upper()} is in the state, but no user confirmation recorded it")
    if not run.decision_events and not run.final_values.get("decisions"):
        return Score("decided_by_user", "n/a", ["no decisions"])
    return verdict("decided_by_user", problems)


def peft_hyperparameters_documented(run: Run) -> Score:
    """TP-004 and TP-005 with rationale in the state, the spec and the decision log."""
    decisions = run.final_values.get("decisions") or {}
    if not _complete(run) or not {"peft", "hyperparameters"} <= set(decisions):
        return Score("peft_hyperparameters_documented", "n/a", ["phase not complete"])
    spec, problems = _read(run, SPEC) or "", []
    for section in ("peft", "hyperparameters"):
        if len(decisions[section].get("rationale", "").strip()) < 20:
            problems.append(f"{DECISION_IDS[section].upper()} has no real rationale: {decisions[section].get('rationale')!r}")
    peft = decisions["peft"]["fields"]
    body = _section(spec, "Parameter-Efficient Training") or ""
    if not re.search(r"^\*\*Method:\*\* \S", body, re.MULTILINE):
        problems.append("spec: Parameter-Efficient Training names no method")
    if peft["method"] != "full":
        for line in (f"Rank: {peft['r']}", f"Alpha: {peft['alpha']}", "Target modules: "):
            if f"- {line}" not in body:
                problems.append(f"spec: Parameter-Efficient Training lacks `- {line}`")
        missing = [m for m in peft["target_modules"] if f"`{m}`" not in body]
        if missing:
            problems.append(f"spec: target modules not listed: {missing}")
    if not re.search(r"^\*\*Rationale:\*\* \S", body, re.MULTILINE):
        problems.append("spec: the PEFT choice has no rationale")
    rows = {}
    for line in (_section(spec, "Hyperparameters") or "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] not in ("Parameter", "") and not set(cells[0]) <= set("-"):
            rows[cells[0]] = cells
    for name in ("Learning Rate", "Batch Size", "Epochs"):
        if name not in rows:
            problems.append(f"spec: hyperparameter table has no {name} row")
        elif not rows[name][2] or rows[name][2] == "-":
            problems.append(f"spec: {name} has no rationale")
    for entry in _log_entries(_read(run, LOG) or ""):
        if entry["id"] in ("tp-004", "tp-005") and not entry["superseded"] and not entry["rationale"].strip():
            problems.append(f"decision log: {entry['id'].upper()} has no rationale")
    return verdict("peft_hyperparameters_documented", problems)


def _config_expectations(d: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Config template key -> the decided value it must hold (seed section 10)."""
    base, data, peft = d["base_model"]["fields"], d["training_data"]["fields"], d["peft"]["fields"]
    hp, infra = d["hyperparameters"]["fields"], d["infrastructure"]["fields"]
    approach = d["training_approach"]["fields"]["approach"]
    full = peft["method"] == "full"
    return {
        "model.name": base["name"], "model.revision": base["revision"], "model.quantization": peft["quantization"],
        "lora.r": None if full else peft["r"], "lora.alpha": None if full else peft["alpha"],
        "lora.target_modules": [] if full else peft["target_modules"],
        "training.approach": approach,
        **{f"training.{k}": hp[k] for k in ("learning_rate", "batch_size", "gradient_accumulation_steps", "num_epochs", "warmup_ratio", "weight_decay")},
        "training.dpo.beta": hp.get("dpo_beta") if approach in ("dpo", "combined") else None,
        "data.train_path": data["train_path"], "data.eval_path": data["eval_path"], "data.max_length": hp["max_length"],
        "infrastructure.platform": infra["platform"], "infrastructure.instance_type": infra["instance_type"],
        "infrastructure.spot_instances": infra["spot_instances"],
        "tracking.tool": infra["tracking_tool"], "tracking.project": infra["project"], "tracking.experiment": infra["experiment"],
    }


def _lookup(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            return KeyError
        data = data[key]
    return data


def config_template_valid(run: Run) -> Score:
    """The config template loads as YAML and holds every decided value, no placeholder left."""
    text = _read(run, CONFIG)
    decisions = run.final_values.get("decisions") or {}
    if text is None or not _complete(run) or set(decisions) != set(SECTIONS):
        return Score("config_template_valid", "n/a", ["phase not complete"])
    try:
        config = load_yaml(text)
    except yaml.YAMLError as exc:
        return Score("config_template_valid", "fail", [f"not valid YAML: {exc}"])
    problems = [f"placeholder left: {p}" for p in sorted(set(re.findall(r"\{\{[A-Z_]+\}\}", text)))]
    for key, want in _config_expectations(decisions).items():
        got = _lookup(config, key)
        same = got == want or (isinstance(got, (int, float)) and isinstance(want, (int, float)) and abs(got - want) < 1e-12)
        if got is KeyError:
            problems.append(f"`{key}` missing (decided: {want!r})")
        elif not same:
            problems.append(f"`{key}` is {got!r}, decided {want!r}")
    return verdict("config_template_valid", problems)


def spec_complete(run: Run) -> Score:
    """Every `##` section of the seed's spec template, none empty, every exit criterion met."""
    if not _complete(run):
        return Score("spec_complete", "n/a", ["phase not complete"])
    spec = _read(run, SPEC) or ""
    problems = []
    for heading in SPEC_SECTIONS:
        body = _section(spec, heading)
        if body is None:
            problems.append(f"spec: `## {heading}` missing")
        elif not body.strip():
            problems.append(f"spec: `## {heading}` is empty")
    problems += [f"spec: exit criterion not met: {ln.strip()}" for ln in spec.splitlines() if ln.startswith("- [ ]")]
    return verdict("spec_complete", problems)


def sidecar_log_consistent(run: Run) -> Score:
    """The sidecar, the decision log and the state hold the same TP decisions."""
    side = {d["id"]: str(d.get("choice", "")) for d in _sidecar(run).get("decisions") or []
            if isinstance(d, dict) and str(d.get("id", "")).startswith("tp-")}
    current = [e for e in _log_entries(_read(run, LOG) or "") if not e["superseded"]]
    if not side and not current:
        return Score("sidecar_log_consistent", "n/a", ["no TP decisions recorded"])
    problems = []
    log = {e["id"]: e["decision"] for e in current}
    if len(log) != len(current):
        problems.append("decision log: more than one current entry for the same TP id")
    if _read(run, SPEC) is not None and run.final_values.get("phase_status") == "complete":
        for tp in sorted(set(side) | set(log)):
            if tp not in log:
                problems.append(f"{tp.upper()} is in the sidecar, not in the decision log")
            elif tp not in side:
                problems.append(f"{tp.upper()} is in the decision log, not in the sidecar")
            elif not _same_text(side[tp], log[tp]):
                problems.append(f"{tp.upper()}: sidecar says {side[tp]!r}, decision log says {log[tp]!r}")
    state = {d["id"]: d["choice"] for d in (run.final_values.get("decisions") or {}).values()}
    for tp in sorted(set(side) | set(state)):
        if side.get(tp) != state.get(tp):
            problems.append(f"{tp.upper()}: sidecar says {side.get(tp)!r}, the session decided {state.get(tp)!r}")
    superseded = {d["id"] for d in run.final_values.get("superseded") or []}
    logged_old = {e["id"] for e in _log_entries(_read(run, LOG) or "") if e["superseded"]}
    if superseded - logged_old and _read(run, SPEC) is not None:
        problems.append(f"superseded decisions not kept in the log: {sorted(superseded - logged_old)}")
    return verdict("sidecar_log_consistent", problems)


def no_later_phase_talk(run: Run) -> Score:
    """No prompt discusses deployment, serving or evaluation gates (Phases 3 and 4)."""
    typed = [a for s in run.actual.sessions for t in s.turns
             for a in ([t.answer] if isinstance(t.answer, str) else [str(v) for v in t.answer.values()])]
    problems = []
    for qid, prompt in _shown(run):
        for said in sorted(typed, key=len, reverse=True):  # the user's own words are not the agent talking
            if len(said) > 2:
                prompt = prompt.replace(said, "")
        for line in prompt.splitlines():
            m = LATER_PHASE.search(line)
            if m and "later phase" not in line.lower():
                problems.append(f"`{qid}` talks about {m.group(0)!r}: {line.strip()[:120]}")
    return verdict("no_later_phase_talk", problems)


SCORERS = (
    skip_logic, knowledge_queried, decided_by_user, peft_hyperparameters_documented,
    config_template_valid, spec_complete, sidecar_log_consistent, no_later_phase_talk,
)
