"""phase-2-training/templates/training-config.template.yaml (seed section 10).

Same keys, order and comments as the seed's template. Decided values are filled in,
undecided ones stay `{{PLACEHOLDER}}`, quoted: a bare `{{X}}` is a YAML flow mapping
and would not load.
"""

from __future__ import annotations

from typing import Any

from agent.artifacts.common import APPROACH_LABELS, approach_of, fields_of, uses_dpo
from agent.artifacts.yaml_scalar import boolean, number, plain_or_quoted, quoted

# The seed's attention modules: shown only while the PEFT decision is open.
DEFAULT_TARGET_MODULES = ("q_proj", "v_proj", "k_proj", "o_proj")


def _placeholder(name: str) -> str:
    return quoted("{{" + name + "}}")


def _text(f: dict[str, Any] | None, key: str, name: str) -> str:
    if f is None or f.get(key) is None:
        return _placeholder(name)
    return quoted(str(f[key]))


def _num(f: dict[str, Any] | None, key: str, name: str) -> str:
    if f is None:
        return _placeholder(name)
    value = f.get(key)
    return "null  # not set" if value is None else number(value)


def _flag(f: dict[str, Any] | None, key: str, name: str) -> str:
    if f is None:
        return _placeholder(name)
    value = f.get(key)
    return "null  # not set" if value is None else boolean(bool(value))


def _lora_lines(peft: dict[str, Any] | None) -> list[str]:
    if peft is not None and peft.get("method") == "full":
        return [
            "  r: null  # full fine-tuning (TP-004): no LoRA adapter, all weights are trained",
            "  alpha: null",
            "  dropout: null",
            "  target_modules: []",
        ]
    modules = DEFAULT_TARGET_MODULES if peft is None else tuple(peft.get("target_modules") or ())
    lines = [
        f"  r: {_num(peft, 'r', 'LORA_RANK')}",
        f"  alpha: {_num(peft, 'alpha', 'LORA_ALPHA')}",
        f"  dropout: {_num(peft, 'dropout', 'LORA_DROPOUT')}",
    ]
    if not modules:
        return lines + ["  target_modules: []"]
    return lines + ["  target_modules:"] + [f"    - {plain_or_quoted(str(m))}" for m in modules]


def _dpo_lines(approach: str | None, hp: dict[str, Any] | None) -> list[str]:
    if approach is not None and not uses_dpo(approach):
        return [
            f"    beta: null  # not used: the approach (TP-002) is {APPROACH_LABELS.get(approach, 'without DPO')}",
            "    reference_free: null",
        ]
    # DPO is (or may be) part of the approach: values once hyperparameters are decided.
    return [
        f"    beta: {_num(hp, 'dpo_beta', 'DPO_BETA')}",
        f"    reference_free: {_flag(hp, 'reference_free', 'REF_FREE')}",
    ]


def render_config_template(decisions: dict[str, dict[str, Any]], project: dict[str, Any]) -> str:
    base = fields_of(decisions, "base_model")
    data = fields_of(decisions, "training_data")
    peft = fields_of(decisions, "peft")
    hp = fields_of(decisions, "hyperparameters")
    infra = fields_of(decisions, "infrastructure")
    approach = approach_of(decisions)
    approach_value = _placeholder("TRAINING_APPROACH") if approach is None else quoted(approach)

    header = [
        "# Training Configuration",
        "# Decision reference: See decision-log.md#TP-001..TP-006",
    ]
    if project.get("name"):
        header.append(f"# Project: {quoted(str(project['name']))}")
    lines = header + [
        "",
        "# Base Model",
        "model:",
        f"  name: {_text(base, 'name', 'BASE_MODEL')}",
        f"  revision: {_text(base, 'revision', 'MODEL_REVISION')}",
        f"  quantization: {_text(peft, 'quantization', 'QUANTIZATION')}  # none | 4bit | 8bit",
        "",
        "# LoRA Configuration",
        "lora:",
        *_lora_lines(peft),
        "",
        "# Training Parameters",
        "training:",
        f"  approach: {approach_value}  # sft | dpo | combined",
        "",
        "  # Common parameters",
        f"  learning_rate: {_num(hp, 'learning_rate', 'LEARNING_RATE')}",
        f"  batch_size: {_num(hp, 'batch_size', 'BATCH_SIZE')}",
        f"  gradient_accumulation_steps: {_num(hp, 'gradient_accumulation_steps', 'GRAD_ACCUM')}",
        f"  num_epochs: {_num(hp, 'num_epochs', 'NUM_EPOCHS')}",
        f"  warmup_ratio: {_num(hp, 'warmup_ratio', 'WARMUP_RATIO')}",
        f"  weight_decay: {_num(hp, 'weight_decay', 'WEIGHT_DECAY')}",
        "",
        "  # DPO-specific (if applicable)",
        "  dpo:",
        *_dpo_lines(approach, hp),
        "",
        "# Data",
        "data:",
        f"  train_path: {_text(data, 'train_path', 'TRAIN_DATA_PATH')}",
        f"  eval_path: {_text(data, 'eval_path', 'EVAL_DATA_PATH')}",
        f"  max_length: {_num(hp, 'max_length', 'MAX_LENGTH')}",
        "",
        "# Infrastructure",
        "infrastructure:",
        f"  platform: {_text(infra, 'platform', 'PLATFORM')}",
        f"  instance_type: {_text(infra, 'instance_type', 'INSTANCE_TYPE')}",
        f"  spot_instances: {_flag(infra, 'spot_instances', 'USE_SPOT')}",
        "",
        "# Tracking",
        "tracking:",
        f"  tool: {_text(infra, 'tracking_tool', 'TRACKING_TOOL')}",
        f"  project: {_text(infra, 'project', 'PROJECT_NAME')}",
        f"  experiment: {_text(infra, 'experiment', 'EXPERIMENT_NAME')}",
    ]
    return "\n".join(lines) + "\n"
