"""Section 7: hyperparameter configuration (tp-005)."""

from __future__ import annotations

from agent.interview import FormField
from agent.interview import Option
from agent.model_catalog import find_model
from agent.planning.constraints import read_constraints, source_name
from agent.planning.fit import MIN_LENGTH, fit_hyperparameters
from agent.planning.plan import METHOD_NAMES
from agent.sections.base import Proposal, SectionInputs, SectionSpec, knowledge_lines, plan_check_lines, rationale_from, understood_notes

INTRO = """**A. Key Hyperparameters** (ranges evolve with research)

| Parameter | Typical Range | Guidance |
|-----------|---------------|----------|
| **Learning Rate** | 1e-5 to 2e-4 (SFT) | Lower for larger models; LoRA needs about 10x the full fine-tuning rate |
| **Epochs** | 1-5 | 2-5 often optimal; watch for overfitting |
| **Batch Size** | 4-32 | Limited by memory, use gradient accumulation |
| **Warmup** | 3-10% of steps | Stabilizes early training |

> Too few epochs -> underfitting. Too many epochs -> overfitting (model memorizes training data).
> Monitor validation performance and implement early stopping.

**B. DPO (if applicable)**: beta controls the KL penalty (TRL and the DPO paper: 0.1; Zephyr: 0.01);
a reference model is needed unless a reference-free variant is used.

**C. Monitoring**: training/validation loss curves, gradient norms, early stopping on validation.
"""

FIELDS = [
    FormField(name="learning_rate", label="Learning rate", type="number"),
    FormField(name="batch_size", label="Micro-batch size", type="integer"),
    FormField(name="gradient_accumulation_steps", label="Gradient accumulation", type="integer"),
    FormField(name="num_epochs", label="Epochs", type="number"),
    FormField(name="warmup_ratio", label="Warmup ratio", type="number"),
    FormField(name="weight_decay", label="Weight decay", type="number"),
    FormField(name="max_length", label="Max sequence length", type="integer"),
    FormField(name="dpo_beta", label="DPO beta", type="number", required=False),
    FormField(name="reference_free", label="Reference-free DPO", type="boolean", required=False),
    FormField(name="budget", label="Training budget", type="string", required=False),
]


def _lr_default(approach: str, method: str, params_b: float) -> tuple[float, str]:
    if approach == "dpo":
        lr = 5e-6 if method != "full" else 5e-7
        return lr, "TRL and the DPO paper use 1e-6 for full training, Zephyr 5e-7; LoRA-DPO about 5e-6"
    if method == "full":
        return (2e-5 if params_b < 30 else 1e-5), "TRL's SFT default is 2e-5; lower for larger models"
    return (2e-4 if params_b < 30 else 1e-4), "QLoRA paper: 2e-4 up to 13B, 1e-4 for 33B/65B; torchtune uses 3e-4, LLaMA-Factory 1e-4"


def _epochs_default(n: int, approach: str) -> int:
    if approach == "dpo" or n >= 50_000:
        return 1
    return 2 if n >= 5_000 else 3


def _yours(name: str, edits: dict) -> str:
    return " (your value)" if name in edits else ""


def recommend(inputs: SectionInputs) -> Proposal:
    d = inputs.decisions
    params_b = float(d.get("base_model", {}).get("params_b") or 7)
    spec = find_model(d.get("base_model", {}).get("model_id", ""))
    ctx_len = int(d.get("base_model", {}).get("context_length") or (spec.context_length if spec else 4096))
    method = d.get("peft", {}).get("method", "lora")
    approach = d.get("training_approach", {}).get("approach", "sft")
    data = d.get("training_data", {})
    n = max(data.get("sft_examples") or 0, data.get("dpo_pairs") or 0)
    said = {**inputs.earlier, "hyperparameters": str(inputs.edits.get("budget") or inputs.context)}
    stated = read_constraints(said, inputs.project, current="hyperparameters")
    gpu = stated.gpu_spec

    lr, lr_why = _lr_default(approach, method, params_b)
    micro = 1 if params_b >= 30 else (2 if method == "qlora" else 4)
    target_effective = 16 if approach != "dpo" else 32
    needed = stated.max_tokens.value if stated.max_tokens else None
    max_len = min(1 << (int(needed) - 1).bit_length(), ctx_len) if needed else min(2048, ctx_len)
    fields = {
        "learning_rate": lr,
        "batch_size": micro,
        "gradient_accumulation_steps": max(1, target_effective // micro),
        "num_epochs": _epochs_default(n, approach),
        "warmup_ratio": 0.03 if approach != "dpo" else 0.1,
        "weight_decay": 0.0 if method != "full" else 0.01,
        "max_length": max_len,
        "dpo_beta": 0.1 if approach in ("dpo", "combined") else None,
        "reference_free": False if approach in ("dpo", "combined") else None,
        "budget": inputs.context,
    }
    fields.update(inputs.edits)
    budget_h = float(stated.budget_hours.value) if stated.budget_hours else None
    budget_usd = float(stated.budget_usd.value) if stated.budget_usd else None
    fitting = None
    if {"base_model", "peft"} <= set(d):
        min_len = int(needed) if needed else MIN_LENGTH
        fitting = fit_hyperparameters(d, fields, gpu, budget_h, budget_usd, fixed=set(inputs.edits), min_length=min(min_len, ctx_len),
                                      stated_length=int(needed) if needed else None)
        fields = fitting.hyper

    # The reasoning describes the values proposed, edits included: the record's rationale is taken from it.
    e = inputs.edits
    how_many = f"for {n:,} examples" if n else "(the number of examples is not known yet)"
    reasoning = [
        f"Learning rate {fields['learning_rate']:g}{_yours('learning_rate', e)} for {METHOD_NAMES.get(method, method)} at "
        f"{params_b:g}B{' (DPO)' if approach == 'dpo' else ''}: the published default is {lr:g} ({lr_why}).",
        f"Epochs: {fields['num_epochs']:g}{_yours('num_epochs', e)} {how_many} (sources disagree: Unsloth 1-3, the seed "
        "2-5; multi-epoch on instruction data often overfits): keep early stopping on the validation loss.",
        f"Batch: micro-batch {fields['batch_size']} x {fields['gradient_accumulation_steps']} accumulation steps = effective "
        f"{int(fields['batch_size']) * int(fields['gradient_accumulation_steps'])} per device.",
    ]
    if needed:
        reasoning.append(f"Max length {int(fields['max_length']):,} tokens{_yours('max_length', e)}: you expect inputs of about "
                         f"{int(needed):,} tokens ({source_name(stated.max_tokens.source)}; the model's window is {ctx_len:,}).")
    else:
        reasoning.append(f"Max length {int(fields['max_length']):,} tokens{_yours('max_length', e)} (within the model's "
                         f"{ctx_len:,}-token window); measure your data's length distribution.")
    if approach in ("dpo", "combined"):
        reasoning.append("DPO beta 0.1 with a reference model (TRL default, DPO paper); lower beta (0.01) lets the policy move further.")
    notes = understood_notes(stated, "hyperparameters")
    if fitting is not None:
        reasoning += plan_check_lines(fitting, gpu, stated)
        notes += fitting.tradeoffs
    elif budget_h or budget_usd:
        reasoning.append("Budget noted; the plan is checked against it once the base model and PEFT method are decided.")
    cited, ids = knowledge_lines(inputs.knowledge)
    if cited:
        reasoning.append("Knowledge consulted: " + "; ".join(cited))
    choice = (
        f"lr {fields['learning_rate']:g}, batch {fields['batch_size']}x{fields['gradient_accumulation_steps']}, "
        f"{fields['num_epochs']:g} epochs, max length {fields['max_length']}"
    )
    return Proposal(
        choice_value="proposed",
        choice=choice,
        fields=fields,
        reasoning=reasoning,
        rationale=rationale_from(reasoning, 2),
        options=[Option(value="proposed", label="Proposed values", description=choice)],
        options_considered=["Published defaults for the method and size", "Values fitted to the stated GPUs and budget"],
        consequences=["Track training and validation loss and gradient norms; stop early when validation loss rises."]
        + ([f"Plan: {fitting.plan.summary}"] if fitting is not None and fitting.plan is not None else []),
        knowledge_items=ids,
        notes=notes,
    )


SPEC = SectionSpec(
    name="hyperparameters",
    seed_section=7,
    title="Hyperparameter configuration",
    ask_id="hyperparameters.budget",
    ask_title="Training budget",
    ask_text="What's your training budget (time, compute)? This affects hyperparameter choices.",
    intro=INTRO,
    fields=FIELDS,
    recommend=recommend,
    ask_placeholder="e.g. one overnight run, about 12 GPU hours",
)
