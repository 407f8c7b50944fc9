"""Every in-range input gets an answer from the memory, fit and time models: nothing raises.

A plan whose micro-batch and length need more memory than any GPU has is a "does not fit"
answer, never an exception (that used to end the session).
"""

from __future__ import annotations

import random

from agent.model_catalog import find_model
from agent.planning import gpu as gpus
from agent.planning.memory import OPTIMIZERS, estimate_memory
from agent.planning.plan import plan, replicated_gb

MODELS = ["gpt2", "qwen2.5-0.5b", "llama-3.2-3b", "qwen3-8b", "gemma-2-9b", "mixtral-8x7b", "llama-3.1-70b",
          "falcon-180b", "phi-3-mini", None]
METHOD_BITS = {"full": (16, 32), "lora": (16,), "qlora": (4, 8)}
CARDS = [c["name"] for c in gpus._gpu_data()["cards"]] + ["24 GB GPU", None]


def test_random_in_range_inputs_never_raise():
    rng = random.Random(13)
    for _ in range(300):
        key = rng.choice(MODELS)
        spec = find_model(key) if key else None
        params_b = spec.params_b if spec else rng.choice([0.1, 1.5, 7, 13, 34, 70, 405])
        method = rng.choice(list(METHOD_BITS))
        seq_len = rng.choice([1, 64, 512, 2048, 8192, 32768, 131072])
        micro_batch = rng.choice([1, 2, 8, 64, 256])
        dpo = rng.random() < 0.3
        est = estimate_memory(
            params_b, method, rng.choice(METHOD_BITS[method]), lora_rank=rng.choice([1, 8, 64, 256]),
            seq_len=seq_len, micro_batch=micro_batch, gradient_checkpointing=rng.random() < 0.5,
            optimizer=rng.choice(OPTIMIZERS), shape=spec, dpo=dpo, lora_dropout=rng.choice([0.0, 0.05]),
        )
        assert est.total_gb >= est.min_gb > 0
        fit = gpus.fit_gpus(est.total_gb, replicated_gb(est))
        assert fit is None or (fit[0] in gpus.GPU_CLASSES and fit[1] >= 1)
        count = rng.choice([1, 2, 8, 64])
        card = rng.choice(CARDS)
        t = gpus.estimate_time(rng.choice([0, 10, 100000]), seq_len, rng.choice([0.5, 1, 3]), params_b, method,
                               rng.choice(gpus.GPU_CLASSES), count, card_name=card, dpo=dpo,
                               micro_batch=micro_batch, shape=spec)
        assert t.tokens_per_second > 0 and t.hours >= 0


def test_random_plans_never_raise():
    rng = random.Random(18)
    for _ in range(60):
        method = rng.choice(list(METHOD_BITS))
        decisions = {
            "base_model": {"model_id": rng.choice(["qwen3-8b", "llama-3.1-70b", "gpt2", "mystery-model"]),
                           "params_b": rng.choice([0.124, 8.19, 70.6, 13])},
            "training_approach": {"approach": rng.choice(["sft", "dpo", "combined"])},
            "training_data": {"sft_examples": rng.choice([10, 50000]), "dpo_pairs": rng.choice([10, 5000])},
            "peft": {"method": method, "quantization": {"qlora": "4bit"}.get(method, "none"), "r": rng.choice([4, 64])},
            "hyperparameters": {"batch_size": rng.choice([1, 16, 128]), "max_length": rng.choice([512, 8192, 131072]),
                                "num_epochs": rng.choice([1, 3])},
        }
        if rng.random() < 0.5:
            decisions["infrastructure"] = {"platform": rng.choice(["local", "Lambda Labs", "AWS EC2"]),
                                           "instance_type": rng.choice(["two RTX 3090", "8xH100", "g5.2xlarge", "?"])}
        p = plan(decisions)
        assert p.summary and p.memory.total_gb > 0


def test_infrastructure_recommendation_with_oversized_activations():
    # The reported crash: micro-batch and length whose activations exceed any GPU made
    # infrastructure_recommend raise "... GB per GPU of activations cannot be sharded".
    from agent.sections import infrastructure
    from agent.sections.base import SectionInputs

    decisions = {
        "base_model": {"model_id": "qwen3-8b", "params_b": 8.19},
        "training_approach": {"approach": "combined"},
        "training_data": {"sft_examples": 40000, "dpo_pairs": 5000},
        "peft": {"method": "lora", "quantization": "none", "r": 16},
        "hyperparameters": {"batch_size": 64, "max_length": 32768, "num_epochs": 3, "gradient_accumulation_steps": 1},
    }
    proposal = infrastructure.recommend(SectionInputs(context="whatever is cheapest", decisions=decisions))
    assert proposal.fields["instance_type"]
    assert not plan(decisions).fits
