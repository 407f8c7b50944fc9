"""GPU fit, instance parsing, training time, cost and the plan() convenience."""

from __future__ import annotations

from datetime import date

import pytest
import yaml

from agent.planning import gpu as gpus
from agent.planning.gpu import estimate_cost, estimate_time, fit_gpus, fits_in, parse_gpu, throughput, training_time_hours
from agent.planning.plan import plan

DECISIONS = {
    "base_model": {"model_id": "mistral-7b-v0.3", "name": "mistralai/Mistral-7B-v0.3", "params_b": 7.25,
                   "license": "apache-2.0", "context_length": 32768, "family": "mistral"},
    "training_approach": {"approach": "sft"},
    "training_data": {"source": "tickets", "sft_examples": 10000, "eval_split": 0.05},
    "peft": {"method": "qlora", "quantization": "4bit", "r": 16, "alpha": 32, "dropout": 0.05,
             "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
    "hyperparameters": {"learning_rate": 2e-4, "batch_size": 1, "gradient_accumulation_steps": 16,
                        "num_epochs": 3, "max_length": 2048},
}
INFRA = {"platform": "Lambda Labs", "instance_type": "1x A100 80GB", "gpu_count": 1, "spot_instances": False,
         "tracking_tool": "Weights & Biases", "project": "bot", "experiment": "v1"}


def test_fit_prefers_one_gpu_of_the_smallest_class():
    assert fit_gpus(10) == (24, 1)
    assert fit_gpus(24) == (24, 1)
    assert fit_gpus(30) == (40, 1)
    assert fit_gpus(45) == (48, 1)
    assert fit_gpus(70) == (80, 1)
    assert fit_gpus(120) == (141, 1)


def test_fit_shards_big_jobs_over_80gb_gpus():
    cls, n = fit_gpus(600, replicated_gb=5)
    assert cls == 80 and n == 8
    cls, n = fit_gpus(1200, replicated_gb=8)
    assert cls == 80 and n == 24  # 1192/16 + 8 > 80: three 8-GPU nodes
    with pytest.raises(ValueError):
        fit_gpus(0)
    assert fit_gpus(2000, replicated_gb=500) is None  # activations alone exceed every card: nothing fits, no crash


def test_plan_with_activations_larger_than_any_gpu_does_not_raise():
    # A micro-batch and length that need more activation memory than any GPU has (a crash before).
    huge = {**DECISIONS, "peft": {**DECISIONS["peft"], "method": "lora", "quantization": "none"},
            "hyperparameters": {**DECISIONS["hyperparameters"], "batch_size": 64, "max_length": 32768}}
    p = plan(huge)
    assert not p.fits and "NOT fit" in p.summary
    assert any("no GPU holds" in n for n in p.notes)


def test_fits_in_accounts_for_replicated_memory():
    assert fits_in(150, 80, 2, replicated_gb=5)
    assert not fits_in(150, 80, 2, replicated_gb=20)
    assert not fits_in(30, 24)


@pytest.mark.parametrize(
    ("text", "card", "memory", "count"),
    [
        ("g5.2xlarge", "A10G", 24, 1),
        ("ml.g5.12xlarge", "A10G", 24, 4),
        ("p4d.24xlarge", "A100 40GB", 40, 8),
        ("a2-ultragpu-1g", "A100 80GB", 80, 1),
        ("2x A100 80GB", "A100 80GB", 80, 2),
        ("Two A100 80 GB GPUs on premises", "A100 80GB", 80, 2),
        ("RTX 4090", "RTX 4090", 24, 1),
        ("8 H100", "H100 80GB", 80, 8),
        ("L40S", "L40S", 48, 1),
        ("One 24 GB GPU", "24 GB GPU", 24, 1),
        ("two RTX 3090", "RTX 3090", 24, 2),
        ("2x RTX 3090", "RTX 3090", 24, 2),
        ("4 x H100", "H100 80GB", 80, 4),
        ("8xH100", "H100 80GB", 80, 8),
        ("dual 4090s", "RTX 4090", 24, 2),
        ("2 RTX 3090s at home", "RTX 3090", 24, 2),
        ("A100 80GB", "A100 80GB", 80, 1),
        ("A100 40 GB x4", "A100 40GB", 40, 4),
        ("an A100 with 80 GB", "A100 80GB", 80, 1),
        ("H200", "H200", 141, 1),
        ("RTX 4090 24GB", "RTX 4090", 24, 1),
        ("p5.48xlarge", "H100 80GB", 80, 8),
        ("a pair of L40S", "L40S", 48, 2),
        ("16 GB GPU", "16 GB GPU", 16, 1),
        ("RTX 3090 x 2", "RTX 3090", 24, 2),
        ("2 x 24GB", "24 GB GPU", 24, 2),
        ("two 24 GB GPUs", "24 GB GPU", 24, 2),
        ("8 A100s", "A100 40GB", 40, 8),
        ("A100 80GB x 4", "A100 80GB", 80, 4),
        ("One 24 GB GPU (RTX 4090) for training", "RTX 4090", 24, 1),
    ],
)
def test_parse_gpu(text, card, memory, count):
    g = parse_gpu(text)
    assert (g.card, g.memory_gb, g.count) == (card, memory, count)


def test_parse_gpu_unknown_and_gpu_count():
    assert parse_gpu("a big computer") is None
    assert parse_gpu("") is None
    assert parse_gpu("A100 80GB", gpu_count=4).count == 4
    assert parse_gpu("g5.3xlarge-ish A10G").card == "A10G"  # unknown instance falls back to the card name


def test_training_time_scales_with_work_and_hardware():
    base = training_time_hours(10000, 2048, 3, 7, "lora", 80)
    assert training_time_hours(20000, 2048, 3, 7, "lora", 80) == pytest.approx(2 * base, rel=0.01)
    # Twice the parameters is about twice the work (attention and the step overhead do not double).
    assert training_time_hours(10000, 2048, 3, 14, "lora", 80) == pytest.approx(2 * base, rel=0.1)
    assert training_time_hours(10000, 2048, 3, 7, "lora", 80, count=2) < base
    assert training_time_hours(10000, 2048, 3, 7, "full", 80) > base
    assert training_time_hours(10000, 2048, 3, 7, "qlora", 80) > base
    assert training_time_hours(10000, 2048, 3, 7, "lora", 24) > base
    # 61M tokens at a stated 1,000 tokens/s is 17 hours.
    assert training_time_hours(10000, 2048, 3, 7, "lora", 80, tokens_per_second=1000) == pytest.approx(17.07, abs=0.01)


def test_time_estimate_states_its_assumptions():
    t = estimate_time(5000, 1024, 2, 7, "qlora", 24, dpo=True)
    assert t.low_hours < t.hours < t.high_hours
    assert t.tokens == 5000 * 1024 * 2 * 2
    assert any("achievable" in a for a in t.assumptions)
    assert any("6N" in a and "reference forward" in a for a in t.assumptions)


def test_cost_from_the_dated_price_file():
    c = estimate_cost(10, 80, 1, "Lambda Labs", False, today=date(2025, 7, 1))
    assert c.platform == "lambda" and c.total_usd == pytest.approx(10 * c.usd_per_gpu_hour)
    assert c.as_of and "indicative" in " ".join(c.notes)
    spot = estimate_cost(10, 80, 2, "AWS EC2", True)
    on_demand = estimate_cost(10, 80, 2, "AWS EC2", False)
    assert spot.total_usd < on_demand.total_usd and spot.spot
    no_spot = estimate_cost(10, 80, 1, "lambda", True)
    assert not no_spot.spot and any("no spot" in n for n in no_spot.notes)
    assert estimate_cost(10, 24, 1, "local GPU", False).total_usd == 0
    assert estimate_cost(1, 24, 1, "AWS SageMaker", False).platform == "sagemaker"


def test_cost_notes_old_prices_and_missing_offers():
    c = estimate_cost(1, 40, 1, "runpod", False, today=date(2030, 1, 1))
    assert c.gpu_class_gb == 48 and any("no 40 GB" in n for n in c.notes)
    assert any("months old" in n for n in c.notes)
    with pytest.raises(ValueError):
        estimate_cost(1, 24, 1, "moon cloud", False)


def test_price_file_override(tmp_path, monkeypatch):
    prices = {"as_of": "2026-11", "platforms": {"acme": {"name": "Acme GPUs", "match": ["acme"], "spot_factor": 0.5,
                                                          "gpus": {24: {"card": "RTX 4090", "usd_per_gpu_hour": 1.0}}}}}
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(prices))
    assert estimate_cost(3, 24, 2, "acme", False, prices_path=path).total_usd == 6.0
    monkeypatch.setenv(gpus.PRICES_ENV, str(path))
    c = estimate_cost(3, 24, 2, "Acme cloud", True)
    assert c.total_usd == 3.0 and c.as_of == "2026-11"


def test_plan_recommends_gpu_and_costs_options():
    p = plan(DECISIONS)
    assert p.gpu_source == "recommended" and p.fits
    assert p.gpu_class_gb == 24 and p.gpu_count == 1
    assert p.hours and p.hours_low < p.hours < p.hours_high
    assert p.cost is None and p.cost_options
    assert [c.total_usd for c in p.cost_options] == sorted(c.total_usd for c in p.cost_options)
    assert "GB" in p.summary and "QLoRA" in p.summary


def test_plan_uses_the_infrastructure_decision():
    p = plan({**DECISIONS, "infrastructure": INFRA})
    assert p.gpu_source == "infrastructure" and p.gpu_card == "A100 80GB" and p.fits
    assert p.cost.platform == "lambda" and p.cost.low_usd < p.cost.total_usd < p.cost.high_usd
    assert "Lambda" in p.summary and p.cost.as_of in p.summary


def test_plan_reports_a_misfit():
    small = {**DECISIONS, "peft": {**DECISIONS["peft"], "method": "lora", "quantization": "none"},
             "hyperparameters": {**DECISIONS["hyperparameters"], "batch_size": 8},
             "infrastructure": {**INFRA, "instance_type": "RTX 4090", "platform": "local"}}
    p = plan(small)
    assert not p.fits and "NOT fit" in p.summary


def test_plan_combined_has_two_stages_and_takes_decision_dicts():
    combined = {**DECISIONS, "training_approach": {"approach": "combined"},
                "training_data": {**DECISIONS["training_data"], "dpo_pairs": 3000}}
    wrapped = {s: {"id": "x", "fields": f} for s, f in combined.items()}
    p = plan(wrapped)
    assert [s.stage for s in p.stages] == ["sft", "dpo"]
    assert p.memory.total_gb == max(s.memory.total_gb for s in p.stages)
    assert p.hours == pytest.approx(sum(s.time.hours for s in p.stages), abs=0.02)


def test_plan_with_partial_decisions():
    p = plan({"base_model": DECISIONS["base_model"], "peft": DECISIONS["peft"]})
    assert p.hours is None and p.cost is None
    assert any("hyperparameters not decided" in n for n in p.notes)
    with pytest.raises(ValueError):
        plan({"base_model": DECISIONS["base_model"]})


def test_plan_moe_uses_active_parameters_for_time():
    mixtral = {**DECISIONS, "base_model": {"model_id": "mixtral-8x7b", "name": "mistralai/Mixtral-8x7B-v0.1",
                                            "params_b": 46.7, "license": "apache-2.0", "context_length": 32768,
                                            "family": "mixtral"},
               "peft": {**DECISIONS["peft"], "target_modules": ["q_proj", "v_proj"]}}
    p = plan(mixtral)
    dense = training_time_hours(10000, 2048, 3, 46.7, "qlora", p.gpu_class_gb, p.gpu_count)
    assert p.hours < dense / 2  # ~12.9B active of 46.7B


def test_throughput_against_measured_h200_runs(capsys):
    from tests.test_planning_memory import MEASURED_SHAPES, measured_rows

    rows = measured_rows()
    lines, failures = [], []
    for row in rows:
        tps, notes = throughput(int(row["params"]) / 1e9, row["method"], int(row["seq_len"]), int(row["micro_batch"]),
                                "H200", gradient_checkpointing=row["gradient_checkpointing"] == "on",
                                dpo=row["trainer"] == "dpo", shape=MEASURED_SHAPES[row["model"]])
        measured = float(row["tokens_per_s_h200"])
        diff = tps / measured - 1
        ok = abs(diff) <= 0.30
        lines.append(f"{row['model']:<27}{row['method']:<6}{row['trainer']:<4}{row['seq_len']:>6} x{row['micro_batch']:<2}"
                     f"{tps:>10,.0f}{measured:>10,.0f} {diff:>+7.1%}  {'ok' if ok else 'FAIL'}")
        if not ok:
            failures.append(lines[-1])
    with capsys.disabled():
        print("\nmodel                      method tr   tokens x mb  tokens/s  measured  error")
        print("\n".join(lines))
    assert not failures, "\n".join(failures)


def test_throughput_follows_hardware_and_settings():
    h200, _ = throughput(7.6, "qlora", 2048, 4, "H200")
    rtx, _ = throughput(7.6, "qlora", 2048, 4, "RTX 4090")
    two, _ = throughput(7.6, "qlora", 2048, 4, "A100 80GB", 2)
    one, _ = throughput(7.6, "qlora", 2048, 4, "A100 80GB", 1)
    assert h200 > 3 * rtx and 1.5 * one < two < 2 * one
    no_gc, _ = throughput(7.6, "lora", 2048, 4, "H200", gradient_checkpointing=False)
    gc, _ = throughput(7.6, "lora", 2048, 4, "H200")
    assert no_gc > 1.2 * gc  # recompute costs a forward
    full, _ = throughput(7.6, "full", 2048, 4, "H200", gradient_checkpointing=False)
    assert full < no_gc  # weight gradients cost 2N more
    dpo, _ = throughput(7.6, "qlora", 2048, 4, "H200", dpo=True)
    free, _ = throughput(7.6, "qlora", 2048, 4, "H200", dpo=True, reference_free=True)
    assert dpo < free
    small_batch, notes = throughput(7.6, "qlora", 512, 1, "H200")
    assert "host" in notes[0]  # tiny steps are bound by kernel launches, not FLOPs


def test_cards_have_throughput_figures():
    for c in gpus._gpu_data()["cards"]:
        assert c["bf16_tflops"] > 0 and c["memory_bw_gbs"] > 0 and c["source"], c["name"]
    for name, inst in gpus._gpu_data()["instances"].items():
        assert gpus.card(inst["card"]), name


def test_a_budget_in_gpu_hours_is_not_a_gpu_count():
    # A real answer: the count comes from "One", not from the budget's "10 GPU hours".
    spec = gpus.parse_gpu("One RTX 4090 (24 GB), Apache-2.0 or MIT, about 10 GPU hours per run")
    assert (spec.card, spec.count) == ("RTX 4090", 1)
    assert gpus.parse_gpu("12 GPU-hours on 2 A100 80GB").count == 2
    assert gpus.parse_gpu("4 GPUs, H100").count == 4
