"""Consistency checks over the decisions made so far: common fine-tuning mistakes.

Each rule looks only at sections that are decided and returns zero or more Pitfalls. Ids are
stable (transcripts and acknowledged warnings key on them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from agent.model_catalog import ALL_LINEAR, is_instruction_tuned, valid_module_names
from agent.planning import gpu as gpus
from agent.planning.constraints import Constraints, from_decisions, gpu_text, source_name
from agent.planning.fit import fits_gpu, gpu_hours, tradeoffs
from agent.planning.plan import replicated_gb, resolve_model, section_fields, try_plan

# Sources cited by the rules (finetuning-facts.md and the seed).
QLORA_PAPER = "Dettmers et al. 2023, QLoRA (arXiv:2305.14314)"
ALPHA_SPREAD = (
    "LoRA alpha defaults: alpha = 2r (Raschka's LoRA experiments, torchtune, LLaMA-Factory); "
    "alpha = r (Unsloth r16/a16, peft r8/a8); r64/a16 (QLoRA paper); r16/a32 (AutoTrain)"
)
LR_SOURCES = {
    "full": "TRL SFTConfig default learning_rate 2e-5 (full fine-tuning)",
    "lora": "QLoRA paper: 2e-4 for 7B/13B, 1e-4 for 33B/65B; Unsloth 2e-4; torchtune LoRA 3e-4; "
    "TRL docs: LoRA needs ~10x the full fine-tuning rate",
    "dpo": "TRL DPOConfig learning_rate 1e-6; DPO paper 1e-6; Zephyr 5e-7; Unsloth DPO 5e-6",
}
SEED_DATA = "Seed step 4, Training Data Preparation: SFT minimum 1,000 examples (ideal 10,000+); DPO minimum 1,000 pairs (ideal 5,000+)"
SEED_EPOCHS = "Seed step 4, Hyperparameters: 1-5 epochs, watch for overfitting; Unsloth guide: 1-3; Raschka: multi-epoch instruction tuning often hurts"
PEFT_MODULES = "peft LoraConfig: target module names must exist in the model ('Target modules ... not found in the base model')"
DPO_SOURCES = "Rafailov et al. 2023, DPO (arXiv:2305.18290); Zephyr (alignment-handbook): DPO starts from an SFT model"
SEED_QUALITY = "Seed step 4, Data Quality Checklist: no contamination, evaluation kept separate; Seed step 7: monitor validation loss and stop early"

MIN_SFT_EXAMPLES = 1000
MIN_DPO_PAIRS = 1000
MAX_EPOCHS = 5


class Pitfall(BaseModel):
    id: str
    section: str
    severity: Literal["warning", "error"]
    message: str
    fix: str
    knowledge_ref: str


@dataclass
class _Context:
    f: dict[str, dict]
    project: dict
    gpu_gb: float | None
    stated: Constraints

    def get(self, section: str) -> dict | None:
        return self.f.get(section)


Rule = Callable[[_Context], list[Pitfall]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


def _num(x: Any) -> float | None:
    try:
        return None if x is None or isinstance(x, bool) else float(x)
    except (TypeError, ValueError):
        return None


# ----------------------------------------------------------------- PEFT
@rule
def _qlora_without_4bit(c: _Context) -> list[Pitfall]:
    peft = c.get("peft")
    if not peft or peft.get("method") != "qlora" or peft.get("quantization") == "4bit":
        return []
    quant = peft.get("quantization") or "none"
    return [Pitfall(
        id="qlora-without-4bit",
        section="peft",
        severity="error" if quant == "none" else "warning",
        message=f"QLoRA is chosen but the base model is loaded with quantization '{quant}'. QLoRA means "
        "LoRA over a 4-bit NF4 base; without it memory is that of plain LoRA"
        + (" (8-bit loading is LoRA on an LLM.int8 base, slower and larger than NF4)." if quant == "8bit" else "."),
        fix="Set quantization to 4bit (NF4, double quantization, bf16 compute) or choose LoRA.",
        knowledge_ref=f"{QLORA_PAPER}, sec. 3: 4-bit NormalFloat, double quantization, paged optimizers",
    )]


@rule
def _alpha_for_rank(c: _Context) -> list[Pitfall]:
    peft = c.get("peft") or {}
    r, alpha = _num(peft.get("r")), _num(peft.get("alpha"))
    if peft.get("method") == "full" or not r or not alpha:
        return []
    if r / 2 <= alpha <= 4 * r:
        return []
    return [Pitfall(
        id="lora-alpha-unusual",
        section="peft",
        severity="warning",
        message=f"alpha {alpha:g} for rank {r:g} scales the adapter update by alpha/r = {alpha / r:.2g}, outside "
        "the r/2..4r range published defaults use. It works, but it changes the effective learning rate, so "
        "recipes tuned at alpha = r or 2r will not transfer.",
        fix=f"Use alpha = {int(2 * r)} (2r) or {int(r)} (r), or keep it and tune the learning rate for it.",
        knowledge_ref=ALPHA_SPREAD,
    )]


@rule
def _target_modules_exist(c: _Context) -> list[Pitfall]:
    peft, base = c.get("peft"), c.get("base_model")
    if not peft or not base or peft.get("method") == "full":
        return []
    spec = resolve_model(base)
    family = base.get("family") or (spec.family if spec else "")
    valid = valid_module_names(family)
    if not valid:
        return []  # unknown family: nothing to check against
    targets = [str(t) for t in peft.get("target_modules") or []]
    missing = [t for t in targets if t not in valid and t.rsplit(".", 1)[-1] not in valid]
    if not missing:
        return []
    names = sorted(valid - {ALL_LINEAR})
    return [Pitfall(
        id="target-module-not-in-model",
        section="peft",
        severity="error",
        message=f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not a layer of a {family} model; "
        "peft stops at load time with 'Target modules ... not found in the base model'.",
        fix=f"Use names from {family}: {', '.join(names)} (or '{ALL_LINEAR}').",
        knowledge_ref=PEFT_MODULES,
    )]


# ----------------------------------------------------------------- hyperparameters
def _lr_range(method: str, approach: str, params_b: float | None) -> tuple[float, float, str]:
    if approach == "dpo":
        return 1e-7, 1e-5, "dpo"
    if method == "full":
        return 1e-6, 5e-5, "full"
    if params_b and params_b >= 33:
        return 2e-5, 2e-4, "lora"  # QLoRA halves the rate at 33B/65B
    return 5e-5, 5e-4, "lora"


@rule
def _learning_rate(c: _Context) -> list[Pitfall]:
    hyper, peft = c.get("hyperparameters"), c.get("peft")
    lr = _num((hyper or {}).get("learning_rate"))
    if not lr or not peft:
        return []
    approach = (c.get("training_approach") or {}).get("approach", "sft")
    base = c.get("base_model") or {}
    params_b = _num(base.get("params_b"))
    method = peft.get("method", "lora")
    lo, hi, key = _lr_range(method, approach, params_b)
    out = []
    if not lo <= lr <= hi:
        what = "DPO" if key == "dpo" else ("full fine-tuning" if key == "full" else f"{method.upper()}")
        size = f" at {params_b:g}B" if params_b and key == "lora" and params_b >= 33 else ""
        far = lr > 10 * hi or lr < lo / 10
        out.append(Pitfall(
            id="learning-rate-out-of-range",
            section="hyperparameters",
            severity="error" if far else "warning",
            message=f"learning rate {lr:g} is {'above' if lr > hi else 'below'} the usual {lo:g}-{hi:g} for {what}{size}: "
            + ("too high risks divergence or forgetting the base model's abilities." if lr > hi else "too low may barely move the model."),
            fix=f"Start near {_suggest(key, params_b):g} and adjust from the validation loss.",
            knowledge_ref=LR_SOURCES[key],
        ))
    if approach == "combined" and lr > 1e-5:
        out.append(Pitfall(
            id="combined-dpo-learning-rate",
            section="hyperparameters",
            severity="warning",
            message=f"the combined approach uses {lr:g} for SFT; the DPO stage needs a rate 10-100x lower "
            "(about 1e-6 to 5e-6), or it collapses the SFT model.",
            fix="Keep this rate for SFT and set the DPO stage's rate separately (the exported configs use 5e-6 for adapters, 1e-6 for full).",
            knowledge_ref=LR_SOURCES["dpo"],
        ))
    return out


def _suggest(key: str, params_b: float | None) -> float:
    if key == "dpo":
        return 1e-6
    if key == "full":
        return 2e-5
    return 1e-4 if params_b and params_b >= 33 else 2e-4


@rule
def _epochs(c: _Context) -> list[Pitfall]:
    epochs = _num((c.get("hyperparameters") or {}).get("num_epochs"))
    if epochs is None or epochs <= MAX_EPOCHS:
        return []
    return [Pitfall(
        id="too-many-epochs",
        section="hyperparameters",
        severity="warning",
        message=f"{epochs:g} epochs is more than {MAX_EPOCHS}: the model is likely to memorise the training set (overfit).",
        fix="Use 1-3 epochs, evaluate on held-out data each epoch and stop early when validation loss rises.",
        knowledge_ref=SEED_EPOCHS,
    )]


@rule
def _max_length_vs_context(c: _Context) -> list[Pitfall]:
    hyper, base = c.get("hyperparameters"), c.get("base_model")
    if not hyper or not base:
        return []
    max_len = _num(hyper.get("max_length"))
    spec = resolve_model(base)
    context = _num(base.get("context_length")) or (spec.context_length if spec else None)
    if not max_len or not context or max_len <= context:
        return []
    return [Pitfall(
        id="max-length-exceeds-context",
        section="hyperparameters",
        severity="error",
        message=f"max_length {int(max_len)} exceeds the model's context of {int(context)} tokens; positions beyond "
        "it were never trained and quality degrades or training fails.",
        fix=f"Set max_length to {int(context)} or less (truncate or split longer examples), or choose a longer-context model.",
        knowledge_ref="Seed step 4, Base Model Selection: context length is the maximum tokens per input (model card / config.json)",
    )]


# ----------------------------------------------------------------- approach and data
@rule
def _dpo_data_and_start(c: _Context) -> list[Pitfall]:
    approach = (c.get("training_approach") or {}).get("approach")
    if approach not in ("dpo", "combined"):
        return []
    out = []
    data = c.get("training_data")
    if data is not None and not _num(data.get("dpo_pairs")):
        out.append(Pitfall(
            id="dpo-without-preference-data",
            section="training_data",
            severity="error",
            message=f"the {approach} approach trains on preference pairs (prompt, chosen, rejected), but no preference pairs are planned.",
            fix="Collect or generate preference pairs (at least 1,000), or switch the approach to SFT.",
            knowledge_ref=DPO_SOURCES,
        ))
    base = c.get("base_model")
    if approach == "dpo" and base:
        # The repo actually loaded (name) decides; the catalogue key only if the repo is unknown.
        tuned = is_instruction_tuned(str(base.get("name") or ""))
        if tuned is None:
            tuned = is_instruction_tuned(str(base.get("model_id") or ""))
        spec = resolve_model(base)
        instruct = f" ({spec.instruct_repo})" if spec and spec.instruct_repo else ""
        if tuned is False:
            out.append(Pitfall(
                id="dpo-without-sft-start",
                section="training_approach",
                severity="warning",
                message="DPO alone on a base (not instruction-tuned) model: DPO refines a model that already follows "
                "instructions; on a raw base model the preferences have little to act on.",
                fix=f"Use the combined approach (SFT, then DPO) or start DPO from the instruction-tuned checkpoint{instruct}.",
                knowledge_ref=DPO_SOURCES,
            ))
    return out


@rule
def _data_minimums(c: _Context) -> list[Pitfall]:
    data = c.get("training_data")
    if not data:
        return []
    approach = (c.get("training_approach") or {}).get("approach", "sft")
    out = []
    sft = _num(data.get("sft_examples"))
    if approach in ("sft", "combined") and sft is not None and sft < MIN_SFT_EXAMPLES:
        out.append(Pitfall(
            id="too-little-sft-data",
            section="training_data",
            severity="warning",
            message=f"{int(sft):,} instruction-response examples is below the 1,000 minimum; users report fine-tunes "
            "on under ~5k samples ending up worse than the base model.",
            fix="Collect or synthesise more examples (10,000+ is the ideal), or prefer prompting/RAG for now.",
            knowledge_ref=SEED_DATA,
        ))
    pairs = _num(data.get("dpo_pairs"))
    if approach in ("dpo", "combined") and pairs and pairs < MIN_DPO_PAIRS:
        out.append(Pitfall(
            id="too-little-dpo-data",
            section="training_data",
            severity="warning",
            message=f"{int(pairs):,} preference pairs is below the 1,000 minimum for DPO.",
            fix="Collect more pairs (5,000+ is the ideal), e.g. by ranking sampled responses.",
            knowledge_ref=SEED_DATA,
        ))
    return out


@rule
def _eval_split(c: _Context) -> list[Pitfall]:
    data = c.get("training_data")
    if not data or "eval_split" not in data:
        return []
    split = _num(data.get("eval_split"))
    if split is None or split > 0:
        return []
    return [Pitfall(
        id="no-eval-split",
        section="training_data",
        severity="warning",
        message="no held-out evaluation split: overfitting and the point to stop training cannot be seen.",
        fix="Hold out 2-10% of the data (eval_split 0.05 is common) and never train on it.",
        knowledge_ref=SEED_QUALITY,
    )]


# ----------------------------------------------------------------- infrastructure and constraints
def _target_gpu(c: _Context) -> tuple[gpus.GpuSpec | None, str]:
    """Where the plan runs: the infrastructure decision's GPUs, else the GPUs the user stated."""
    infra = c.get("infrastructure") or {}
    if infra:
        g = gpus.parse_gpu(str(infra.get("instance_type") or ""), infra.get("gpu_count"))
        if g is not None:
            return g, "the infrastructure decision"
    if c.stated.gpu is not None:
        return c.stated.gpu_spec, source_name(c.stated.gpu.source)
    if c.gpu_gb:
        count = int(_num(infra.get("gpu_count")) or 1)
        return gpus.GpuSpec(card=f"{c.gpu_gb / count:g} GB GPU", memory_gb=c.gpu_gb / count, count=count), "the stated GPU memory"
    return None, ""


def _plan_section(c: _Context) -> str:
    for section in ("infrastructure", "hyperparameters"):
        if c.get(section):
            return section
    return "peft"


@rule
def _fits_gpu(c: _Context) -> list[Pitfall]:
    if not c.get("base_model") or not c.get("peft"):
        return []
    gpu, where = _target_gpu(c)
    if gpu is None:
        return []
    p = try_plan(c.f, gpu=gpu)
    if p is None or fits_gpu(p, gpu, headroom=1.0):
        return []
    need = gpus.gpus_needed(p.memory.total_gb, gpu.memory_gb, replicated_gb(p.memory))
    options = tradeoffs(c.f, gpu)[1:4]
    return [Pitfall(
        id="plan-does-not-fit-gpu",
        section=_plan_section(c),
        severity="error",
        message=f"the plan needs about {p.memory.total_gb:.0f} GB at its peak ({p.method}, {p.weight_bits}-bit weights, "
        f"micro-batch {p.memory.inputs.get('micro_batch')}, {p.memory.inputs.get('seq_len')} tokens), more than "
        f"{gpu_text(gpu)} provides ({where}).",
        fix=("; ".join(options) + ". " if options else "")
        + "Otherwise use " + (f"{need}x {gpu.memory_gb:g} GB GPUs with FSDP/ZeRO-3, " if need and need > gpu.count else "")
        + "a larger GPU, QLoRA, a smaller micro-batch (raise gradient accumulation) or a shorter max_length.",
        knowledge_ref="Memory components per finetuning-facts.md (weights by precision, optimizer state, activations, CUDA context); "
        "published figures: LLaMA-Factory README hardware table, Unsloth requirements",
    )]


@rule
def _within_budget(c: _Context) -> list[Pitfall]:
    hours, usd = c.stated.budget_hours, c.stated.budget_usd
    if not c.get("base_model") or not c.get("peft") or not c.get("hyperparameters") or not (hours or usd):
        return []
    gpu, _ = _target_gpu(c)
    p = try_plan(c.f, gpu=gpu)
    if p is None or p.hours is None:
        return []
    out = []
    if hours and gpu_hours(p) > float(hours.value) * 1.0001:
        options = tradeoffs(c.f, gpu, float(hours.value))
        out.append(Pitfall(
            id="plan-over-time-budget",
            section=_plan_section(c),
            severity="error",
            message=f"the plan takes about {gpu_hours(p):.1f} GPU hours ({p.gpu_count}x {p.gpu_card}), more than the "
            f"{float(hours.value):g} GPU hours stated in {source_name(hours.source)}.",
            fix="; ".join(options[1:4]) or "Fewer epochs, a shorter max_length, fewer examples, or more or faster GPUs.",
            knowledge_ref=gpus.THROUGHPUT_ASSUMPTIONS[:200],
        ))
    cost = p.cost or (p.cost_options[0] if p.cost_options else None)
    if usd and cost is not None and cost.usd_per_gpu_hour > 0 and cost.total_usd > float(usd.value):
        out.append(Pitfall(
            id="plan-over-money-budget",
            section=_plan_section(c),
            severity="error",
            message=f"the plan costs about ${cost.total_usd:,.0f} on {cost.platform_name}, more than the "
            f"${float(usd.value):,.0f} stated in {source_name(usd.source)}.",
            fix="Fewer epochs or examples, a shorter max_length, spot instances, or a cheaper platform or GPU.",
            knowledge_ref=f"GPU prices as of {cost.as_of} ({cost.source})",
        ))
    return out


_LICENSE_WORDS = {
    "apache-2.0": r"apache",
    "mit": r"\bmit\b",
    "llama": r"llama|\bmeta\b",
    "gemma": r"\bgemma\b",
    "qwen": r"\bqwen\b",
    "falcon-180b": r"falcon",
}
_PERMISSIVE = {"apache-2.0", "mit"}


def _licence_rules(constraints: list[str]) -> list[tuple[set[str], bool, str]]:
    """(licences named, True if they are the only ones allowed / False if excluded, the text)."""
    rules = []
    for text in constraints:
        low = text.lower()
        if not re.search(r"licen[cs]|open[ -]source|permissive", low):
            continue
        named = {lic for lic, pat in _LICENSE_WORDS.items() if re.search(pat, low)}
        if re.search(r"permissive|\bosi\b|open[ -]source", low):
            named |= _PERMISSIVE
        if not named:
            continue
        excluded = bool(re.search(r"\b(no|not|avoid|exclude|excluding|without)\b", low)) and "only" not in low
        rules.append((named, not excluded, text))
    return rules


def _licence_id(model_licence: str) -> str:
    """Map a licence as written ("Apache 2.0", "llama3.1") to the ids constraints are read into."""
    low = model_licence.lower()
    return next((lic for lic, pat in _LICENSE_WORDS.items() if re.search(pat, low)), low)


def _licence_in(model_licence: str, named: set[str]) -> bool:
    return _licence_id(model_licence) in named


@rule
def _licence_constraint(c: _Context) -> list[Pitfall]:
    base = c.get("base_model")
    constraints = [str(x) for x in (c.project.get("constraints") or [])]
    if not base or not constraints:
        return []
    spec = resolve_model(base)
    licence = str(base.get("license") or (spec.license if spec else ""))
    out = []
    for named, allow_only, text in _licence_rules(constraints) if licence else []:
        if _licence_in(licence, named) != allow_only:
            out.append(Pitfall(
                id="license-conflict",
                section="base_model",
                severity="error",
                message=f"the model's licence ({spec.license_name if spec else licence}) conflicts with the project constraint \"{text}\".",
                fix="Choose a model under an allowed licence (e.g. Mistral 7B, Qwen2.5 up to 32B: Apache-2.0; Phi-3/Phi-4: MIT), "
                "or get the constraint changed.",
                knowledge_ref="Seed step 4, Model Selection Criteria: License; model card licence of "
                + (spec.hf_repo if spec else str(base.get("name"))),
            ))
    needs_commercial = any(re.search(r"commercial", x.lower()) and not re.search(r"non-?commercial", x.lower()) for x in constraints)
    if needs_commercial and spec and not spec.commercial_use:
        out.append(Pitfall(
            id="license-conflict",
            section="base_model",
            severity="error",
            message=f"{spec.name}'s licence ({spec.license_name}) does not allow commercial use, which the project requires.",
            fix="Choose a model whose licence allows commercial use.",
            knowledge_ref=f"Model card licence of {spec.hf_repo}",
        ))
    return out


def check_pitfalls(
    decisions: dict[str, Any] | None,
    project: dict | None = None,
    gpu_gb: float | None = None,
    stated: Constraints | None = None,
) -> list[Pitfall]:
    """All pitfalls for the decided sections, errors first, in rule order otherwise.

    `stated`: the GPUs and budget the user stated; by default read from what each recorded
    decision keeps of the user's answer (its `context`) and the project's constraints.
    """
    stated = stated if stated is not None else from_decisions(decisions, project)
    ctx = _Context(f=section_fields(decisions), project=dict(project or {}), gpu_gb=gpu_gb, stated=stated)
    found: list[Pitfall] = []
    for r in RULES:
        found.extend(r(ctx))
    return sorted(found, key=lambda p: p.severity != "error")


def open_errors(decisions: dict[str, Any] | None, project: dict | None = None, stated: Constraints | None = None) -> list[Pitfall]:
    """Errors no recorded decision has acknowledged: each must be revisited or explicitly kept."""
    decisions = decisions or {}
    out = []
    for p in check_pitfalls(decisions, project, stated=stated):
        if p.severity != "error":
            continue
        d = decisions.get(p.section)
        acknowledged = d.get("warnings_acknowledged") or [] if isinstance(d, dict) else []
        if p.id not in acknowledged:
            out.append(p)
    return out
