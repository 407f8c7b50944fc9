"""Export the decisions as runnable training configs: TRL/peft keyword arguments or an Axolotl YAML.

TRL output targets current releases (trl >= 1.0, transformers >= 5, peft >= 0.17): warmup is
given as a ratio through `warmup_steps` (a float below 1), and the model dtype through
`model_init_kwargs["dtype"]`. Axolotl output uses only keys from Axolotl's documented config.
"""

from __future__ import annotations

from typing import Any

import yaml

from agent.model_catalog import ALL_LINEAR, target_modules as family_modules
from agent.planning.memory import default_optimizer
from agent.planning.plan import resolve_model, section_fields

# The DPO stage of a combined run needs its own, much lower, rate (TRL DPOConfig 1e-6 for full
# models; ~5e-6 for LoRA-DPO per TRL's docs and Unsloth).
DPO_STAGE_LR = {"full": 1e-6, "lora": 5e-6, "qlora": 5e-6}
DEFAULT_DPO_BETA = 0.1  # TRL DPOConfig and the DPO paper

# HF Trainer optimizer names for the planner's optimizer choices.
HF_OPTIM = {"adamw": "adamw_torch", "adamw_8bit": "adamw_bnb_8bit",
            "paged_adamw_8bit": "paged_adamw_8bit", "paged_adamw_32bit": "paged_adamw_32bit"}

REQUIRED = ("base_model", "peft", "hyperparameters")


class ExportError(ValueError):
    """The decisions needed for a config are missing."""


def _tracker(tool: str) -> tuple[str, str | None]:
    """(report_to value, environment variable naming the project) for a tracking tool's name."""
    t = (tool or "").lower()
    if "wandb" in t or "weights" in t:
        return "wandb", "WANDB_PROJECT"
    if "comet" in t:
        return "comet_ml", "COMET_PROJECT_NAME"
    if "mlflow" in t:
        return "mlflow", "MLFLOW_EXPERIMENT_NAME"
    if "tensorboard" in t:
        return "tensorboard", None
    if "trackio" in t:
        return "trackio", "TRACKIO_PROJECT"
    return "none", None


def _require(f: dict[str, dict]) -> None:
    missing = [s for s in REQUIRED if s not in f]
    if missing:
        raise ExportError(f"decide {', '.join(missing)} before exporting a training config")


def _targets(base: dict, peft: dict) -> list[str] | str:
    targets = list(peft.get("target_modules") or [])
    if ALL_LINEAR in targets:
        return ALL_LINEAR
    if targets:
        return targets
    spec = resolve_model(base)
    mods = family_modules(base.get("family") or (spec.family if spec else ""))
    return list(mods["all_linear"]) if mods else ALL_LINEAR


def _stages(f: dict[str, dict]) -> list[str]:
    approach = (f.get("training_approach") or {}).get("approach", "sft")
    return {"sft": ["sft"], "dpo": ["dpo"], "combined": ["sft", "dpo"]}.get(approach, ["sft"])


def _run_name(f: dict[str, dict], stage: str) -> str:
    infra = f.get("infrastructure") or {}
    return f"{infra.get('experiment') or 'run'}-{stage}"


def export_trl(decisions: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for TRL's SFTConfig/DPOConfig, peft's LoraConfig and BitsAndBytesConfig.

    Use: SFTTrainer(model=model_name, args=SFTConfig(**sft_config), train_dataset=...,
    peft_config=LoraConfig(**lora_config), quantization_config=BitsAndBytesConfig(**bnb_config)).
    """
    f = section_fields(decisions)
    _require(f)
    base, peft, hyper = f["base_model"], f["peft"], f["hyperparameters"]
    data, infra = f.get("training_data") or {}, f.get("infrastructure") or {}
    method = peft.get("method", "lora")
    quant = peft.get("quantization", "none")
    spec = resolve_model(base)
    family = base.get("family") or (spec.family if spec else "")
    report_to, env_var = _tracker(str(infra.get("tracking_tool") or ""))
    eval_split = float(data.get("eval_split", 0.05) or 0)
    notes: list[str] = []

    bnb = None
    if quant == "4bit":
        bnb = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
               "bnb_4bit_compute_dtype": "bfloat16"}
    elif quant == "8bit":
        bnb = {"load_in_8bit": True}

    lora = None
    if method != "full":
        lora = {
            "r": int(peft["r"]),
            "lora_alpha": int(peft["alpha"]),
            "lora_dropout": float(peft.get("dropout") or 0.0),
            "target_modules": _targets(base, peft),
            "bias": "none",
            "task_type": "CAUSAL_LM",
        }
        if family == "gpt2":
            lora["fan_in_fan_out"] = True  # GPT-2's Conv1D layers store weights transposed

    # Full fine-tuning trains fp32 master weights under bf16 autocast; adapters sit on a bf16 base.
    dtype = "float32" if method == "full" else "bfloat16"
    common = {
        "per_device_train_batch_size": int(hyper["batch_size"]),
        "per_device_eval_batch_size": int(hyper["batch_size"]),
        "gradient_accumulation_steps": int(hyper.get("gradient_accumulation_steps") or 1),
        "num_train_epochs": float(hyper["num_epochs"]),
        "warmup_steps": float(hyper.get("warmup_ratio", 0.03)),  # a float < 1 is a ratio of total steps
        "weight_decay": float(hyper.get("weight_decay", 0.0)),
        "max_length": int(hyper["max_length"]),
        "gradient_checkpointing": True,
        "bf16": True,
        "optim": HF_OPTIM[default_optimizer(method)],
        "logging_steps": 10,
        "eval_strategy": "epoch" if eval_split > 0 else "no",
        "save_strategy": "epoch",
        "report_to": report_to,
        "model_init_kwargs": {"dtype": dtype, "revision": base.get("revision") or "main"},
    }
    stages = _stages(f)
    out: dict[str, Any] = {
        "model_name": base["name"],
        "revision": base.get("revision") or "main",
        "stages": stages,
        "sft_config": None,
        "dpo_config": None,
        "lora_config": lora,
        "bnb_config": bnb,
        "data": {"train_path": data.get("train_path", "data/train.jsonl"),
                 "eval_path": data.get("eval_path", "data/eval.jsonl"), "eval_split": eval_split},
        "env": {env_var: str(infra.get("project"))} if env_var and infra.get("project") else {},
        "requires": ["trl>=1.0", "transformers>=5", "peft>=0.17"] + (["bitsandbytes"] if bnb else []),
        "notes": notes,
    }
    if "sft" in stages:
        out["sft_config"] = {
            "output_dir": f"outputs/{_run_name(f, 'sft')}",
            "run_name": _run_name(f, "sft"),
            "learning_rate": float(hyper["learning_rate"]),
            **common,
        }
    if "dpo" in stages:
        lr = float(hyper["learning_rate"])
        if len(stages) > 1:
            lr = DPO_STAGE_LR[method]
            notes.append(f"the DPO stage uses learning_rate {lr:g}, not the SFT stage's {hyper['learning_rate']:g}: "
                         "DPO needs a 10-100x lower rate")
        out["dpo_config"] = {
            "output_dir": f"outputs/{_run_name(f, 'dpo')}",
            "run_name": _run_name(f, "dpo"),
            "learning_rate": lr,
            "beta": float(hyper.get("dpo_beta") or DEFAULT_DPO_BETA),
            "loss_type": "sigmoid",
            **common,
        }
        if len(stages) > 1:
            out["dpo_model"] = out["sft_config"]["output_dir"]
            notes.append("the DPO stage starts from the SFT stage's output (merge its adapter, or load it as the model)")
        if hyper.get("reference_free"):
            notes.append("reference-free DPO was chosen; TRL's DPOConfig has no such switch: use a reference-free "
                         "variant (ORPO, or SimPO through CPOTrainer) or keep the reference model")
        if method != "full":
            notes.append("with an adapter, DPOTrainer uses the base model with the adapter disabled as the reference")
    if eval_split > 0:
        notes.append(f"hold out {eval_split:.0%} of the data as the eval dataset ({out['data']['eval_path']})")
    return out


def _axolotl_doc(f: dict[str, dict], stage: str, prev_output: str | None) -> dict[str, Any]:
    base, peft, hyper = f["base_model"], f["peft"], f["hyperparameters"]
    data, infra = f.get("training_data") or {}, f.get("infrastructure") or {}
    method, quant = peft.get("method", "lora"), peft.get("quantization", "none")
    doc: dict[str, Any] = {"base_model": base["name"]}
    if (base.get("revision") or "main") != "main":
        doc["model_revision"] = base["revision"]
    if quant == "4bit":
        doc["load_in_4bit"] = True
    elif quant == "8bit":
        doc["load_in_8bit"] = True
    if method != "full":
        # Axolotl's "qlora" adapter means a 4-bit base; LoRA over an 8-bit base is "lora" + load_in_8bit.
        doc["adapter"] = "qlora" if quant == "4bit" else "lora"
        if prev_output:
            doc["lora_model_dir"] = prev_output  # continue from the SFT stage's adapter
        doc["lora_r"] = int(peft["r"])
        doc["lora_alpha"] = int(peft["alpha"])
        doc["lora_dropout"] = float(peft.get("dropout") or 0.0)
        targets = _targets(base, peft)
        if targets == ALL_LINEAR:
            doc["lora_target_linear"] = True
        else:
            doc["lora_target_modules"] = targets
        if (base.get("family") or "") == "gpt2":
            doc["lora_fan_in_fan_out"] = True
    elif prev_output:
        doc["base_model"] = prev_output
    train_path = data.get("train_path", "data/train.jsonl")
    if stage == "dpo":
        doc["rl"] = "dpo"
        doc["rl_beta"] = float(hyper.get("dpo_beta") or DEFAULT_DPO_BETA)  # Axolotl's current name (dpo_beta is deprecated)
        # A user-defined pair format: JSONL with prompt, chosen and rejected fields.
        doc["datasets"] = [{"path": train_path, "ds_type": "json", "split": "train",
                            "type": {"field_prompt": "prompt", "field_chosen": "chosen", "field_rejected": "rejected",
                                     "prompt_format": "{prompt}", "chosen_format": "{chosen}",
                                     "rejected_format": "{rejected}"}}]
        doc["sample_packing"] = False
    else:
        # Alpaca-style JSONL: instruction, input (optional), output.
        doc["datasets"] = [{"path": train_path, "ds_type": "json", "type": "alpaca"}]
    doc["val_set_size"] = float(data.get("eval_split", 0.05) or 0)
    doc["sequence_len"] = int(hyper["max_length"])
    doc["micro_batch_size"] = int(hyper["batch_size"])
    doc["gradient_accumulation_steps"] = int(hyper.get("gradient_accumulation_steps") or 1)
    doc["num_epochs"] = float(hyper["num_epochs"])
    lr = float(hyper["learning_rate"])
    if stage == "dpo" and prev_output is not None:
        lr = DPO_STAGE_LR[method]
    doc["learning_rate"] = lr
    doc["warmup_ratio"] = float(hyper.get("warmup_ratio", 0.03))
    doc["weight_decay"] = float(hyper.get("weight_decay", 0.0))
    doc["optimizer"] = HF_OPTIM[default_optimizer(method)]
    doc["gradient_checkpointing"] = True
    doc["bf16"] = "auto"
    doc["output_dir"] = f"./outputs/{_run_name(f, stage)}"
    report_to, _ = _tracker(str(infra.get("tracking_tool") or ""))
    project = str(infra.get("project") or "")
    if report_to == "wandb":
        doc["wandb_project"] = project
        doc["wandb_name"] = _run_name(f, stage)
    elif report_to == "comet_ml":
        doc["use_comet"] = True
        doc["comet_project_name"] = project
    elif report_to == "mlflow":
        doc["use_mlflow"] = True
        doc["mlflow_experiment_name"] = project
        doc["mlflow_run_name"] = _run_name(f, stage)
    return doc


def export_axolotl(decisions: dict[str, Any]) -> str:
    """Axolotl config YAML; a combined approach gives two documents (SFT, then DPO from its output)."""
    f = section_fields(decisions)
    _require(f)
    stages = _stages(f)
    docs, prev = [], None
    for stage in stages:
        doc = _axolotl_doc(f, stage, prev)
        prev = doc["output_dir"]
        docs.append(doc)
    header = (
        "# Axolotl config exported from the Phase 2 training-pipeline decisions (decision-log.md, TP-001..TP-006).\n"
        "# Run: axolotl train <this file>" + (" (one stage per document: split them, SFT first)" if len(docs) > 1 else "")
        + "\n"
    )
    body = "---\n".join(yaml.safe_dump(d, sort_keys=False, allow_unicode=True) for d in docs)
    return header + body
