"""Each pitfall rule: one set of decisions that triggers it and one that does not."""

from __future__ import annotations

import copy

import pytest

from agent.planning.pitfalls import RULES, check_pitfalls

BASE = {
    "model_id": "mistral-7b-v0.3",
    "name": "mistralai/Mistral-7B-v0.3",
    "params_b": 7.25,
    "license": "apache-2.0",
    "context_length": 32768,
    "family": "mistral",
}
GOOD = {
    "base_model": BASE,
    "training_approach": {"approach": "sft"},
    "training_data": {"source": "support tickets", "sft_examples": 12000, "eval_split": 0.05},
    "peft": {
        "method": "qlora", "quantization": "4bit", "r": 16, "alpha": 32, "dropout": 0.05,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    },
    "hyperparameters": {"learning_rate": 2e-4, "batch_size": 1, "gradient_accumulation_steps": 16,
                        "num_epochs": 3, "max_length": 2048},
    "infrastructure": {"platform": "AWS SageMaker", "instance_type": "ml.g5.2xlarge", "gpu_count": 1,
                       "spot_instances": True, "tracking_tool": "wandb", "project": "support-bot", "experiment": "v1"},
}
PROJECT = {"constraints": ["One 24 GB GPU for training", "Apache-2.0 or MIT licensed models only"]}


def ids(decisions, project=PROJECT, gpu_gb=None):
    return {p.id for p in check_pitfalls(decisions, project, gpu_gb)}


def with_(**changes):
    d = copy.deepcopy(GOOD)
    for path, value in changes.items():
        section, _, key = path.partition("__")
        if key:
            d[section][key] = value
        else:
            d[section] = value
    return d


def test_good_plan_has_no_pitfalls():
    assert check_pitfalls(GOOD, PROJECT, gpu_gb=24) == []


def test_partial_decisions_only_check_what_is_decided():
    assert check_pitfalls({}, None) == []
    assert check_pitfalls({"base_model": BASE}, PROJECT) == []
    assert ids({"hyperparameters": {"num_epochs": 10}}) == {"too-many-epochs"}


def test_decision_dicts_with_fields_are_accepted():
    wrapped = {s: {"id": "tp-00x", "fields": f} for s, f in with_(hyperparameters__num_epochs=8).items()}
    assert "too-many-epochs" in ids(wrapped)


@pytest.mark.parametrize(
    ("pitfall", "triggering", "passing"),
    [
        ("qlora-without-4bit", dict(peft__quantization="8bit"), dict(peft__quantization="4bit")),
        ("lora-alpha-unusual", dict(peft__alpha=128), dict(peft__alpha=16)),
        ("learning-rate-out-of-range", dict(hyperparameters__learning_rate=2e-3), dict(hyperparameters__learning_rate=1e-4)),
        ("target-module-not-in-model", dict(peft__target_modules=["q_proj", "qkv_proj"]), dict(peft__target_modules=["all-linear"])),
        ("too-little-sft-data", dict(training_data__sft_examples=400), dict(training_data__sft_examples=1000)),
        ("too-many-epochs", dict(hyperparameters__num_epochs=8), dict(hyperparameters__num_epochs=5)),
        ("max-length-exceeds-context", dict(hyperparameters__max_length=65536), dict(hyperparameters__max_length=32768)),
        ("no-eval-split", dict(training_data__eval_split=0.0), dict(training_data__eval_split=0.02)),
        ("plan-does-not-fit-gpu", dict(peft__method="lora", peft__quantization="none", hyperparameters__batch_size=8),
         dict(peft__method="lora", peft__quantization="none", hyperparameters__batch_size=1)),
    ],
)
def test_rule_triggers_and_passes(pitfall, triggering, passing):
    assert pitfall in ids(with_(**triggering), gpu_gb=24)
    assert pitfall not in ids(with_(**passing), gpu_gb=24)


def test_qlora_without_quantization_is_an_error():
    [p] = [p for p in check_pitfalls(with_(peft__quantization="none")) if p.id == "qlora-without-4bit"]
    assert p.severity == "error" and p.section == "peft" and "QLoRA" in p.knowledge_ref


def test_alpha_message_cites_the_spread():
    [p] = [p for p in check_pitfalls(with_(peft__alpha=4)) if p.id == "lora-alpha-unusual"]
    assert "2r" in p.knowledge_ref and "QLoRA" in p.knowledge_ref and "Unsloth" in p.knowledge_ref


def test_learning_rate_ranges_depend_on_method_size_and_approach():
    full = with_(peft={"method": "full", "quantization": "none", "target_modules": []})
    assert "learning-rate-out-of-range" in ids({**full, "hyperparameters": {**GOOD["hyperparameters"], "learning_rate": 2e-4}})
    assert "learning-rate-out-of-range" not in ids({**full, "hyperparameters": {**GOOD["hyperparameters"], "learning_rate": 2e-5}})
    big = with_(base_model={**BASE, "model_id": "qwen2.5-72b", "name": "Qwen/Qwen2.5-72B", "params_b": 72.7,
                            "family": "qwen2", "license": "qwen", "context_length": 131072},
                hyperparameters__learning_rate=4e-4)
    assert "learning-rate-out-of-range" in ids(big, project={})
    assert "learning-rate-out-of-range" not in ids(with_(hyperparameters__learning_rate=4e-4))  # fine at 7B
    dpo = with_(training_approach={"approach": "dpo"}, training_data__dpo_pairs=3000,
                base_model={**BASE, "name": "mistralai/Mistral-7B-Instruct-v0.3"})
    assert "learning-rate-out-of-range" in ids(dpo)
    dpo["hyperparameters"]["learning_rate"] = 5e-6
    assert "learning-rate-out-of-range" not in ids(dpo)


def test_learning_rate_far_out_is_an_error():
    [p] = [p for p in check_pitfalls(with_(hyperparameters__learning_rate=1e-2)) if p.id == "learning-rate-out-of-range"]
    assert p.severity == "error"


def test_combined_warns_about_dpo_rate():
    combined = with_(training_approach={"approach": "combined"}, training_data__dpo_pairs=3000)
    assert "combined-dpo-learning-rate" in ids(combined)
    assert "combined-dpo-learning-rate" not in ids(GOOD)


def test_target_modules_checked_per_family():
    phi = with_(base_model={"model_id": "phi-4", "name": "microsoft/phi-4", "params_b": 14.7, "license": "mit",
                            "context_length": 16384, "family": "phi3"})
    assert "target-module-not-in-model" in ids(phi)  # llama-style names on a fused phi3 model
    phi["peft"]["target_modules"] = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
    assert "target-module-not-in-model" not in ids(phi)
    unknown = with_(base_model={**BASE, "model_id": "acme/custom", "name": "acme/custom", "family": "acme"})
    assert "target-module-not-in-model" not in ids(unknown)  # nothing to check against


def test_dpo_without_preference_data():
    dpo = with_(training_approach={"approach": "combined"})
    assert "dpo-without-preference-data" in ids(dpo)
    dpo["training_data"]["dpo_pairs"] = 2500
    assert "dpo-without-preference-data" not in ids(dpo)


def test_dpo_only_needs_an_sft_start():
    dpo = with_(training_approach={"approach": "dpo"}, training_data__dpo_pairs=3000, hyperparameters__learning_rate=5e-6)
    found = {p.id: p for p in check_pitfalls(dpo, PROJECT)}
    assert "dpo-without-sft-start" in found
    assert "Mistral-7B-Instruct-v0.3" in found["dpo-without-sft-start"].fix
    dpo["base_model"]["name"] = "mistralai/Mistral-7B-Instruct-v0.3"
    assert "dpo-without-sft-start" not in ids(dpo)


def test_too_little_dpo_data():
    dpo = with_(training_approach={"approach": "combined"}, training_data__dpo_pairs=300)
    assert "too-little-dpo-data" in ids(dpo)
    dpo["training_data"]["dpo_pairs"] = 1500
    assert "too-little-dpo-data" not in ids(dpo)


def test_fit_uses_the_infrastructure_instance_without_gpu_gb():
    lora = with_(peft__method="lora", peft__quantization="none", hyperparameters__batch_size=8)
    assert "plan-does-not-fit-gpu" in ids(lora)  # ml.g5.2xlarge: one 24 GB A10G
    lora["infrastructure"]["instance_type"] = "ml.p4de.24xlarge"
    assert "plan-does-not-fit-gpu" not in ids(lora)


def test_licence_conflict():
    llama = with_(base_model={"model_id": "llama-3.1-8b", "name": "meta-llama/Llama-3.1-8B", "params_b": 8.03,
                              "license": "llama3.1", "context_length": 131072, "family": "llama"})
    [p] = [p for p in check_pitfalls(llama, PROJECT) if p.id == "license-conflict"]
    assert p.severity == "error" and "Apache-2.0 or MIT" in p.message
    assert "license-conflict" not in ids(GOOD)
    assert "license-conflict" not in ids(llama, project={"constraints": ["One 24 GB GPU"]})
    assert "license-conflict" in ids(GOOD, project={"constraints": ["No Apache-licensed models"]})
    assert "license-conflict" not in ids(llama, project={"constraints": ["Permissive (Apache/MIT) or Llama licence"]})


def test_budget_stated_in_an_answer_is_checked():
    from agent.planning.constraints import read_constraints
    from agent.planning.fit import gpu_hours
    from agent.planning.plan import try_plan

    hours = gpu_hours(try_plan(GOOD))
    over = read_constraints({"hyperparameters": f"about {hours / 2:.1f} GPU hours per run"})
    under = read_constraints({"hyperparameters": f"about {hours * 2:.1f} GPU hours per run"})
    [p] = [p for p in check_pitfalls(GOOD, PROJECT, stated=over) if p.id == "plan-over-time-budget"]
    assert p.severity == "error" and p.section == "infrastructure" and "your answer on the training budget" in p.message
    assert "plan-over-time-budget" not in {p.id for p in check_pitfalls(GOOD, PROJECT, stated=under)}
    # Read from what a recorded decision kept of the answer, as the export reads the sidecar.
    recorded = {**GOOD, "hyperparameters": {"fields": GOOD["hyperparameters"], "context": f"{hours / 2:.1f} GPU hours"}}
    assert "plan-over-time-budget" in ids(recorded)


def test_money_budget_is_checked():
    from agent.planning.constraints import read_constraints

    broke = read_constraints({"hyperparameters": "we can spend $1 on this"})
    rich = read_constraints({"hyperparameters": "we can spend $1,000,000 on this"})
    assert "plan-over-money-budget" in {p.id for p in check_pitfalls(GOOD, PROJECT, stated=broke)}
    assert "plan-over-money-budget" not in {p.id for p in check_pitfalls(GOOD, PROJECT, stated=rich)}


def test_every_rule_has_tests():
    # A new rule must come with a triggering and a passing case above.
    assert len(RULES) == 12


def test_pitfalls_are_complete_records():
    everything_wrong = with_(
        peft__quantization="8bit", peft__alpha=256, hyperparameters__learning_rate=1e-2,
        hyperparameters__num_epochs=10, training_data__eval_split=0.0, training_data__sft_examples=10,
    )
    found = check_pitfalls(everything_wrong, PROJECT, gpu_gb=24)
    assert len({p.id for p in found}) >= 6
    severities = [p.severity for p in found]
    assert severities == sorted(severities, key=lambda s: s != "error")  # errors first
    for p in found:
        assert p.message and p.fix and p.knowledge_ref and p.section in GOOD
