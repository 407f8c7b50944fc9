"""Section 6: parameter-efficient fine-tuning, method and LoRA configuration (tp-004)."""

from __future__ import annotations

from agent.interview import FormField, Option
from agent.model_catalog import find_model, target_modules
from agent.planning.constraints import gpu_text, read_constraints, source_name
from agent.planning.fit import HEADROOM, fits_gpu, tradeoffs
from agent.planning.plan import try_plan
from agent.planning import reading as parse
from agent.sections.base import Proposal, SectionInputs, SectionSpec, knowledge_lines, rationale_from, understood_notes

INTRO = """**A. PEFT Method Selection**

| Method | Memory | Speed | When the knowledge base recommends it |
|--------|--------|-------|---------------------------------------|
| **Full Fine-tuning** | High | Slow | Small models, unlimited compute |
| **LoRA** | Low | Fast | Training speed is priority, sufficient VRAM |
| **QLoRA** | Very Low | Medium | Memory constraints are primary concern |

- **QLoRA**: use when memory constraints are the primary concern (quantized base model).
- **LoRA**: use when training speed is crucial AND sufficient memory is available.

**B. LoRA Configuration**

| Parameter | Starting Point | Guidance |
|-----------|---------------|----------|
| **rank (r)** | r=4 | Can increase up to 256 for complex tasks |
| **alpha (α)** | α = 2r | Common heuristic: if r=4, then α=8 |
| **dropout** | 0 to 0.1 | Optional regularization factor |

Published defaults disagree: LoRA paper sets alpha to the first r tried; QLoRA paper r 64 / alpha 16;
peft default r 8 / alpha 8; Unsloth r 16 / alpha 16; AutoTrain r 16 / alpha 32.

**Target modules**: attention layers (q_proj, k_proj, v_proj, o_proj) as standard; MLP layers (gate_proj,
up_proj, down_proj) for extended adaptation. Names differ by architecture family and are checked against
the chosen model.
"""

METHODS = {
    "full": ("Full fine-tuning", "Every weight trained; most memory, no adapter"),
    "lora": ("LoRA", "Low-rank adapters on a 16-bit base; fast, needs the base in memory"),
    "qlora": ("QLoRA", "Low-rank adapters on a 4-bit base; least memory, somewhat slower"),
}

FIELDS = [
    FormField(name="method", label="Method", type="string", choices=list(METHODS)),
    FormField(name="quantization", label="Base quantization", type="string", choices=["none", "4bit", "8bit"]),
    FormField(name="r", label="Rank r", type="integer", required=False),
    FormField(name="alpha", label="Alpha", type="integer", required=False),
    FormField(name="dropout", label="Dropout", type="number", required=False),
    FormField(name="target_modules", label="Target modules", type="list"),
]

def _candidate(method: str, rank: int, modules: list[str]) -> dict:
    return {"method": method, "quantization": "4bit" if method == "qlora" else "none", "r": None if method == "full" else rank,
            "alpha": None if method == "full" else rank * 2, "dropout": None if method == "full" else 0.05,
            "target_modules": [] if method == "full" else modules}


def _assumed_hyper(inputs: SectionInputs, stated, context: int) -> dict:
    """The training shape memory is sized at: the recorded hyperparameters, else micro-batch 1 at the stated length."""
    recorded = inputs.decisions.get("hyperparameters")
    if recorded:
        return dict(recorded)
    length = int(stated.max_tokens.value) if stated.max_tokens else 2048
    return {"batch_size": 1, "gradient_accumulation_steps": 16, "max_length": min(max(length, 256), context), "num_epochs": 1}


def recommend(inputs: SectionInputs) -> Proposal:
    base = inputs.decisions.get("base_model", {})
    spec = find_model(base.get("model_id", "")) or find_model(base.get("name", ""))
    params_b = float(base.get("params_b") or (spec.params_b if spec else 7))
    family = base.get("family") or (spec.family if spec else "llama")
    context = int(base.get("context_length") or (spec.context_length if spec else 4096))
    text = " ".join([inputs.context, *inputs.project.get("constraints", [])])
    stated = read_constraints({**inputs.earlier, "peft": inputs.context}, inputs.project, current="peft")
    gpu = stated.gpu_spec
    rank = int(inputs.edits.get("r") or 16)
    modules = target_modules(family) or {"attention": ["q_proj", "v_proj", "k_proj", "o_proj"], "all_linear": ["q_proj", "k_proj", "v_proj", "o_proj"], "note": ""}
    hyper = _assumed_hyper(inputs, stated, context)
    base_fields = base or {"model_id": "model", "params_b": params_b}
    plans = {m: try_plan({**inputs.decisions, "base_model": base_fields, "peft": _candidate(m, rank, list(modules["all_linear"])),
                          "hyperparameters": hyper}, gpu=gpu) for m in METHODS}
    need = {m: (p.memory.total_gb if p is not None else 0.0) for m, p in plans.items()}
    stages = "SFT and DPO" if inputs.decisions.get("training_approach", {}).get("approach") == "combined" else "the training stage"
    reasoning = [
        f"Estimated peak training memory for {params_b:g}B ({stages}) at {int(hyper.get('max_length') or 2048):,} tokens, "
        f"micro-batch {hyper.get('batch_size', 1)}, gradient checkpointing: "
        + ", ".join(f"{METHODS[m][0]} ≈ {need[m]:.0f} GB" for m in METHODS) + "."
    ]
    fits = {m: fits_gpu(p, gpu) for m, p in plans.items()}
    if gpu is not None:
        reasoning.append(f"Available: {gpu_text(gpu)}, {HEADROOM:.0%} of it planned for (from {source_name(stated.gpu.source)}).")
        if params_b <= 3 and fits["full"]:
            method = "full"
            reasoning.append("The model is small and full fine-tuning fits: train every weight.")
        elif fits["lora"]:
            method = "lora"
            reasoning.append("LoRA on a 16-bit base fits with headroom, and trains faster than QLoRA: memory is not the binding constraint.")
        else:
            method = "qlora"
            reasoning.append("LoRA on a 16-bit base does not fit with headroom; QLoRA (4-bit NF4 base) cuts the weights to about a quarter.")
    else:
        method = "qlora" if params_b >= 30 else "lora"
        reasoning.append("No GPU memory stated; " + ("at 30B+ QLoRA is the safe default." if method == "qlora" else "LoRA is the default below 30B; QLoRA if memory turns out tight."))
    if parse.mentions(text, "qlora", "4-bit", "4bit", "quantiz") and inputs.choice is None:
        method = "qlora"
        reasoning.append("You mention quantization: QLoRA it is.")
    if inputs.choice in METHODS:
        method = inputs.choice
    fields = _candidate(method, rank, list(modules["all_linear"]))
    fields.update(inputs.edits)
    notes = understood_notes(stated, "peft")
    chosen = try_plan({**inputs.decisions, "base_model": base_fields, "peft": fields, "hyperparameters": hyper}, gpu=gpu)
    if gpu is not None and chosen is not None and not fits_gpu(chosen, gpu):
        reasoning.append(f"{METHODS.get(fields['method'], (fields['method'],))[0]} needs about {chosen.memory.total_gb:.0f} GB: it does NOT fit "
                         f"{gpu_text(gpu)}; a constraint has to give (see the notes).")
        notes += tradeoffs({**inputs.decisions, "base_model": base_fields, "peft": fields, "hyperparameters": hyper}, gpu)
    if fields["method"] != "full":
        reasoning.append(
            f"r={fields['r']}, alpha={fields['alpha']} (the alpha = 2r heuristic), dropout {fields['dropout']}: a middle "
            "starting point between the seed's r=4 and the QLoRA paper's r=64; raise r for harder tasks."
        )
        reasoning.append(
            f"Target modules for the {family} family: {', '.join(fields['target_modules'])} (all linear layers; the QLoRA paper "
            "found adapting every layer needed to match full fine-tuning)."
        )
    if modules.get("note"):
        reasoning.append(modules["note"])
    cited, ids = knowledge_lines(inputs.knowledge)
    if cited:
        reasoning.append("Knowledge consulted: " + "; ".join(cited))
    label = METHODS.get(fields["method"], (fields["method"],))[0]
    choice = label if fields["method"] == "full" else f"{label} r={fields['r']}, alpha={fields['alpha']}"
    return Proposal(
        choice_value=fields["method"],
        choice=choice,
        fields=fields,
        reasoning=reasoning,
        rationale=rationale_from(reasoning, 2, skip=1),
        options=[Option(value=k, label=v[0], description=f"{v[1]} (≈{need[k]:.0f} GB)") for k, v in METHODS.items()],
        options_considered=[f"{v[0]} (≈{need[k]:.0f} GB)" for k, v in METHODS.items()],
        consequences=[
            f"Peak training memory about {chosen.memory.total_gb if chosen else need.get(fields['method'], 0):.0f} GB at "
            f"{int(hyper.get('max_length') or 2048):,} tokens, micro-batch {hyper.get('batch_size', 1)}; the hyperparameters "
            "decision sets the final figure (see the plan estimate in the spec).",
            "Adapters are small files to version; merge them into the base for serving or load them at run time."
            if fields["method"] != "full" else "A full copy of the weights per checkpoint.",
        ],
        knowledge_items=ids,
        notes=notes,
    )


SPEC = SectionSpec(
    name="peft",
    seed_section=6,
    title="Parameter-efficient fine-tuning",
    ask_id="peft.compute",
    ask_title="Compute resources",
    ask_text="What compute resources do you have? Let me query the knowledge base for appropriate PEFT configuration.",
    intro=INTRO,
    fields=FIELDS,
    recommend=recommend,
    ask_placeholder="e.g. one 24 GB GPU (RTX 4090)",
)
