"""TRL/peft and Axolotl exports; the TRL kwargs are loaded into the real classes when installed."""

from __future__ import annotations

import copy

import pytest
import yaml

from agent.planning.export import ExportError, export_axolotl, export_trl

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
    "base_model", "model_revision", "load_in_4bit", "load_in_8bit", "adapter", "lora_model_dir", "lora_r",
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


def test_trl_qlora_sft():
    out = export_trl(DECISIONS)
    assert out["model_name"] == "mistralai/Mistral-7B-v0.3" and out["stages"] == ["sft"]
    assert out["bnb_config"] == {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                                 "bnb_4bit_use_double_quant": True, "bnb_4bit_compute_dtype": "bfloat16"}
    assert out["lora_config"]["r"] == 16 and out["lora_config"]["lora_alpha"] == 32
    assert out["lora_config"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    sft = out["sft_config"]
    assert sft["learning_rate"] == 2e-4 and sft["per_device_train_batch_size"] == 2
    assert sft["gradient_accumulation_steps"] == 8 and sft["max_length"] == 2048
    assert sft["optim"] == "paged_adamw_32bit" and sft["report_to"] == "wandb"
    assert sft["eval_strategy"] == "epoch" and sft["warmup_steps"] == 0.03
    assert out["env"] == {"WANDB_PROJECT": "support-bot"} and out["dpo_config"] is None


def test_trl_full_and_dpo_and_combined():
    full = export_trl(variant(peft={"method": "full", "quantization": "none", "r": None, "alpha": None,
                                    "target_modules": []}))
    assert full["lora_config"] is None and full["bnb_config"] is None
    assert full["sft_config"]["model_init_kwargs"]["dtype"] == "float32"
    dpo = export_trl(variant(training_approach={"approach": "dpo"}, hyperparameters={"learning_rate": 5e-6}))
    assert dpo["sft_config"] is None and dpo["dpo_config"]["beta"] == 0.1
    assert dpo["dpo_config"]["learning_rate"] == 5e-6
    combined = export_trl(variant(training_approach={"approach": "combined"}))
    assert combined["stages"] == ["sft", "dpo"]
    assert combined["sft_config"]["learning_rate"] == 2e-4 and combined["dpo_config"]["learning_rate"] == 5e-6
    assert combined["dpo_model"] == combined["sft_config"]["output_dir"]
    assert any("DPO" in n for n in combined["notes"])


def test_trl_target_defaults_and_gpt2():
    no_targets = export_trl(variant(peft={"target_modules": []}))
    assert "gate_proj" in no_targets["lora_config"]["target_modules"]
    all_linear = export_trl(variant(peft={"target_modules": ["all-linear"]}))
    assert all_linear["lora_config"]["target_modules"] == "all-linear"
    gpt2 = export_trl(variant(base_model={"model_id": "gpt2", "name": "openai-community/gpt2", "params_b": 0.124,
                                          "context_length": 1024, "family": "gpt2", "license": "mit"},
                              peft={"method": "lora", "quantization": "none", "target_modules": ["c_attn"]}))
    assert gpt2["lora_config"]["fan_in_fan_out"] is True and gpt2["bnb_config"] is None


def test_missing_decisions_raise():
    with pytest.raises(ExportError):
        export_trl({"base_model": DECISIONS["base_model"]})
    with pytest.raises(ExportError):
        export_axolotl({})


def test_axolotl_uses_documented_keys_only():
    for d in (DECISIONS, variant(training_approach={"approach": "combined"}),
              variant(infrastructure={"tracking_tool": "Comet ML"}), variant(infrastructure={"tracking_tool": "MLflow"}),
              variant(peft={"method": "lora", "quantization": "8bit", "target_modules": ["all-linear"]})):
        docs = list(yaml.safe_load_all(export_axolotl(d)))
        for doc in docs:
            assert set(doc) <= AXOLOTL_KEYS, set(doc) - AXOLOTL_KEYS


def test_axolotl_qlora_sft_values():
    text = export_axolotl(DECISIONS)
    assert text.startswith("#")
    [doc] = list(yaml.safe_load_all(text))
    assert doc["base_model"] == "mistralai/Mistral-7B-v0.3" and doc["adapter"] == "qlora" and doc["load_in_4bit"]
    assert doc["lora_target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert doc["sequence_len"] == 2048 and doc["micro_batch_size"] == 2 and doc["num_epochs"] == 3
    assert doc["val_set_size"] == 0.05 and doc["wandb_project"] == "support-bot"
    assert doc["datasets"][0]["path"] == "data/train.jsonl" and "rl" not in doc


def test_axolotl_combined_is_two_stages():
    docs = list(yaml.safe_load_all(export_axolotl(variant(training_approach={"approach": "combined"}))))
    sft, dpo = docs
    assert "rl" not in sft and dpo["rl"] == "dpo" and dpo["rl_beta"] == 0.1
    assert dpo["lora_model_dir"] == sft["output_dir"]  # DPO continues from the SFT adapter
    assert dpo["learning_rate"] < sft["learning_rate"] and dpo["sample_packing"] is False


def test_axolotl_8bit_lora_and_full():
    [doc] = list(yaml.safe_load_all(export_axolotl(variant(peft={"method": "lora", "quantization": "8bit",
                                                                  "target_modules": ["all-linear"]}))))
    assert doc["adapter"] == "lora" and doc["load_in_8bit"] and doc["lora_target_linear"]
    [full] = list(yaml.safe_load_all(export_axolotl(variant(peft={"method": "full", "quantization": "none",
                                                                   "r": None, "alpha": None, "target_modules": []}))))
    assert "adapter" not in full and "load_in_4bit" not in full


def test_user_text_round_trips():
    tricky = variant(infrastructure={"project": "bot: v2 # 'quoted' \"x\"", "experiment": "ünï-1"})
    [doc] = list(yaml.safe_load_all(export_axolotl(tricky)))
    assert doc["wandb_project"] == "bot: v2 # 'quoted' \"x\""


@pytest.mark.slow
def test_trl_kwargs_load_into_real_classes():
    trl = pytest.importorskip("trl")
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    # TrainingArguments refuses bf16 on a host without a bf16 GPU; everything else is checked as exported.
    cpu = {} if torch.cuda.is_available() else {"bf16": False}
    for d in (DECISIONS, variant(training_approach={"approach": "combined"})):
        out = export_trl(d)
        peft.LoraConfig(**out["lora_config"])
        transformers.BitsAndBytesConfig(**out["bnb_config"])
        cfg = trl.SFTConfig(**{**out["sft_config"], **cpu})
        assert cfg.max_length == 2048 and cfg.learning_rate == 2e-4 and cfg.optim == "paged_adamw_32bit"
        if out["dpo_config"]:
            dcfg = trl.DPOConfig(**{**out["dpo_config"], **cpu})
            assert dcfg.beta == 0.1 and dcfg.learning_rate == 5e-6
