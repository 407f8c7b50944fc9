"""The model-backed facilitator: prompts, factory, structured output, guard rails, usage.

The model is a tool-calling fake (evals/llm_fakes.py); everything else is real: the
nodes, the section rules, the graph, the embedded knowledge server.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from agent import llm, offline
from agent.context import Context
from agent.knowledge.models import QueryRecord
from agent.llm import resolve_chat_model as chat_model
from agent.llm import context_from_args, mode_description, prompt_chars, summarize_usage, usage_line
from agent.nodes.knowledge_stage import synthesize
from agent.nodes.menu import answer_question, progress_text
from agent.nodes.sections import decide_prompt, recommend_node, section_inputs
from agent.prompts import PromptError, all_prompt_names, load_prompt, parse_prompt, render
from agent.sections import SECTION_SPECS
from agent.sections.base import Proposal
from agent.state import SECTIONS, PipelineState, _sum_counts
from tests.conftest import SHARED
from tests.driver import HAPPY, TODAY, Session, answer_from
from evals.llm_fakes import Delay, ToolFakeChatModel, canned, first_prompt, http_error, malformed_call, recommendation_args, text_reply, tool_call

KNOWN = "kb-5f1c2a9e-lora-rank"
OTHER = "kb-77aa01b3-sft-dpo"


def item(id_: str, title: str) -> dict[str, Any]:
    return {"id": id_, "type": "chunk", "title": title, "body": f"{title}: what the source says about it.", "source_title": "A Handbook",
            "source_authors": [], "score": 1.0, "topics": []}


def record(section: str, query_id: str, items: list[dict[str, Any]], error: str | None = None) -> dict[str, Any]:
    return {"query_id": query_id, "section": section, "endpoint": "search_knowledge", "arguments": {}, "ref": f"search_knowledge:{query_id}",
            "items": items, "result_ids": [i["id"] for i in items], "error": error, "fallback": None, "latency_ms": 0}


def section_state(section: str = "training_approach", answer: str = HAPPY["training_approach.goals"], **extra: Any) -> PipelineState:
    return {
        "project_dir": "unused",
        "project": {"name": "support-bot", "architecture": "fine-tuning", "use_case": "support replies", "requirements": [], "constraints": []},
        "knowledge": [record(section, f"{section}.q", [item(KNOWN, "LoRA rank"), item(OTHER, "SFT or DPO")])],
        "section_context": {section: answer},
        "decisions": {},
        "recommendations": {},
        **extra,
    }


def ctx_with(model: Any, **kw: Any) -> Context:
    return Context(chat_model=model, today=TODAY, **{"llm_backoff": 0, **kw})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def recommend(state: PipelineState, model: Any, section: str = "training_approach", **kw: Any) -> dict[str, Any]:
    cmd = await recommend_node(state, SimpleNamespace(context=ctx_with(model, **kw)), SECTION_SPECS[section])
    assert cmd.goto == f"{section}_decide"  # a recommendation never records: it goes to the question
    return cmd.update


def deterministic(state: PipelineState, section: str = "training_approach") -> Proposal:
    spec = SECTION_SPECS[section]
    return spec.recommend(section_inputs(state, spec, {}))


def approach(args: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    base = {"reasoning": ["You describe 40,000 demonstrations.", "No preference data yet."], "choice_value": "sft",
            "fields": {"approach": "sft"}, "rationale": "SFT fits the data you have.", "cited_ids": [KNOWN]}
    return {**base, **(args or {}), **over}


# --- prompts --------------------------------------------------------------------------------


def test_every_prompt_loads_with_its_declared_variables():
    names = all_prompt_names()
    expected = {"persona", "synthesis", "recommend", "read_answer", "menu_answer", "repair", *(f"recommend/{s}" for s in SECTIONS)}
    assert expected <= set(names)
    for name in names:
        p = load_prompt(name)
        assert p is load_prompt(name)  # read once, cached
        with pytest.raises(PromptError):
            p.render(**{v: "x" for v in p.variables}, surplus="x")


def test_render_names_the_missing_variable():
    with pytest.raises(PromptError, match=r"prompt 'persona': missing variable\(s\): architecture"):
        render("persona", project_name="x")


def test_prompt_files_must_declare_what_they_use():
    with pytest.raises(PromptError, match="undeclared"):
        parse_prompt("t", "---\nvariables: a\n---\n{{a}} and {{b}}\n")
    with pytest.raises(PromptError, match="unused"):
        parse_prompt("t", "---\nvariables: a, b\n---\n{{a}}\n")
    with pytest.raises(PromptError, match="front matter"):
        parse_prompt("t", "Just text with {{a}}\n")


def test_user_text_is_never_expanded_as_a_placeholder():
    assert parse_prompt("t", "---\nvariables: a, b\n---\n{{a}}/{{b}}\n").render(a="{{b}}", b="B") == "{{b}}/B\n"


def test_persona_is_small_next_to_the_seed():
    seed = (SHARED / "seed" / "step-04-training-pipeline.md").read_text(encoding="utf-8")
    persona = render("persona", project_name="p", architecture="fine-tuning")
    assert "Phase 3" in persona and "Phase 4" in persona and "confirm" in persona
    assert len(persona) * 5 < len(seed)


# --- factory, modes, retries classification -------------------------------------------------


@pytest.fixture
def no_env(monkeypatch):
    for var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TRAINING_PIPELINE_MODEL"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_offline_when_flagged_or_without_a_key(no_env):
    assert chat_model(Context()) is None  # no key: offline
    assert chat_model(Context(offline=False)) is None  # no key
    assert mode_description(Context(offline=True)) == llm.OFFLINE_MODE
    assert "OPENAI_API_KEY is not set" in mode_description(Context())
    assert "OPENAI_API_KEY is not set" in mode_description(context_from_args(False, None, None))
    no_env.setenv("OPENAI_API_KEY", "sk-test")
    assert chat_model(context_from_args(True, "m", None)) is None  # --offline wins over a key
    assert chat_model(Context(offline=True)) is None


@pytest.mark.parametrize("context", [Context(), {}, {"today": "2026-04-01"}, {"offline": False}, None], ids=repr)
def test_a_configured_key_means_model_mode_everywhere(no_env, context):
    """The terminal and the API server (a run's context as JSON, or none) follow one rule."""
    from agent.context import get_context

    no_env.setenv("OPENAI_API_KEY", "sk-test")
    ctx = get_context(SimpleNamespace(context=context))
    assert llm.llm_enabled(ctx), "a key means model mode unless offline is asked for"
    assert not llm.llm_enabled(get_context(SimpleNamespace(context={"offline": True})))
    assert llm.llm_enabled(context_from_args(False, None, None)) and not llm.llm_enabled(context_from_args(True, None, None))


def test_model_from_environment_and_arguments(no_env):
    no_env.setenv("OPENAI_API_KEY", "sk-test")
    no_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    no_env.setenv("TRAINING_PIPELINE_MODEL", "env-model")
    ctx = context_from_args(False, None, None, knowledge_client="kc")
    model = chat_model(ctx)
    assert model.model_name == "env-model" and model.openai_api_base == "http://127.0.0.1:9/v1"
    assert model.max_retries == 0  # our loop retries, so it can say when it gives up
    assert chat_model(ctx) is model and ctx.knowledge_client == "kc"
    explicit = chat_model(context_from_args(False, "arg-model", "http://127.0.0.1:8/v1"))
    assert explicit.model_name == "arg-model" and explicit.openai_api_base == "http://127.0.0.1:8/v1"
    assert mode_description(ctx) == "Mode: language model env-model at http://127.0.0.1:9/v1 (the deterministic rules take over if it fails)."


def test_an_injected_model_is_used_as_is(no_env):
    fake = ToolFakeChatModel()
    assert chat_model(Context(chat_model=fake)) is fake
    assert "ToolFakeChatModel" in mode_description(Context(chat_model=fake))


@pytest.mark.parametrize(("status", "transient"), [(429, True), (500, True), (503, True), (400, False), (401, False)])
def test_which_errors_are_retried(status, transient):
    assert llm.is_transient(http_error(status)) is transient
    assert llm.is_transient(TimeoutError()) and not llm.is_transient(ValueError("x"))


# --- recommendations: every structured-output path ---------------------------------------------


def test_valid_recommendation_is_shown_with_reasoning_first():
    state = section_state()
    fake = ToolFakeChatModel(script=[tool_call("TrainingApproachRecommendation", approach())])
    update = run(recommend(state, fake))
    rec = update["recommendations"]["training_approach"]
    proposal = Proposal.model_validate(rec["proposal"])
    assert proposal.reasoning[:2] == ["You describe 40,000 demonstrations.", "No preference data yet."]
    assert KNOWN[:8] in proposal.reasoning[-1] and proposal.knowledge_items == [KNOWN]
    assert proposal.rationale == "SFT fits the data you have." and proposal.fields == {"approach": "sft"}
    assert rec["overrides"]["source"] == "model" and "notice" not in rec
    # What the model saw: the persona as system prompt, then the baseline and the user's answer.
    system, human = fake.requests[0]
    assert system.type == "system" and "facilitate" in system.content
    assert HAPPY["training_approach.goals"] in human.content and '"choice_value":"sft"' in human.content
    assert update["usage"]["calls"] == 1 and update["usage"]["total_tokens"] == 150
    assert update["llm_calls"][0]["purpose"] == "recommend:training_approach" and update["llm_calls"][0]["prompt_chars"] > 0
    prompt = decide_prompt(SECTION_SPECS["training_approach"], proposal, rec["pitfalls"], updated=False, notice=rec.get("notice"))
    assert prompt.index("**Reasoning**") < prompt.index("**Proposal:")


def test_another_option_goes_through_the_section_rules():
    fake = ToolFakeChatModel(script=[tool_call("TrainingApproachRecommendation", approach(choice_value="combined", fields={"approach": "combined"}))])
    rec = run(recommend(section_state(), fake))["recommendations"]["training_approach"]
    # Label and consequences come from the rules for that option, so they match the fields.
    assert rec["proposal"]["choice"] == "SFT then DPO" and any("Two training stages" in c for c in rec["proposal"]["consequences"])


def test_invalid_then_repaired_sends_the_error_back():
    fake = ToolFakeChatModel(script=[
        tool_call("TrainingApproachRecommendation", approach(choice_value="rlhf")),
        tool_call("TrainingApproachRecommendation", approach()),
    ])
    update = run(recommend(section_state(), fake))
    repair = fake.requests[1][-1].content
    assert "'rlhf' is not one of the options" in repair and "Call the tool again" in repair
    assert '"choice_value": "rlhf"' in repair  # its own answer, to correct rather than redo
    assert fake.requests[1][:2] == fake.requests[0]  # same task, with the repair request after it
    assert [c["outcome"] for c in update["llm_calls"]] == ["invalid", "ok"]
    assert update["recommendations"]["training_approach"]["proposal"]["rationale"] == "SFT fits the data you have."


def test_schema_violations_are_repaired_too():
    state = section_state("peft", "One 24 GB GPU", decisions={"base_model": {"fields": {"model_id": "qwen2.5-7b", "params_b": 7.6, "family": "qwen2"}}})
    bad = {"method": "qlora", "quantization": "none", "r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj"]}
    good = {**bad, "quantization": "4bit"}
    args = {"reasoning": ["Memory is tight."], "choice_value": "qlora", "rationale": "QLoRA fits.", "cited_ids": []}
    fake = ToolFakeChatModel(script=[tool_call("PeftRecommendation", {**args, "fields": bad}), tool_call("PeftRecommendation", {**args, "fields": good})])
    update = run(recommend(state, fake, "peft"))
    assert "4bit" in fake.requests[1][-1].content
    assert update["recommendations"]["peft"]["proposal"]["fields"]["quantization"] == "4bit"


def base_args(proposal: Proposal, **over: Any) -> dict[str, Any]:
    return {"reasoning": ["Fits the constraints."], "choice_value": proposal.choice_value, "fields": proposal.fields,
            "rationale": "It fits.", "cited_ids": [], **over}


def test_catalogue_facts_cannot_be_rewritten():
    state = section_state("base_model", HAPPY["base_model.constraints"])
    base = deterministic(state, "base_model")
    forged = {**base.fields, "license": "mit" if base.fields["license"] != "mit" else "apache-2.0", "context_length": 1_000_000}
    fake = ToolFakeChatModel(script=[tool_call("BaseModelRecommendation", base_args(base, fields=forged)), tool_call("BaseModelRecommendation", base_args(base))])
    update = run(recommend(state, fake, "base_model"))
    assert "license" in fake.requests[1][-1].content and "in the catalogue" in fake.requests[1][-1].content
    assert update["recommendations"]["base_model"]["proposal"]["fields"] == base.fields


def test_base_model_may_be_any_catalogue_model():
    from agent.model_catalog import load_catalog

    state = section_state("base_model", HAPPY["base_model.constraints"])
    base = deterministic(state, "base_model")
    other = next(m for m in load_catalog() if m.key not in {o.value for o in base.options})
    spec = SECTION_SPECS["base_model"]
    theirs = spec.recommend(section_inputs(state, spec, {"choice": other.key}))
    fake = ToolFakeChatModel(script=[tool_call("BaseModelRecommendation", base_args(theirs))])
    proposal = run(recommend(state, fake, "base_model"))["recommendations"]["base_model"]["proposal"]
    assert proposal["choice_value"] == other.key and proposal["fields"]["name"] == other.hf_repo
    assert proposal["options"][0]["value"] == other.key  # shown first, the others still offered


def test_choice_and_fields_must_agree():
    fake = ToolFakeChatModel(script=[
        tool_call("TrainingApproachRecommendation", approach(choice_value="dpo")),  # fields still say sft
        tool_call("TrainingApproachRecommendation", approach()),
    ])
    run(recommend(section_state(), fake))
    assert "fields.approach is 'sft' but choice_value is 'dpo'" in fake.requests[1][-1].content


def test_invalid_twice_falls_back_to_the_rules_with_a_notice():
    state = section_state()
    fake = ToolFakeChatModel(script=[malformed_call("TrainingApproachRecommendation"), text_reply("I think SFT.")])
    update = run(recommend(state, fake))
    rec = update["recommendations"]["training_approach"]
    assert rec["proposal"] == deterministic(state).model_dump(mode="json") and rec["overrides"] == {}
    assert "did not pass validation twice" in rec["notice"]
    assert "could not be read" in fake.requests[1][-1].content  # the malformed call's error went back
    proposal = Proposal.model_validate(rec["proposal"])
    assert rec["notice"] in decide_prompt(SECTION_SPECS["training_approach"], proposal, [], updated=False, notice=rec["notice"])
    assert [c["outcome"] for c in update["llm_calls"]] == ["invalid", "invalid"]


def test_invented_citations_are_dropped_and_prefixes_resolved():
    fake = ToolFakeChatModel(script=[tool_call("TrainingApproachRecommendation", approach(cited_ids=["kb-00000000-invented", OTHER[:8], "zz"]))])
    proposal = run(recommend(section_state(), fake))["recommendations"]["training_approach"]["proposal"]
    assert proposal["knowledge_items"] == [OTHER]
    assert "invented" not in json.dumps(proposal)


def test_no_valid_citation_keeps_the_sections_own_references():
    state = section_state()
    fake = ToolFakeChatModel(script=[tool_call("TrainingApproachRecommendation", approach(cited_ids=["made-up"]))])
    proposal = run(recommend(state, fake))["recommendations"]["training_approach"]["proposal"]
    assert proposal["knowledge_items"] == deterministic(state).knowledge_items == [KNOWN, OTHER]


def test_rate_limit_and_server_errors_are_retried_then_succeed():
    fake = ToolFakeChatModel(script=[http_error(429), http_error(502), tool_call("TrainingApproachRecommendation", approach())])
    update = run(recommend(section_state(), fake, llm_retries=2))
    assert [c["outcome"] for c in update["llm_calls"]] == ["error: rate limited, HTTP 429", "error: server error, HTTP 502", "ok"]
    assert update["usage"]["failed_calls"] == 2 and update["usage"]["calls"] == 3
    assert update["recommendations"]["training_approach"]["overrides"]["source"] == "model"


def test_retries_exhausted_fall_back_for_this_turn():
    state = section_state()
    fake = ToolFakeChatModel(script=[http_error(429)] * 3)
    rec = run(recommend(state, fake, llm_retries=2))["recommendations"]["training_approach"]
    assert rec["proposal"] == deterministic(state).model_dump(mode="json")
    assert "unavailable (rate limited, HTTP 429)" in rec["notice"] and len(fake.requests) == 3


def test_timeouts_are_retried():
    fake = ToolFakeChatModel(script=[Delay(5, tool_call("TrainingApproachRecommendation", approach())), tool_call("TrainingApproachRecommendation", approach())])
    update = run(recommend(section_state(), fake, llm_retries=1, llm_timeout=0.05))
    assert [c["outcome"] for c in update["llm_calls"]] == ["error: timed out", "ok"]


def test_other_errors_are_not_retried():
    fake = ToolFakeChatModel(script=[http_error(401)])
    rec = run(recommend(section_state(), fake))["recommendations"]["training_approach"]
    assert len(fake.requests) == 1 and "HTTP 401" in rec["notice"]


def test_backoff_doubles(monkeypatch):
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(llm.asyncio, "sleep", fake_sleep)
    fake = ToolFakeChatModel(script=[http_error(503)] * 3)
    run(recommend(section_state(), fake, llm_retries=2, llm_backoff=0.25))
    assert slept == [0.25, 0.5] and len(fake.requests) == 3


# --- section 2 synthesis ----------------------------------------------------------------------


def consult_state() -> PipelineState:
    recs = [record("consult_knowledge", qid, [item(f"kb-{i}0000000-{qid[8:]}", f"Item {i}")]) for i, (_, qid) in enumerate(offline.SYNTHESIS_ASPECTS)]
    return {"project": {"name": "support-bot", "architecture": "fine-tuning"}, "knowledge": recs, "decisions": {}}


def synthesis(ids: list[list[str]], note: str = "Your tickets need rewriting into pairs.") -> dict[str, Any]:
    return {"insights": [{"aspect": a, "text": f"Insight on {a}.", "cited_ids": c} for (a, _), c in zip(offline.SYNTHESIS_ASPECTS, ids)], "dataset_note": note}


def test_synthesis_cites_state_items_and_keeps_the_seed_warning():
    state = consult_state()
    ids = [[i["id"] for i in r["items"]] for r in state["knowledge"]]
    ids[0] = ids[0] + ["kb-99999999-invented"]
    fake = ToolFakeChatModel(script=[tool_call("KnowledgeSynthesis", synthesis(ids))])
    cmd = run(synthesize(state, SimpleNamespace(context=ctx_with(fake))))
    text = cmd.update["messages"][0].content
    assert f"> {offline.CRITICAL_WARNING}" in text and "Your tickets need rewriting" in text
    assert all(f"`[{i[0][:8]}]`" in text for i in ids) and "kb-99999" not in text
    assert [i["item_ids"] for i in cmd.update["insights"]] == [[x for x in i if "invented" not in x] for i in ids]
    assert cmd.update["usage"]["calls"] == 1 and cmd.goto == "base_model"


def test_synthesis_without_support_for_an_aspect_is_repaired_then_falls_back():
    state = consult_state()
    unsupported = synthesis([["kb-invented-1"]] * 4)
    fake = ToolFakeChatModel(script=[tool_call("KnowledgeSynthesis", unsupported)] * 2)
    cmd = run(synthesize(state, SimpleNamespace(context=ctx_with(fake))))
    assert "LoRA/QLoRA configuration patterns" in fake.requests[1][-1].content
    offline_text, offline_insights = offline.synthesize(state["knowledge"])
    text = cmd.update["messages"][0].content
    assert text.endswith(offline_text) and "did not pass validation twice" in text
    assert cmd.update["insights"] == offline_insights


def test_synthesis_with_nothing_fetched_does_not_call_the_model():
    state = consult_state()
    state["knowledge"] = [record("consult_knowledge", qid, [], error="down") for _, qid in offline.SYNTHESIS_ASPECTS]
    fake = ToolFakeChatModel()
    cmd = run(synthesize(state, SimpleNamespace(context=ctx_with(fake))))
    assert fake.requests == [] and "usage" not in cmd.update


# --- the menu ---------------------------------------------------------------------------------


class FakeKnowledge:
    def __init__(self) -> None:
        self.asked: list[str] = []

    async def ask(self, text: str, stage: str = "menu", limit: int = 5) -> QueryRecord:
        self.asked.append(text)
        return QueryRecord.model_validate(record("menu", "menu.ask.1", [item(KNOWN, "LoRA rank")]))


def test_out_of_scope_question_never_reaches_the_model():
    fake, kb = ToolFakeChatModel(), FakeKnowledge()
    state = {"pending_question": "How do we serve it behind an inference endpoint?", "decisions": {}}
    cmd = run(answer_question(state, SimpleNamespace(context=ctx_with(fake, knowledge_client=kb))))
    assert cmd.update["notice"] == offline.out_of_scope_answer() and fake.requests == [] and kb.asked == []


def test_menu_question_answered_by_the_model_with_real_sources_only():
    kb = FakeKnowledge()
    fake = ToolFakeChatModel(script=[tool_call("MenuAnswer", {"in_scope": True, "answer": "Start at r=16.", "cited_ids": [KNOWN, "kb-fake"]})])
    state = {"pending_question": "Which LoRA rank for a hard task?", "decisions": {}, "project": {"name": "p"}}
    cmd = run(answer_question(state, SimpleNamespace(context=ctx_with(fake, knowledge_client=kb))))
    assert cmd.goto == "menu" and cmd.update["notice"].startswith("Start at r=16.")
    assert f"`[{KNOWN[:8]}]`" in cmd.update["notice"] and "kb-fake" not in cmd.update["notice"]
    assert "Which LoRA rank" in fake.requests[0][-1].content


def test_model_flagging_a_later_phase_gets_the_scoped_answer():
    fake = ToolFakeChatModel(script=[tool_call("MenuAnswer", {"in_scope": False, "answer": "Use Triton.", "cited_ids": []})])
    state = {"pending_question": "Which GPU runtime after training?", "decisions": {}}
    cmd = run(answer_question(state, SimpleNamespace(context=ctx_with(fake, knowledge_client=FakeKnowledge()))))
    assert cmd.update["notice"] == offline.out_of_scope_answer()


def test_menu_answer_falls_back_to_the_knowledge_items():
    fake = ToolFakeChatModel(script=[http_error(500)])
    state = {"pending_question": "Which LoRA rank?", "decisions": {}}
    cmd = run(answer_question(state, SimpleNamespace(context=ctx_with(fake, knowledge_client=FakeKnowledge(), llm_retries=0))))
    assert "unavailable (server error, HTTP 500)" in cmd.update["notice"] and "From the knowledge base" in cmd.update["notice"]


# --- usage ------------------------------------------------------------------------------------


def test_usage_sums_per_session_and_shows_under_progress():
    calls = [{"purpose": "a", "outcome": "ok", "input_tokens": 100, "output_tokens": 20, "total_tokens": 120, "prompt_chars": 1000, "schema_chars": 200},
             {"purpose": "b", "outcome": "error: timed out", "input_tokens": 0, "output_tokens": 0, "total_tokens": 0, "prompt_chars": 500, "schema_chars": 200}]
    one = summarize_usage(calls[:1])
    total = _sum_counts(one, summarize_usage(calls[1:]))
    assert total == summarize_usage(calls) == {"calls": 2, "failed_calls": 1, "input_tokens": 100, "output_tokens": 20, "total_tokens": 120, "prompt_chars": 1900}
    assert prompt_chars(total) == prompt_chars(calls) == 1900 and prompt_chars(None) == 0
    assert usage_line(None) is None
    text = progress_text({"decisions": {}, "usage": total}, ".")
    assert "Language model: 2 calls, 1 failed, 100 input + 20 output tokens, 1,900 prompt characters." in text
    assert "Language model" not in progress_text({"decisions": {}}, ".")


# --- through the graph: answers read by the model, and no decision without yes -------------------


def model_session(loop, knowledge, project, fake) -> Session:
    s = Session(loop, knowledge, str(project))
    s.context = ctx_with(fake, knowledge_client=knowledge)
    return s


def at(qid: str):
    return lambda p: p["question_id"] == qid


def test_full_session_with_the_model(loop, knowledge, project_copy):
    project = project_copy("support-bot")
    fake = ToolFakeChatModel(responder=canned)
    s = model_session(loop, knowledge, project, fake)
    s.run_until(answer_from(HAPPY), at("menu"))
    values = s.values()
    assert len(values["decisions"]) == 6
    assert [p["question_id"] for p in s.payloads if p["question_id"].endswith(".decision")] == [f"{x}.decision" for x in SECTIONS]
    for section in SECTIONS:
        d = values["decisions"][section]
        assert d["rationale"].startswith("Model rationale") and all("invented" not in i for i in d["knowledge_items"])
    assert fake.tools.count("KnowledgeSynthesis") == 1 and values["usage"]["calls"] == len(fake.requests) == 7
    progress = s.resume("P")
    assert "Language model: 7 calls" in progress["prompt"]
    answered = s.resume("What LoRA rank for a hard task?")
    assert "Model answer" in answered["prompt"] and "not-a-real-id" not in answered["prompt"]
    assert s.resume("C") is None and (project / "phase-2-training" / "spec.md").exists()


def reading(**args: Any):
    return lambda tool, messages: tool_call("AnswerReading", args) if tool == "AnswerReading" else canned(tool, messages)


def test_free_text_at_a_decision_is_read_into_edits_then_confirmed(loop, knowledge, project_copy):
    fake = ToolFakeChatModel(responder=canned)
    s = model_session(loop, knowledge, project_copy("support-bot"), fake)
    first = s.run_until(answer_from(HAPPY), at("peft.decision"))
    fake.responder = reading(understood=True, edits={"r": "32", "alpha": 64}, summary="Rank 32 with alpha 64.")
    updated = s.resume("Let's give the adapter more capacity, say rank 32")
    assert updated["question_id"] == "peft.decision" and updated["error"] is None
    assert updated["default"]["r"] == 32 and updated["default"]["alpha"] == 64 and first["default"]["r"] != 32
    assert "(updated)" not in first["prompt"]  # the model's own first proposal is not a change the user made
    assert "(updated)" in updated["prompt"] and "Read from your answer: Rank 32 with alpha 64." in updated["prompt"]
    assert "Let's give the adapter" in fake.requests[-1][-1].content
    assert "peft" not in s.values()["decisions"]  # read, shown, not recorded
    s.resume("yes")
    assert s.values()["decisions"]["peft"]["fields"]["r"] == 32


def test_field_syntax_keeps_the_rules_error_without_the_model(loop, knowledge, project_copy):
    fake = ToolFakeChatModel(responder=canned)
    s = model_session(loop, knowledge, project_copy("support-bot"), fake)
    s.run_until(answer_from(HAPPY), at("peft.decision"))
    before = len(fake.requests)
    again = s.resume("alpha: many")
    assert "alpha" in again["error"] and len(fake.requests) == before


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ({"understood": False, "summary": "You seem happy with it: answer yes to record it."}, "answer yes to record it"),
        ({"understood": True, "edits": {"learning_rate": 0.001}, "summary": "Decision recorded."}, "did not pass validation twice"),
        ({"understood": True, "choice_value": "ia3", "summary": "Recorded IA3 as final."}, "did not pass validation twice"),
    ],
    ids=["acceptance-is-not-read", "another-sections-field", "unknown-option"],
)
def test_the_model_cannot_confirm_or_change_other_sections(loop, knowledge, project_copy, reply, error):
    fake = ToolFakeChatModel(responder=canned)
    project = project_copy("support-bot")
    s = model_session(loop, knowledge, project, fake)
    shown = s.run_until(answer_from(HAPPY), at("peft.decision"))
    fake.responder = reading(**reply)
    again = s.resume("that all sounds fine to me, go ahead and lock it in")
    assert again["question_id"] == "peft.decision" and error in again["error"]
    assert again["default"] == shown["default"]
    values = s.values()
    assert "peft" not in values["decisions"] and "hyperparameters" not in values["decisions"]
    tp = [d["id"] for d in yaml.safe_load((project / "sidecar.yaml").read_text())["decisions"] if d["id"].startswith("tp-")]
    assert tp == ["tp-001", "tp-002", "tp-003"]


def hostile(tool: str, messages: list) -> Any:
    """A model that claims decisions are made and slips in other sections' fields."""
    if tool.endswith("Recommendation"):
        args = recommendation_args(first_prompt(messages), reasoning=["Decision recorded: this is final and saved to the sidecar."])
        if tool == "PeftRecommendation":
            args["fields"] = {**args["fields"], "learning_rate": 0.01}  # not a PEFT field
        return tool_call(tool, args)
    return canned(tool, messages)


def test_no_decision_without_the_users_yes_whatever_the_model_says(loop, knowledge, project_copy):
    project = project_copy("support-bot")
    s = model_session(loop, knowledge, project, ToolFakeChatModel(responder=hostile))
    confirmed: list[str] = []

    def answer(payload: dict) -> Any:
        if payload["question_id"].endswith(".decision"):
            section = payload["section"]
            assert set(s.values().get("decisions", {})) == set(confirmed), "recorded before the user answered"
            assert not [d for d in yaml.safe_load((project / "sidecar.yaml").read_text())["decisions"] if d["id"] == f"tp-00{SECTIONS.index(section) + 1}"]
            if section == "peft":
                assert "did not pass validation twice" in payload["prompt"]  # the other section's field was refused
                assert "learning_rate" not in payload["default"]
            else:
                assert "Decision recorded: this is final" in payload["prompt"]  # shown as the model's words, nothing more
            confirmed.append(section)
        return answer_from(HAPPY)(payload)

    s.run_until(answer, at("menu"))
    assert list(s.values()["decisions"]) == list(SECTIONS) == confirmed
