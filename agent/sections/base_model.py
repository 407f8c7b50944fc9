"""Section 3: base model selection (tp-001)."""

from __future__ import annotations

from agent.interview import FormField, Option
from agent.model_catalog import ModelSpec, find_model, load_catalog
from agent.planning.constraints import gpu_text, read_constraints, source_name
from agent.planning import reading as parse
from agent.sections.base import Proposal, SectionInputs, SectionSpec, knowledge_lines, rationale_from, table, understood_notes

INTRO = """**A. Model Selection Criteria**

| Factor | Consideration |
|--------|---------------|
| **Size** | 7B, 13B, 70B - trade-off between capability and cost |
| **License** | Commercial use allowed? (Llama, Mistral, Qwen, Gemma, Falcon) |
| **Architecture** | Decoder-only (GPT-like) vs Encoder-decoder |
| **Pre-training Data** | Domain relevance of base knowledge |
| **Instruction Tuning** | Already instruction-tuned or base? |
| **Context Length** | Maximum tokens per input |
"""

# Newer families first: at equal fit we recommend the more recent generation.
_FAMILY_RANK = {"qwen3": 9, "llama": 8, "gemma3": 8, "qwen2": 7, "gemma2": 6, "mistral": 6, "phi3": 5, "mixtral": 4, "gemma": 3, "falcon": 2, "gpt2": 1}

FIELDS = [
    FormField(name="model_id", label="Model", type="string", description="Catalogue key or Hugging Face repo id"),
    FormField(name="name", label="Repository", type="string", description="Hugging Face repo id to load"),
    FormField(name="revision", label="Revision", type="string", description="Branch, tag or commit to pin"),
    FormField(name="params_b", label="Parameters (B)", type="number"),
    FormField(name="license", label="License", type="string"),
    FormField(name="context_length", label="Context length", type="integer"),
    FormField(name="family", label="Architecture family", type="string"),
]


def catalogue_table(models: list[ModelSpec]) -> str:
    # Compact on purpose: it is read in a terminal; strengths show with the shortlist.
    rows = [[m.key, f"{m.params_b:g}B", m.license, f"{m.context_length // 1024}K", m.family] for m in models]
    return table(["Key", "Size", "License", "Context", "Family"], rows)


def intro_with_catalogue() -> str:
    return INTRO + "\n**B. Current open models** (any catalogue key, or a Hugging Face repo id)\n\n" + catalogue_table(load_catalog())


def _fields(m: ModelSpec) -> dict:
    return {
        "model_id": m.key,
        "name": m.hf_repo,
        "revision": "main",
        "params_b": m.params_b,
        "license": m.license,
        "context_length": m.context_length,
        "family": m.family,
    }


def _fits_qlora(m: ModelSpec, budget_gb: float) -> bool:
    # Rough QLoRA need: 4-bit weights (~0.6 GB per B with constants) + adapters, activations and context.
    return m.params_b * 0.6 + 4 <= budget_gb


def recommend(inputs: SectionInputs) -> Proposal:
    constraints_text = " ".join([inputs.context, *inputs.project.get("constraints", []), *inputs.project.get("requirements", [])])
    reasoning: list[str] = []
    candidates = load_catalog()

    if parse.permissive_only(constraints_text):
        candidates = [m for m in candidates if m.license in ("apache-2.0", "mit")]
        reasoning.append("Licence: only Apache-2.0 or MIT models qualify, so Llama, Gemma and Qwen-licence models are out.")
    elif parse.commercial_needed(constraints_text):
        candidates = [m for m in candidates if m.commercial_use]
        reasoning.append("Licence: commercial use is needed; every remaining model allows it (check the notes on user caps).")

    limit = parse.size_limit_b(constraints_text)
    if limit:
        candidates = [m for m in candidates if m.params_b <= limit * 1.05]
        reasoning.append(f"Size: at most {limit:g}B parameters, as stated.")

    stated = read_constraints({**inputs.earlier, "base_model": inputs.context}, inputs.project, current="base_model")
    gpu = stated.gpu_spec
    budget = gpu.memory_gb * gpu.count if gpu else None
    if budget:
        fitting = [m for m in candidates if _fits_qlora(m, budget)]
        if fitting:
            candidates = fitting
        reasoning.append(f"Memory: {gpu_text(gpu)} ({source_name(stated.gpu.source)}), {budget:g} GB in total; models that cannot "
                         "train even with QLoRA there are dropped.")

    need_ctx = parse.context_tokens(constraints_text)
    if need_ctx:
        longer = [m for m in candidates if m.context_length >= need_ctx]
        candidates = longer or candidates
        reasoning.append(f"Context: inputs of about {need_ctx:,} tokens need a window at least that long.")

    code_task = parse.mentions(constraints_text, "code", "coding", "programming", "sql")
    multilingual = parse.mentions(constraints_text, "multilingual", "languages", "chinese", "german", "french", "spanish", "japanese")
    if not candidates:
        candidates = load_catalog()
        reasoning.append("No catalogue model meets every constraint; showing the closest ones. Name a repo id to use another model.")

    target = limit or (8.0 if not budget else None)

    def score(m: ModelSpec) -> float:
        s = _FAMILY_RANK.get(m.family, 0) * 1.0
        if code_task and "code" in (m.key + m.strengths).lower():
            s += 4
        if multilingual and m.family in ("qwen2", "qwen3", "gemma2", "gemma3"):
            s += 2
        if target:  # closeness to the size the constraints point at
            s -= abs(m.params_b - target) / max(target, 1) * 4
        elif budget:  # the largest model that trains comfortably with LoRA/QLoRA
            s += min(m.params_b, budget / 3) / max(budget / 3, 1) * 4
        if m.family == "gpt2":
            s -= 6  # a teaching model, not a production base
        return s

    ranked = sorted(candidates, key=score, reverse=True)
    if inputs.choice:
        chosen = find_model(inputs.choice) or ranked[0]
    else:
        chosen = ranked[0]
    shortlist = [chosen] + [m for m in ranked if m.key != chosen.key][:3]

    if code_task:
        reasoning.append("Domain: the task involves code, so code-trained models score higher.")
    if multilingual:
        reasoning.append("Domain: several languages are needed; Qwen and Gemma have broad multilingual pre-training.")
    reasoning.append(
        f"{chosen.name}: {chosen.params_b:g}B, {chosen.license_name}, {chosen.context_length:,}-token context, "
        f"{chosen.family} family. {chosen.strengths}".strip()
    )
    if chosen.commercial_note:
        reasoning.append(f"Licence note: {chosen.commercial_note}")
    if chosen.instruct_repo:
        reasoning.append(
            f"An instruction-tuned variant exists ({chosen.instruct_repo}); starting from it helps when data is scarce "
            "or when DPO follows."
        )
    cited, ids = knowledge_lines(inputs.knowledge)
    if cited:
        reasoning.append("Knowledge consulted: " + "; ".join(cited))

    fields = _fields(chosen)
    fields.update(inputs.edits)
    return Proposal(
        choice_value=chosen.key,
        choice=f"{chosen.name} ({fields['name']})",
        fields=fields,
        reasoning=reasoning,
        rationale=f"{chosen.name} is the best fit for the stated constraints. " + rationale_from(reasoning, 3),
        options=[Option(value=m.key, label=m.name, description=f"{m.params_b:g}B, {m.license_name}, {m.context_length:,} ctx") for m in shortlist],
        options_considered=[m.name for m in shortlist],
        consequences=[
            f"Target modules and memory follow the {chosen.family} architecture at {chosen.params_b:g}B parameters.",
            f"Licence obligations of the {chosen.license_name} apply to the fine-tuned model.",
        ],
        knowledge_items=ids,
        notes=understood_notes(stated, "base_model"),
    )


SPEC = SectionSpec(
    name="base_model",
    seed_section=3,
    title="Base model selection",
    ask_id="base_model.constraints",
    ask_title="Base model constraints",
    ask_text="What base model constraints do you have? (Size limits, licensing, domain requirements)",
    intro=intro_with_catalogue(),
    fields=FIELDS,
    recommend=recommend,
    ask_placeholder="e.g. one 24 GB GPU, Apache-2.0 only, English support tickets",
)
