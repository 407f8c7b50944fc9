"""TRL/peft and Axolotl exports; the TRL kwargs are loaded into the real classes when installed."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from agent.planning.export import ExportError, axolotl_docs, blocking_problems, export_axolotl, export_trl

DECISIONS = {
    "base_model": {"model_id": "mistral-7b-v0.3", "name": "mistralai/Mistral-7B-v0.3", "revision": "main",
                   "params_b": 7.25, "license": "apache-2.0", "context_length": 32768, "family": "mistral"},
    "training_approach": {"approach": "sft"},
    "training_data": {"source": "tickets", "sft_examples": 10000, "eval_split": 0.05,
                      "train_path": "data/train.jsonl", "eval_path": "data/eval.jsonl"},
    "peft": {"method": "qlora", "quantization": "4bit", "r": 16, "alpha": 32, "dropout": 0.05,
             "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
    "hyperparameters": {"learning_rate": 2e-4, "batch_size": 2, "gradient_accumulation_steps": 8,
                        "num_epochs": 3, "warmup_ratio": 0.03, "weight_decay": 0.0, "max_length": 2048,
                        "dpo_beta": 0.1},
    "infrastructure": {"platform": "AWS SageMaker", "instance_type": "ml.g5.2xlarge", "gpu_count": 1,
                       "spot_instances": True, "tracking_tool": "Weights & Biases", "project": "support-bot",
                       "experiment": "qlora-v1"},
}

# Keys from Axolotl's documented config reference (docs/config-reference, utils/schemas/*).
AXOLOTL_KEYS = {
    "base_model", "revision_of_model", "test_datasets", "fsdp_version", "fsdp_config", "deepspeed", "load_in_4bit", "load_in_8bit", "adapter", "lora_model_dir", "lora_r",
    "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_linear", "lora_fan_in_fan_out", "rl",
    "rl_beta", "datasets", "sample_packing", "val_set_size", "sequence_len", "micro_batch_size",
    "gradient_accumulation_steps", "num_epochs", "learning_rate", "warmup_ratio", "weight_decay", "optimizer",
    "gradient_checkpointing", "bf16", "output_dir", "wandb_project", "wandb_name", "use_comet",
    "comet_project_name", "use_mlflow", "mlflow_experiment_name", "mlflow_run_name",
}


def variant(**sections):
    d = copy.deepcopy(DECISIONS)
    for name, changes in sections.items():
        d[name] = {**d[name], **changes}
    return d


def _yaml(ex, name):
    return yaml.safe_load(ex.files[name])


def test_trl_qlora_sft_is_flat_trl_cli_config():
    ex = export_trl(DECISIONS)
    assert set(ex.files) == {"sft.yaml", "launch.sh", "export-manifest.json"}
    sft = _yaml(ex, "sft.yaml")
    assert sft["model_name_or_path"] == "mistralai/Mistral-7B-v0.3" and sft["load_in_4bit"] is True
    assert sft["bnb_4bit_quant_type"] == "nf4" and sft["use_bnb_nested_quant"] is True and sft["dtype"] == "bfloat16"
    assert sft["use_peft"] and sft["lora_r"] == 16 and sft["lora_alpha"] == 32
    assert sft["lora_target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert sft["learning_rate"] == 2e-4 and sft["per_device_train_batch_size"] == 2
    assert sft["gradient_accumulation_steps"] == 8 and sft["max_length"] == 2048
    assert sft["optim"] == "paged_adamw_32bit" and sft["report_to"] == "wandb"
    assert sft["env"] == {"WANDB_PROJECT": "support-bot"}
    # The planned eval file is read as the test split of the data folder.
    assert (sft["dataset_name"], sft["dataset_train_split"], sft["dataset_test_split"]) == ("data", "train", "test")
    assert "trl sft --config phase-2-training/trl/sft.yaml" in ex.files["launch.sh"]


def test_every_exported_value_comes_from_a_recorded_decision():
    """Each key whose source names a decision field carries that field's value (or its documented transform)."""
    plans = [DECISIONS, variant(training_approach={"approach": "combined"}, training_data={"dpo_pairs": 5000}),
             variant(peft={"method": "full", "quantization": "none", "r": None, "alpha": None, "target_modules": []}),
             variant(infrastructure={"instance_type": "p4d.24xlarge", "gpu_count": 8})]
    for d in plans:
        ex = export_trl(d)
        assert ex.entries
        for name, entries in ex.entries.items():
            loaded = _yaml(ex, name)
            for e in entries:
                assert loaded[e.key] == e.value, (name, e.key)  # the file says what the entry says
                m = re.match(r"(tp-00\d) (\w+)\.(\w+)( = .*)?$", e.source)
                if not m or e.key in ("dtype", "use_peft", "eval_strategy", "optim", "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type",
                                      "use_bnb_nested_quant", "bnb_4bit_quant_storage", "lora_task_type", "save_strategy"):
                    assert e.source, e.key  # a planning assumption, named
                    continue
                section, fld = m.group(2), m.group(3)
                recorded = d[section][fld]
                if e.key == "num_processes":
                    continue  # the plan's GPU count for the recorded instance
                if e.key == "env":
                    assert list(e.value.values()) == [recorded]
                elif e.key == "model_name_or_path" and recorded == "combined":
                    assert e.value == export_dir_of(d, "sft") + ("-merged" if d["peft"]["method"] != "full" else "")
                elif e.key == "report_to":
                    assert (recorded, e.value) == ("Weights & Biases", "wandb")
                elif e.key in ("output_dir", "run_name"):
                    assert recorded in e.value
                elif isinstance(recorded, list) and e.key == "lora_target_modules":
                    assert e.value == recorded
                else:
                    assert e.value == recorded or float(e.value) == float(recorded), (name, e.key, e.value, recorded)


def export_dir_of(d, stage):
    return f"outputs/{d['infrastructure']['experiment']}-{stage}"


def test_trl_full_and_dpo_and_combined():
    full = export_trl(variant(peft={"method": "full", "quantization": "none", "r": None, "alpha": None,
                                    "target_modules": []}))
    sft = _yaml(full, "sft.yaml")
    assert "use_peft" not in sft and "load_in_4bit" not in sft and sft["dtype"] == "float32" and sft["bf16"] is True
    dpo = export_trl(variant(training_approach={"approach": "dpo"}, hyperparameters={"learning_rate": 5e-6}))
    assert set(dpo.files) == {"dpo.yaml", "launch.sh", "export-manifest.json"}
    d = _yaml(dpo, "dpo.yaml")
    assert d["beta"] == 0.1 and d["learning_rate"] == 5e-6 and d["model_name_or_path"] == "mistralai/Mistral-7B-v0.3"
    combined = export_trl(variant(training_approach={"approach": "combined"}))
    assert [s["kind"] for s in combined.steps] == ["train", "merge", "train"]
    s, d = _yaml(combined, "sft.yaml"), _yaml(combined, "dpo.yaml")
    assert s["learning_rate"] == 2e-4 and d["learning_rate"] == 5e-6
    assert d["model_name_or_path"] == s["output_dir"] + "-merged"  # DPO starts from the merged SFT model
    assert d["dataset_name"] == "data-preferences"
    launch = combined.files["launch.sh"]
    assert launch.index("trl sft") < launch.index("merge_sft_adapter.py") < launch.index("trl dpo")
    full_combined = export_trl(variant(training_approach={"approach": "combined"},
                                       peft={"method": "full", "quantization": "none", "target_modules": []}))
    assert "merge_sft_adapter.py" not in full_combined.files
    assert _yaml(full_combined, "dpo.yaml")["model_name_or_path"] == "outputs/qlora-v1-sft"


def test_eval_falls_back_to_a_held_out_fraction():
    ex = export_trl(variant(training_data={"train_path": "tickets/support.jsonl", "eval_path": "holdout.jsonl"}))
    sft = _yaml(ex, "sft.yaml")
    assert sft["datasets"] == [{"path": "json", "data_files": "tickets/support.jsonl", "split": "train"}]
    assert sft["test_split_size"] == 0.05 and sft["eval_strategy"] == "epoch"
    none = _yaml(export_trl(variant(training_data={"eval_split": 0})), "sft.yaml")
    assert none["eval_strategy"] == "no" and "test_split_size" not in none


def test_trl_target_defaults_and_gpt2():
    no_targets = _yaml(export_trl(variant(peft={"target_modules": []})), "sft.yaml")
    assert "gate_proj" in no_targets["lora_target_modules"]
    all_linear = _yaml(export_trl(variant(peft={"target_modules": ["all-linear"]})), "sft.yaml")
    assert all_linear["lora_target_modules"] == ["all-linear"]


def test_multi_gpu_fsdp_and_zero3():
    ex = export_trl(variant(infrastructure={"instance_type": "p4d.24xlarge", "gpu_count": 8},
                            training_approach={"approach": "combined"}))
    acc = _yaml(ex, "accelerate.yaml")
    assert acc["distributed_type"] == "FSDP" and acc["num_processes"] == 8 and acc["mixed_precision"] == "bf16"
    fsdp = acc["fsdp_config"]
    assert fsdp["fsdp_transformer_layer_cls_to_wrap"] == "MistralDecoderLayer"
    assert fsdp["fsdp_reshard_after_forward"] is True and fsdp["fsdp_activation_checkpointing"] is True
    sft = _yaml(ex, "sft.yaml")
    assert sft["gradient_checkpointing"] is False and sft["bnb_4bit_quant_storage"] == "bfloat16"
    assert "accelerate launch --config_file phase-2-training/trl/accelerate.yaml -m trl.scripts.sft" in ex.files["launch.sh"]
    z3 = export_trl(variant(infrastructure={"instance_type": "p4d.24xlarge", "gpu_count": 8, "sharding": "deepspeed-zero3"}))
    acc = _yaml(z3, "accelerate.yaml")
    assert acc["distributed_type"] == "DEEPSPEED" and acc["deepspeed_config"]["zero_stage"] == 3
    assert _yaml(z3, "sft.yaml")["gradient_checkpointing"] is True


def test_missing_decisions_raise():
    with pytest.raises(ExportError):
        export_trl({"base_model": DECISIONS["base_model"]})
    with pytest.raises(ExportError):
        export_axolotl({})


def test_blocking_problems_are_error_pitfalls_not_kept():
    falcon = variant(base_model={"model_id": "falcon-7b", "name": "tiiuae/falcon-7b", "family": "falcon"})
    problems = blocking_problems(falcon)
    assert [p.id for p in problems] == ["target-module-not-in-model"]
    assert blocking_problems(falcon, acknowledged=["tp-004:target-module-not-in-model"]) == []
    assert blocking_problems(DECISIONS) == []


def test_axolotl_uses_documented_keys_only():
    for d in (DECISIONS, variant(training_approach={"approach": "combined"}),
              variant(infrastructure={"tracking_tool": "Comet ML"}), variant(infrastructure={"tracking_tool": "MLflow"}),
              variant(peft={"method": "lora", "quantization": "8bit", "target_modules": ["all-linear"]})):
        docs = [doc for _, doc in axolotl_docs(d)]
        for doc in docs:
            assert set(doc) <= AXOLOTL_KEYS, set(doc) - AXOLOTL_KEYS


def test_axolotl_qlora_sft_values():
    ex = export_axolotl(DECISIONS)
    assert ex.files["sft.yaml"].startswith("#") and "axolotl train phase-2-training/axolotl/sft.yaml" in ex.files["launch.sh"]
    doc = yaml.safe_load(ex.files["sft.yaml"])
    assert doc["base_model"] == "mistralai/Mistral-7B-v0.3" and doc["adapter"] == "qlora" and doc["load_in_4bit"]
    assert doc["lora_target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert doc["sequence_len"] == 2048 and doc["micro_batch_size"] == 2 and doc["num_epochs"] == 3
    assert doc["val_set_size"] == 0.0 and doc["wandb_project"] == "support-bot"
    assert doc["test_datasets"][0]["path"] == "data/eval.jsonl"  # the planned eval file is carried
    assert doc["datasets"][0]["path"] == "data/train.jsonl" and "rl" not in doc


def test_axolotl_combined_is_two_stages():
    docs = [doc for _, doc in axolotl_docs(variant(training_approach={"approach": "combined"}))]
    sft, dpo = docs
    assert "rl" not in sft and dpo["rl"] == "dpo" and dpo["rl_beta"] == 0.1
    assert dpo["lora_model_dir"] == sft["output_dir"]  # DPO continues from the SFT adapter
    assert dpo["learning_rate"] < sft["learning_rate"] and dpo["sample_packing"] is False


def test_axolotl_8bit_lora_and_full():
    [(_, doc)] = axolotl_docs(variant(peft={"method": "lora", "quantization": "8bit", "target_modules": ["all-linear"]}))
    assert doc["adapter"] == "lora" and doc["load_in_8bit"] and doc["lora_target_linear"]
    [(_, full)] = axolotl_docs(variant(peft={"method": "full", "quantization": "none", "r": None, "alpha": None,
                                             "target_modules": []}))
    assert "adapter" not in full and "load_in_4bit" not in full


def test_user_text_round_trips():
    tricky = variant(infrastructure={"project": "bot: v2 # 'quoted' \"x\"", "experiment": "ünï-1"})
    [(_, doc)] = axolotl_docs(tricky)
    assert doc["wandb_project"] == "bot: v2 # 'quoted' \"x\""


@pytest.mark.slow
def test_trl_files_parse_with_trl_own_parsers(tmp_path):
    """Each stage file is read by the TRL script's own parser with unknown keys refused."""
    pytest.importorskip("trl")
    import importlib

    for d in (DECISIONS, variant(training_approach={"approach": "combined"}),
              variant(infrastructure={"instance_type": "p4d.24xlarge", "gpu_count": 8})):
        ex = export_trl(d)
        for step in ex.steps:
            if step["kind"] != "train":
                continue
            path = tmp_path / step["config"]
            path.write_text(ex.files[step["config"]])
            script = importlib.import_module(f"trl.scripts.{step['script']}")
            script_args, args, model_args, data_args = script.make_parser().parse_args_and_config(
                ["--config", str(path), "--use_cpu", "true"])
            loaded = yaml.safe_load(ex.files[step["config"]])
            assert model_args.model_name_or_path == loaded["model_name_or_path"]
            assert args.learning_rate == loaded["learning_rate"] and args.max_length == 2048
            assert model_args.load_in_4bit is True and model_args.lora_r == 16


def test_axolotl_carries_every_planned_value():
    docs = dict(axolotl_docs(variant(training_approach={"approach": "combined"})))
    for stage, doc in docs.items():
        assert doc["test_datasets"][0]["path"].endswith("eval.jsonl")
        assert doc["sequence_len"] == 2048 and doc["micro_batch_size"] == 2 and doc["gradient_accumulation_steps"] == 8
        assert doc["warmup_ratio"] == 0.03 and doc["weight_decay"] == 0.0 and doc["lora_dropout"] == 0.05
    multi = dict(axolotl_docs(variant(infrastructure={"instance_type": "p4d.24xlarge", "gpu_count": 8})))
    assert multi["sft"]["fsdp_config"]["transformer_layer_cls_to_wrap"] == "MistralDecoderLayer"
