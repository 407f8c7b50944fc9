"""Export the decisions as files the standard launchers run unchanged.

TRL: one flat YAML per stage for `trl sft --config sft.yaml` / `trl dpo --config dpo.yaml` (the keys
TRL's TrlParser reads into ScriptArguments, SFTConfig/DPOConfig, ModelConfig and
DatasetMixtureConfig; trl >= 1.0, transformers >= 5, peft >= 0.17), a merge step between SFT and
DPO for adapters, and `launch.sh`; a multi-GPU plan adds an `accelerate` config (FSDP2 or DeepSpeed
ZeRO-3). Axolotl: one config per stage, keys from Axolotl's documented config.

Every key is built as (key, value, source): the source names the recorded decision field the value
comes from, or the planning assumption behind it, and is written beside the key as a comment.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from agent.model_catalog import ALL_LINEAR, target_modules as family_modules
from agent.planning.memory import default_optimizer
from agent.planning.pitfalls import Pitfall, check_pitfalls
from agent.planning.plan import plan, resolve_model, section_fields

# The DPO stage of a combined run needs its own, much lower, rate (TRL DPOConfig 1e-6 for full
# models; ~5e-6 for LoRA-DPO per TRL's docs and Unsloth).
DPO_STAGE_LR = {"full": 1e-6, "lora": 5e-6, "qlora": 5e-6}
DEFAULT_DPO_BETA = 0.1  # TRL DPOConfig and the DPO paper

# HF Trainer optimizer names for the planner's optimizer choices.
HF_OPTIM = {"adamw": "adamw_torch", "adamw_8bit": "adamw_bnb_8bit",
            "paged_adamw_8bit": "paged_adamw_8bit", "paged_adamw_32bit": "paged_adamw_32bit"}

REQUIRED = ("base_model", "peft", "hyperparameters")
IDS = {"base_model": "tp-001", "training_approach": "tp-002", "training_data": "tp-003", "peft": "tp-004",
       "hyperparameters": "tp-005", "infrastructure": "tp-006"}

# transformers' decoder layer class per family: what FSDP wraps as one shard unit.
DECODER_LAYER = {
    "llama": "LlamaDecoderLayer", "mistral": "MistralDecoderLayer", "mixtral": "MixtralDecoderLayer",
    "qwen2": "Qwen2DecoderLayer", "qwen3": "Qwen3DecoderLayer", "gemma": "GemmaDecoderLayer",
    "gemma2": "Gemma2DecoderLayer", "gemma3": "Gemma3DecoderLayer", "phi3": "Phi3DecoderLayer",
    "falcon": "FalconDecoderLayer", "gpt2": "GPT2Block",
}
SHARDINGS = ("fsdp", "deepspeed-zero3")

TRL_FOLDER = "phase-2-training/trl"
AXOLOTL_FOLDER = "phase-2-training/axolotl"
MANIFEST = "export-manifest.json"
MERGE_SCRIPT = "merge_sft_adapter.py"
ACCELERATE_CONFIG = "accelerate.yaml"
LAUNCH = "launch.sh"


class ExportError(ValueError):
    """The decisions needed for a config are missing."""


@dataclass
class Entry:
    key: str
    value: Any
    source: str


@dataclass
class Export:
    """Files of one export (name -> text, relative to its folder) and the order they run in."""

    folder: str
    files: dict[str, str]
    steps: list[dict[str, Any]]
    entries: dict[str, list[Entry]] = field(default_factory=dict)  # file -> its keys with their sources
    notes: list[str] = field(default_factory=list)
    gpu_count: int = 1
    sharding: str | None = None

    def manifest(self, fingerprint: str) -> dict[str, Any]:
        return {"folder": self.folder, "fingerprint": fingerprint, "steps": self.steps,
                "gpu_count": self.gpu_count, "sharding": self.sharding, "notes": self.notes}


# ---------------------------------------------------------------- checks before exporting
def blocking_problems(decisions: dict[str, Any], project: dict | None = None,
                      acknowledged: list[str] | tuple[str, ...] = ()) -> list[Pitfall]:
    """Error-severity pitfalls of the plan that the user has not explicitly kept.

    `acknowledged` holds "tp-00x:pitfall-id" (the sidecar's warnings_acknowledged) or bare ids.
    """
    kept = {str(a) for a in acknowledged}
    out = []
    for p in check_pitfalls(decisions, project):
        if p.severity != "error":
            continue
        if p.id in kept or f"{IDS.get(p.section, '')}:{p.id}" in kept:
            continue
        out.append(p)
    return out


def fingerprint(decisions: dict[str, Any]) -> str:
    """A stable hash of the decided fields: exports and pre-flight reports carry it to detect staleness."""
    f = section_fields(decisions)
    text = json.dumps({s: f[s] for s in sorted(f)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- shared reading of the decisions
def _require(f: dict[str, dict]) -> None:
    missing = [s for s in REQUIRED if s not in f]
    if missing:
        raise ExportError(f"decide {', '.join(missing)} before exporting a training config")


def _src(section: str, name: str) -> str:
    return f"{IDS[section]} {section}.{name}"


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


def family_of(base: dict) -> str:
    spec = resolve_model(base)
    return str(base.get("family") or (spec.family if spec else "")).lower()


def _targets(base: dict, peft: dict) -> tuple[list[str] | str, str]:
    targets = list(peft.get("target_modules") or [])
    if ALL_LINEAR in targets:
        return ALL_LINEAR, _src("peft", "target_modules")
    if targets:
        return targets, _src("peft", "target_modules")
    mods = family_modules(family_of(base))
    if mods:
        return list(mods["all_linear"]), f"{_src('base_model', 'family')}: every linear layer (no target_modules recorded)"
    return ALL_LINEAR, "no target_modules recorded: peft's all-linear"


def stages_of(f: dict[str, dict]) -> list[str]:
    approach = (f.get("training_approach") or {}).get("approach", "sft")
    return {"sft": ["sft"], "dpo": ["dpo"], "combined": ["sft", "dpo"]}.get(approach, ["sft"])


def _run_name(f: dict[str, dict], stage: str) -> str:
    infra = f.get("infrastructure") or {}
    return f"{infra.get('experiment') or 'run'}-{stage}"


def output_dir(f: dict[str, dict], stage: str) -> str:
    return f"outputs/{_run_name(f, stage)}"


def _gpu_plan(f: dict[str, dict]) -> tuple[int, str | None]:
    """(GPU count the plan runs on, sharding it assumes for more than one)."""
    infra = f.get("infrastructure") or {}
    try:
        count = plan(f).gpu_count
    except (ValueError, KeyError, TypeError):
        count = int(infra.get("gpu_count") or 1)
    if count <= 1:
        return 1, None
    sharding = str(infra.get("sharding") or "fsdp").lower().replace("_", "-")
    if sharding in ("zero3", "zero-3", "deepspeed", "deepspeed-zero-3"):
        sharding = "deepspeed-zero3"
    return count, sharding if sharding in SHARDINGS else "fsdp"


_SPLIT_WORDS = {"train": ("train", "training"), "test": ("test", "testing", "eval", "evaluation"),
                "validation": ("validation", "valid", "dev", "val")}


def _split_of(path: str) -> str | None:
    """The split `datasets` infers from a file name (its keywords between - . _ space digits)."""
    words = {w for w in re.split(r"[-._ 0-9]+", posixpath.basename(path).lower()) if w}
    found = [split for split, keys in _SPLIT_WORDS.items() if words & set(keys)]
    return found[0] if len(found) == 1 else None


def data_paths(f: dict[str, dict], stage: str) -> tuple[str, str | None, str]:
    """(train file, eval file or None, source) of a stage.

    One recorded train/eval pair serves a single-stage plan. A combined plan's preference pairs
    live in a sibling folder (`data` -> `data-preferences`: never inside the SFT folder, which
    `datasets` reads recursively) unless `dpo_train_path` / `dpo_eval_path` are recorded.
    """
    data = f.get("training_data") or {}
    train = str(data.get("train_path") or "data/train.jsonl")
    evalp = data.get("eval_path") or None
    src = _src("training_data", "train_path")
    if stage == "dpo" and len(stages_of(f)) > 1:
        if data.get("dpo_train_path"):
            return str(data["dpo_train_path"]), data.get("dpo_eval_path") or None, _src("training_data", "dpo_train_path")

        def sibling(path: str) -> str:
            d = posixpath.dirname(path)
            return posixpath.join(f"{d}-preferences" if d else "preferences", posixpath.basename(path))

        train = sibling(train)
        evalp = sibling(str(evalp)) if evalp else None
        src += " (combined plan: preference pairs in the sibling -preferences folder)"
    return train, (str(evalp) if evalp else None), src


# ---------------------------------------------------------------- TRL
def _trl_data(f: dict[str, dict], stage: str) -> list[Entry]:
    data = f.get("training_data") or {}
    split = float(data.get("eval_split", 0.05) or 0)
    train, evalp, src = data_paths(f, stage)
    out: list[Entry] = []
    same_dir = evalp is not None and posixpath.dirname(train) == posixpath.dirname(evalp)
    eval_split_name = _split_of(evalp) if evalp else None
    folder = posixpath.dirname(train)
    if split > 0 and same_dir and folder not in ("", ".") and _split_of(train) == "train" and eval_split_name:
        # A folder with train and eval files: `datasets` loads both as splits, so eval uses the planned file.
        out.append(Entry("dataset_name", folder, f"{src} and eval_path: the folder holding both files "
                         "(datasets reads every file in it named train*/eval*)"))
        out.append(Entry("dataset_train_split", "train", f"{src}: file name {posixpath.basename(train)}"))
        out.append(Entry("dataset_test_split", eval_split_name,
                         f"{_src('training_data', 'eval_path')}: file name {posixpath.basename(evalp)}"))
        out.append(Entry("eval_strategy", "epoch", _src("training_data", "eval_split") + f" = {split:g}"))
    else:
        out.append(Entry("datasets", [{"path": "json", "data_files": train, "split": "train"}], src))
        if split > 0:
            out.append(Entry("test_split_size", split, _src("training_data", "eval_split")
                             + " (held out of the train file: the eval file's name or folder does not let TRL's script read it)"))
            out.append(Entry("eval_strategy", "epoch", _src("training_data", "eval_split") + f" = {split:g}"))
        else:
            out.append(Entry("eval_strategy", "no", _src("training_data", "eval_split") + " = 0"))
    return out


def _trl_stage(f: dict[str, dict], stage: str, stages: list[str], count: int, sharding: str | None) -> tuple[list[Entry], list[str]]:
    base, peft, hyper = f["base_model"], f["peft"], f["hyperparameters"]
    infra = f.get("infrastructure") or {}
    method, quant = peft.get("method", "lora"), peft.get("quantization", "none")
    notes: list[str] = []
    e: list[Entry] = []
    after_sft = stage == "dpo" and len(stages) > 1
    if after_sft:
        start = output_dir(f, "sft") + ("-merged" if method != "full" else "")
        e.append(Entry("model_name_or_path", start, "tp-002 training_approach.approach = combined: DPO starts from the SFT stage's output"
                       + (" (its adapter merged into the base)" if method != "full" else "")))
    else:
        e.append(Entry("model_name_or_path", base["name"], _src("base_model", "name")))
        e.append(Entry("model_revision", base.get("revision") or "main", _src("base_model", "revision")))
    # Full fine-tuning keeps fp32 master weights under bf16 autocast; adapters sit on a bf16 base.
    e.append(Entry("dtype", "float32" if method == "full" else "bfloat16",
                   _src("peft", "method") + f" = {method}: " + ("fp32 master weights" if method == "full" else "bf16 base weights")))
    if quant == "4bit":
        e += [Entry("load_in_4bit", True, _src("peft", "quantization") + " = 4bit"),
              Entry("bnb_4bit_quant_type", "nf4", _src("peft", "quantization") + ": NF4 (QLoRA paper)"),
              Entry("use_bnb_nested_quant", True, _src("peft", "quantization") + ": double quantization (QLoRA paper)")]
        if count > 1:
            e.append(Entry("bnb_4bit_quant_storage", "bfloat16", f"{_src('infrastructure', 'gpu_count')} = {count}: "
                           "sharding needs the 4-bit weights stored in the bf16 dtype of the rest"))
    elif quant == "8bit":
        e.append(Entry("load_in_8bit", True, _src("peft", "quantization") + " = 8bit"))
    if method != "full":
        targets, tsrc = _targets(base, peft)
        e += [Entry("use_peft", True, _src("peft", "method") + f" = {method}"),
              Entry("lora_r", int(peft["r"]), _src("peft", "r")),
              Entry("lora_alpha", int(peft["alpha"]), _src("peft", "alpha")),
              Entry("lora_dropout", float(peft.get("dropout") or 0.0), _src("peft", "dropout")),
              Entry("lora_target_modules", [targets] if isinstance(targets, str) else targets, tsrc),
              Entry("lora_task_type", "CAUSAL_LM", _src("base_model", "name") + ": a causal language model")]
        if family_of(base) == "gpt2":
            notes.append("GPT-2 stores weights transposed (Conv1D); peft sets fan_in_fan_out for it by itself")
    e += _trl_data(f, stage)
    lr, lr_src = float(hyper["learning_rate"]), _src("hyperparameters", "learning_rate")
    if after_sft:
        lr = DPO_STAGE_LR[method]
        lr_src = (f"tp-002 combined: the DPO stage's rate for {method} (TRL DPOConfig 1e-6 full; 5e-6 LoRA-DPO per TRL docs); "
                  f"the recorded {hyper['learning_rate']:g} is the SFT stage's")
        notes.append(f"the DPO stage uses learning_rate {lr:g}, not the SFT stage's {hyper['learning_rate']:g}: "
                     "DPO needs a 10-100x lower rate")
    batch = int(hyper["batch_size"])
    sharded_fsdp = sharding == "fsdp"
    e += [
        Entry("output_dir", output_dir(f, stage), _src("infrastructure", "experiment") + f" + stage {stage}"),
        Entry("run_name", _run_name(f, stage), _src("infrastructure", "experiment") + f" + stage {stage}"),
        Entry("learning_rate", lr, lr_src),
        Entry("per_device_train_batch_size", batch, _src("hyperparameters", "batch_size")),
        Entry("per_device_eval_batch_size", batch, _src("hyperparameters", "batch_size")),
        Entry("gradient_accumulation_steps", int(hyper.get("gradient_accumulation_steps") or 1),
              _src("hyperparameters", "gradient_accumulation_steps")),
        Entry("num_train_epochs", float(hyper["num_epochs"]), _src("hyperparameters", "num_epochs")),
        Entry("warmup_steps", float(hyper.get("warmup_ratio", 0.03)),
              _src("hyperparameters", "warmup_ratio") + " (below 1: a ratio of the total steps)"),
        Entry("weight_decay", float(hyper.get("weight_decay", 0.0)), _src("hyperparameters", "weight_decay")),
        Entry("max_length", int(hyper["max_length"]), _src("hyperparameters", "max_length")),
        # FSDP checkpoints activations itself (accelerate.yaml); both at once is refused by transformers.
        Entry("gradient_checkpointing", not sharded_fsdp,
              "the memory estimate assumes gradient checkpointing" + (" (done by FSDP here: accelerate.yaml)" if sharded_fsdp else "")),
        Entry("bf16", True, "the memory estimate assumes bf16 mixed precision"),
        Entry("optim", HF_OPTIM[default_optimizer(method)], _src("peft", "method") + f" = {method}: the optimizer the memory estimate assumes"),
        Entry("save_strategy", "epoch", _src("hyperparameters", "num_epochs") + ": one checkpoint per epoch"),
    ]
    report_to, env_var = _tracker(str(infra.get("tracking_tool") or ""))
    e.append(Entry("report_to", report_to, _src("infrastructure", "tracking_tool")))
    if env_var and infra.get("project"):
        e.append(Entry("env", {env_var: str(infra["project"])}, _src("infrastructure", "project")))
    if stage == "dpo":
        e.append(Entry("beta", float(hyper.get("dpo_beta") or DEFAULT_DPO_BETA),
                       _src("hyperparameters", "dpo_beta") if hyper.get("dpo_beta") else "TRL DPOConfig default beta (no dpo_beta recorded)"))
        e.append(Entry("loss_type", ["sigmoid"], "the DPO paper's loss (TRL's default)"))
        if hyper.get("reference_free"):
            notes.append("reference-free DPO was chosen; TRL's DPOConfig has no such switch: use a reference-free "
                         "variant (ORPO, or SimPO through CPOTrainer) or keep the reference model")
        if method != "full":
            notes.append("with an adapter, DPOTrainer uses the model with the adapter disabled as the reference")
    return e, notes


def _accelerate(f: dict[str, dict], count: int, sharding: str) -> list[Entry]:
    family = family_of(f["base_model"])
    layer = DECODER_LAYER.get(family)
    n_src = _src("infrastructure", "gpu_count") + f" = {count} (the plan's GPU count)"
    e = [Entry("compute_environment", "LOCAL_MACHINE", "one machine"),
         Entry("distributed_type", "FSDP" if sharding == "fsdp" else "DEEPSPEED",
               "the plan shards across GPUs (FSDP or DeepSpeed ZeRO-3, the memory estimate's assumption)"
               + (f"; {_src('infrastructure', 'sharding')}" if (f.get('infrastructure') or {}).get('sharding') else "")),
         Entry("mixed_precision", "bf16", "the memory estimate assumes bf16 mixed precision"),
         Entry("num_machines", 1, "one machine"), Entry("machine_rank", 0, "one machine"),
         Entry("num_processes", count, n_src), Entry("rdzv_backend", "static", "one machine"),
         Entry("same_network", True, "one machine"), Entry("use_cpu", False, "GPU training"),
         Entry("downcast_bf16", "no", "GPU training")]
    if sharding == "fsdp":
        fsdp: dict[str, Any] = {
            "fsdp_version": 2,
            "fsdp_reshard_after_forward": True,  # FULL_SHARD: weights, gradients and optimizer states sharded
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP" if layer else "SIZE_BASED_WRAP",
            "fsdp_activation_checkpointing": True,
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_sync_module_states": True,
            "fsdp_offload_params": False,
            "fsdp_state_dict_type": "FULL_STATE_DICT",
        }
        if layer:
            fsdp["fsdp_transformer_layer_cls_to_wrap"] = layer
        else:
            fsdp["fsdp_min_num_params"] = 100_000_000
        e.append(Entry("fsdp_config", fsdp, "full sharding (reshard_after_forward = FULL_SHARD) as the estimate assumes; "
                       f"auto-wrap of {_src('base_model', 'family')} = {family}'s decoder layer {layer or '(unknown: by size)'}; "
                       "activation checkpointing replaces gradient_checkpointing"))
    else:
        e.append(Entry("deepspeed_config", {
            "zero_stage": 3, "zero3_init_flag": True, "zero3_save_16bit_model": True,
            "offload_optimizer_device": "none", "offload_param_device": "none",
            "deepspeed_multinode_launcher": "standard"},
            "ZeRO-3 (weights, gradients and optimizer states sharded) as the estimate assumes; no CPU offload"))
    return e


def render_entries(entries: list[Entry], header: str) -> str:
    """YAML with each key's source as a comment; values are dumped by yaml so any text round-trips."""
    lines = [f"# {ln}" if ln else "#" for ln in header.splitlines()]
    for en in entries:
        text = yaml.safe_dump({en.key: en.value}, sort_keys=False, allow_unicode=True, width=10_000).rstrip("\n")
        src = en.source.replace("\n", " ")
        if "\n" in text:
            lines += [f"# {en.key}: {src}", text]
        else:
            lines.append(f"{text}  # {src}")
    return "\n".join(lines) + "\n"


def _merge_script(f: dict[str, dict]) -> str:
    src, dst = output_dir(f, "sft"), output_dir(f, "sft") + "-merged"
    return f'''"""Merge the SFT stage's adapter into its base model, so the DPO stage starts from the SFT model.

Exported by training-pipeline from the decisions (TP-002 combined approach). Run from the project folder.
"""

import torch
from peft import AutoPeftModelForCausalLM
from transformers import AutoTokenizer

SFT_OUTPUT = {src!r}
MERGED = {dst!r}

# The base is loaded unquantized in bf16: merging into 4-bit weights would round the update away.
model = AutoPeftModelForCausalLM.from_pretrained(SFT_OUTPUT, dtype=torch.bfloat16, low_cpu_mem_usage=True)
model.merge_and_unload().save_pretrained(MERGED)
AutoTokenizer.from_pretrained(SFT_OUTPUT).save_pretrained(MERGED)
print(f"merged {{SFT_OUTPUT}} into {{MERGED}}")
'''


def _launch_sh(steps: list[dict[str, Any]], folder: str, accel: bool) -> str:
    lines = ["#!/usr/bin/env bash",
             "# Exported by training-pipeline from the decisions (TP-001..TP-006): the training run, in order.",
             "# Run from anywhere: the commands run in the project folder (data and output paths are relative to it).",
             "# Needs: pip install 'trl>=1.0' 'transformers>=5' 'peft>=0.17' accelerate"
             + (" bitsandbytes" if any(s.get("needs_bnb") for s in steps) else "")
             + (" deepspeed" if any(s.get("needs_deepspeed") for s in steps) else ""),
             "set -euo pipefail",
             'cd "$(dirname "$0")/' + "/".join([".."] * len(folder.split("/"))) + '"',
             ""]
    for s in steps:
        if s["kind"] == "train":
            lines.append(f"# {s['stage'].upper()} stage")
            if accel:
                lines.append(f"accelerate launch --config_file {folder}/{ACCELERATE_CONFIG} -m trl.scripts.{s['script']} "
                             f"--config {folder}/{s['config']}")
            else:
                lines.append(f"trl {s['script']} --config {folder}/{s['config']}")
        else:
            lines.append("# merge the SFT adapter into the base model: the DPO stage starts from the result")
            lines.append(f"python {folder}/{s['file']}")
        lines.append("")
    return "\n".join(lines)


def export_trl(decisions: dict[str, Any], folder: str = TRL_FOLDER) -> Export:
    """Per-stage TRL configs, the merge step, launch.sh and (multi-GPU) accelerate.yaml."""
    f = section_fields(decisions)
    _require(f)
    stages = stages_of(f)
    count, sharding = _gpu_plan(f)
    method = f["peft"].get("method", "lora")
    files: dict[str, str] = {}
    entries: dict[str, list[Entry]] = {}
    steps: list[dict[str, Any]] = []
    notes: list[str] = []
    header = ("Exported by training-pipeline from the decisions (TP-001..TP-006); each key's source is beside it.\n"
              "Run: trl {script} --config {path}" + (" (multi-GPU: see launch.sh)" if count > 1 else ""))
    for stage in stages:
        if stage == "dpo" and len(stages) > 1 and method != "full":
            files[MERGE_SCRIPT] = _merge_script(f)
            steps.append({"kind": "merge", "file": MERGE_SCRIPT, "output": output_dir(f, "sft") + "-merged"})
        es, n = _trl_stage(f, stage, stages, count, sharding)
        name = f"{stage}.yaml"
        files[name] = render_entries(es, header.format(script=stage, path=f"{folder}/{name}"))
        entries[name] = es
        notes += [x for x in n if x not in notes]
        train, evalp, _ = data_paths(f, stage)
        steps.append({"kind": "train", "stage": stage, "script": stage, "config": name,
                      "train_file": train, "eval_file": evalp,
                      "model_from_stage": stage == "dpo" and len(stages) > 1,
                      "needs_bnb": f["peft"].get("quantization") in ("4bit", "8bit") or method == "qlora",
                      "needs_deepspeed": sharding == "deepspeed-zero3"})
    if count > 1 and sharding:
        es = _accelerate(f, count, sharding)
        files[ACCELERATE_CONFIG] = render_entries(
            es, "accelerate config exported by training-pipeline from the decisions; used by launch.sh")
        entries[ACCELERATE_CONFIG] = es
    files[LAUNCH] = _launch_sh(steps, folder, accel=count > 1)
    ex = Export(folder=folder, files=files, steps=steps, entries=entries, notes=notes, gpu_count=count, sharding=sharding)
    files[MANIFEST] = json.dumps(ex.manifest(fingerprint(decisions)), indent=2) + "\n"
    return ex


# ---------------------------------------------------------------- Axolotl
def _axolotl_doc(f: dict[str, dict], stage: str, prev_output: str | None, count: int, sharding: str | None) -> dict[str, Any]:
    base, peft, hyper = f["base_model"], f["peft"], f["hyperparameters"]
    data, infra = f.get("training_data") or {}, f.get("infrastructure") or {}
    method, quant = peft.get("method", "lora"), peft.get("quantization", "none")
    doc: dict[str, Any] = {"base_model": base["name"]}
    if (base.get("revision") or "main") != "main":
        doc["revision_of_model"] = base["revision"]
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
        targets, _ = _targets(base, peft)
        if targets == ALL_LINEAR:
            doc["lora_target_linear"] = True
        else:
            doc["lora_target_modules"] = targets
        if family_of(base) == "gpt2":
            doc["lora_fan_in_fan_out"] = True
    elif prev_output:
        doc["base_model"] = prev_output
    train, evalp, _ = data_paths(f, stage)
    if stage == "dpo":
        doc["rl"] = "dpo"
        doc["rl_beta"] = float(hyper.get("dpo_beta") or DEFAULT_DPO_BETA)  # Axolotl's current name (dpo_beta is deprecated)
        # A user-defined pair format: JSONL with prompt, chosen and rejected fields.
        ds_type: Any = {"field_prompt": "prompt", "field_chosen": "chosen", "field_rejected": "rejected",
                        "prompt_format": "{prompt}", "chosen_format": "{chosen}", "rejected_format": "{rejected}"}
        doc["sample_packing"] = False
    else:
        # The same JSONL the TRL export reads: prompt and completion fields.
        ds_type = {"field_instruction": "prompt", "field_output": "completion",
                   "format": "{instruction}", "no_input_format": "{instruction}"}
    doc["datasets"] = [{"path": train, "ds_type": "json", "split": "train", "type": ds_type}]
    split = float(data.get("eval_split", 0.05) or 0)
    if evalp and split > 0:
        # Axolotl takes either an eval file or a held-out fraction; the plan holds the fraction out into eval_path.
        doc["test_datasets"] = [{"path": evalp, "ds_type": "json", "split": "train", "type": dict(ds_type)}]
        doc["val_set_size"] = 0.0
    else:
        doc["val_set_size"] = split
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
    doc["gradient_checkpointing"] = sharding != "fsdp"
    doc["bf16"] = "auto"
    doc["output_dir"] = f"./{output_dir(f, stage)}"
    if count > 1 and sharding == "fsdp":
        layer = DECODER_LAYER.get(family_of(base))
        doc["fsdp_version"] = 2
        doc["fsdp_config"] = {"offload_params": False, "cpu_ram_efficient_loading": True,
                              "auto_wrap_policy": "TRANSFORMER_BASED_WRAP" if layer else "SIZE_BASED_WRAP",
                              **({"transformer_layer_cls_to_wrap": layer} if layer else {"min_num_params": 100_000_000}),
                              "state_dict_type": "FULL_STATE_DICT", "reshard_after_forward": True,
                              "activation_checkpointing": True}
    elif count > 1:
        doc["deepspeed"] = "deepspeed_configs/zero3_bf16.json"  # Axolotl's ZeRO-3 bf16 config (axolotl fetch deepspeed_configs)
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


def axolotl_docs(decisions: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(stage, Axolotl config) in run order; a combined plan's DPO stage continues from the SFT output."""
    f = section_fields(decisions)
    _require(f)
    count, sharding = _gpu_plan(f)
    out, prev = [], None
    for stage in stages_of(f):
        doc = _axolotl_doc(f, stage, prev, count, sharding)
        prev = doc["output_dir"]
        out.append((stage, doc))
    return out


def export_axolotl(decisions: dict[str, Any], folder: str = AXOLOTL_FOLDER) -> Export:
    """One Axolotl config per stage, a launch.sh running them in order."""
    docs = axolotl_docs(decisions)
    count, sharding = _gpu_plan(section_fields(decisions))
    files: dict[str, str] = {}
    steps = []
    for stage, doc in docs:
        name = f"{stage}.yaml"
        header = ("# Axolotl config exported by training-pipeline from the decisions (decision-log.md, TP-001..TP-006).\n"
                  f"# Run: axolotl train {folder}/{name}" + (" (after the SFT stage)" if stage == "dpo" and len(docs) > 1 else "") + "\n")
        files[name] = header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
        steps.append({"kind": "train", "stage": stage, "config": name})
    launch = ["#!/usr/bin/env bash", "# Exported by training-pipeline: the Axolotl stages in order, run in the project folder.",
              "set -euo pipefail", 'cd "$(dirname "$0")/../.."', ""]
    if sharding == "deepspeed-zero3":
        launch += ["axolotl fetch deepspeed_configs", ""]
    launch += [f"axolotl train {folder}/{s['config']}" for s in steps]
    files[LAUNCH] = "\n".join(launch) + "\n"
    ex = Export(folder=folder, files=files, steps=steps, gpu_count=count, sharding=sharding)
    files[MANIFEST] = json.dumps(ex.manifest(fingerprint(decisions)), indent=2) + "\n"
    return ex
