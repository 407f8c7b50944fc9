"""Pre-flight: exported stages train two optimizer steps on CPU through TRL's own scripts."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

pytest.importorskip("trl")

from agent.planning.cli import preflight_main  # noqa: E402
from agent.planning.preflight import check_launch, load_report, outcome  # noqa: E402
from tests.test_planning_cli import IDS, SECTIONS  # noqa: E402
from tests.test_planning_export import DECISIONS, variant  # noqa: E402


def _project(project_copy, decisions):
    project = project_copy("support-bot")
    sidecar = project / "sidecar.yaml"
    data = yaml.safe_load(sidecar.read_text())
    for tp, section in zip(IDS, SECTIONS):
        data["decisions"].append({"id": tp, "choice": section, "rationale": "r", "knowledge_ref": "k",
                                  "training_pipeline": copy.deepcopy(decisions[section])})
    sidecar.write_text(yaml.safe_dump(data, sort_keys=False))
    return project


def _report(project):
    return load_report(project)


# Small plans keep CI short: micro-batch 1, accumulation 2 -> 2 optimizer steps need 4 rows.
SMALL = {"batch_size": 1, "gradient_accumulation_steps": 2, "max_length": 256}
COMBINED_QLORA = variant(training_approach={"approach": "combined"}, training_data={"dpo_pairs": 5000},
                         hyperparameters=SMALL)
QWEN_05B = {"model_id": "qwen2.5-0.5b", "name": "Qwen/Qwen2.5-0.5B-Instruct", "family": "qwen2",
            "params_b": 0.49, "context_length": 32768, "license": "apache-2.0"}
FULL_SFT = variant(peft={"method": "full", "quantization": "none", "r": None, "alpha": None, "target_modules": []},
                   base_model=QWEN_05B, hyperparameters={**SMALL, "learning_rate": 2e-5})
LORA_DPO = variant(training_approach={"approach": "dpo"}, training_data={"dpo_pairs": 5000},
                   peft={"method": "lora", "quantization": "none", "target_modules": ["all-linear"]},
                   base_model=QWEN_05B, hyperparameters={**SMALL, "learning_rate": 5e-6})


# Sessions a user finishes in the chat, steered to each kind of plan by their answers.
STEER_QLORA = {"peft.decision": ["qlora", "yes"]}
STEER_COMBINED = {"training_approach.goals": "About 40,000 resolved tickets as instruction pairs and 6,000 preference "
                  "pairs where team leads ranked a chosen and a rejected reply", "peft.decision": ["lora", "yes"]}
STEER_DPO_FULL = {"training_approach.goals": "Our assistant already follows instructions; we have 6,000 preference "
                  "pairs where team leads ranked a chosen and a rejected reply",
                  "training_approach.decision": ["dpo", "yes"], "base_model.decision": ["qwen2.5-0.5b", "yes"],
                  "peft.decision": ["full", "yes"]}


@pytest.mark.parametrize("steer, plan, stages", [
    (STEER_QLORA, ("sft", "qlora"), ["sft"]),                   # SFT with QLoRA, picked at the proposal
    (STEER_COMBINED, ("combined", "lora"), ["sft", "merge", "dpo"]),  # SFT then DPO with LoRA
    (STEER_DPO_FULL, ("dpo", "full"), ["dpo"]),                  # DPO alone, full fine-tuning
], ids=["session-sft-qlora", "session-sft-then-dpo-lora", "session-dpo-full"])
def test_sessions_export_and_every_stage_trains_two_steps(project_copy, loop, knowledge, capsys, steer, plan, stages):
    from tests.driver import HAPPY, Session, answer_from

    project = project_copy("support-bot")
    values = Session(loop, knowledge, str(project)).run(answer_from({**HAPPY, **steer}))
    decisions = values["decisions"]
    assert (decisions["training_approach"]["fields"]["approach"], decisions["peft"]["fields"]["method"]) == plan
    assert preflight_main(["--project", str(project)]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    report = _report(project)
    assert report["ok"] and [s["stage"] for s in report["stages"]] == stages
    for s in report["stages"]:
        assert s["status"] == "ran"
        if s["stage"] != "merge":
            assert s["steps"] == 2 and s["file"] == f"phase-2-training/trl/{s['stage']}.yaml"
            assert (project / s["file"]).is_file()  # the exported file it ran
    assert "pre-flight passed" in out
    status, line = outcome(report, report["fingerprint"])
    assert status == "passed" and "Pre-flight passed" in line
    if plan[1] == "qlora" and not report["mode"].endswith("(GPU)"):
        assert any("4-bit loading" in n for n in report["not_exercised"])


def test_sidecar_plan_sft_then_dpo_qlora(project_copy, capsys):
    project = _project(project_copy, COMBINED_QLORA)
    assert preflight_main(["--project", str(project)]) == 0, capsys.readouterr()
    report = _report(project)
    assert [(s["stage"], s["status"]) for s in report["stages"]] == [("sft", "ran"), ("merge", "ran"), ("dpo", "ran")]


def test_a_broken_key_is_named(project_copy, capsys):
    project = _project(project_copy, FULL_SFT)
    from agent.planning.cli import write_export

    assert write_export(project, "trl")[0] == 0
    path = project / "phase-2-training" / "trl" / "sft.yaml"
    # A typo in a key: TRL's parser refuses it; pre-flight names the file and the key.
    path.write_text(path.read_text().replace("per_device_train_batch_size:", "per_device_train_batchsize:"))
    assert preflight_main(["--project", str(project)]) == 1
    report = _report(project)
    [sft] = report["stages"]
    assert sft["status"] == "failed" and sft["key"] == "per_device_train_batchsize"
    assert sft["file"] == "phase-2-training/trl/sft.yaml"
    assert "per_device_train_batchsize" in capsys.readouterr().out
    status, line = outcome(report, report["fingerprint"])
    assert status == "failed" and "per_device_train_batchsize" in line
    # A value the model cannot take: peft fails at load time; pre-flight names the key it came from.
    path.write_text(path.read_text().replace("per_device_train_batchsize:", "per_device_train_batch_size:")
                    .replace("dtype: float32", "dtype: float32\nuse_peft: true\nlora_target_modules: [q_projection]"))
    assert preflight_main(["--project", str(project)]) == 1
    [sft] = _report(project)["stages"]
    assert sft["key"] == "lora_target_modules", sft


def test_multi_gpu_launch_is_checked_by_accelerate(project_copy, tmp_path):
    from accelerate.commands.config.config_args import ClusterConfig

    from agent.planning.cli import write_export

    decisions = variant(infrastructure={"instance_type": "p4d.24xlarge", "gpu_count": 8},
                        training_approach={"approach": "combined"}, training_data={"dpo_pairs": 5000})
    project = _project(project_copy, decisions)
    code, ex = write_export(project, "trl")
    assert code == 0
    folder = project / "phase-2-training" / "trl"
    cfg = ClusterConfig.from_yaml_file(yaml_file=str(folder / "accelerate.yaml"))  # refuses unknown keys
    assert cfg.distributed_type.value == "FSDP" and cfg.num_processes == 8 and cfg.mixed_precision == "bf16"
    assert cfg.fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "MistralDecoderLayer"
    manifest = json.loads((folder / "export-manifest.json").read_text())
    checked = check_launch(folder, manifest)
    assert checked.count("8 processes, FSDP2 wrapping MistralDecoderLayer") == 2, checked
    assert "trl.scripts.sft" in checked and "trl.scripts.dpo" in checked


def test_without_trainers_says_how_to_install(monkeypatch, project_copy, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a))
    assert preflight_main(["--project", str(_project(project_copy, FULL_SFT))]) == 2
    assert "training-pipeline[trainers]" in capsys.readouterr().err


def test_full_size_without_a_gpu_says_so(project_copy, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert preflight_main(["--project", str(_project(project_copy, FULL_SFT)), "--full-size"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_outcome_reaches_the_menu_and_the_spec(project_copy):
    from agent.artifacts.phase_spec import render_phase_spec
    from agent.nodes.menu import menu_options, progress_text
    from agent.planning.export import fingerprint
    from agent.planning.preflight import Report, StageResult, save_report

    project = _project(project_copy, FULL_SFT)
    decisions = {s: {"fields": FULL_SFT[s], "choice": s, "rationale": "r"} for s in SECTIONS}
    state = {"project_dir": str(project), "decisions": decisions, "phase_status": "complete", "project": {}}
    assert [o.value for o in menu_options(state)] == ["A", "P", "F", "C"]  # offered before C
    failed = Report(ok=False, fingerprint=fingerprint(decisions), mode="tiny (CPU)", model="Qwen2Config", when="now",
                    stages=[StageResult(stage="sft", status="failed", file="phase-2-training/trl/sft.yaml",
                                        error="ValueError: bad", key="lora_r")])
    save_report(project, failed)
    assert "Pre-flight FAILED at the SFT stage (phase-2-training/trl/sft.yaml, key `lora_r`)" in progress_text(state, str(project))
    status_line = outcome(load_report(project), fingerprint(decisions))
    spec = render_phase_spec(decisions, [], {}, preflight=status_line)
    assert "- [ ] Pre-flight FAILED" in spec
    assert outcome(load_report(project), "another-plan")[0] == "stale"
    save_report(project, Report(ok=True, fingerprint=fingerprint(decisions), mode="tiny (CPU)", model="m", when="now",
                                stages=[StageResult(stage="sft", status="ran", steps=2)]))
    assert "- [x] Pre-flight passed (SFT: 2 optimizer steps each" in render_phase_spec(
        decisions, [], {}, preflight=outcome(load_report(project), fingerprint(decisions)))


def test_full_size_builds_the_planned_architecture():
    """--full-size builds each catalogue model's real shape: its parameter count matches the catalogue."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    from agent.model_catalog import load_catalog
    from agent.planning.preflight import CONFIG_CLASS, _full_kwargs

    for spec in load_catalog():
        if spec.params_b > 9:
            continue  # same code path; keeps the test quick
        cfg = getattr(transformers, CONFIG_CLASS[spec.family])(**_full_kwargs(spec, 2048))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        ratio = model.num_parameters() / 1e9 / spec.params_b
        # Multimodal Gemma 3 (4B and up): the language model only, without its vision tower.
        low = 0.88 if spec.family == "gemma3" and spec.params_b > 2 else 0.98
        assert low < ratio < 1.02, (spec.key, ratio)


def test_zero3_launch_is_checked_by_accelerate(project_copy):
    from accelerate.commands.config.config_args import ClusterConfig

    from agent.planning.cli import write_export

    decisions = variant(infrastructure={"instance_type": "p4d.24xlarge", "gpu_count": 8, "sharding": "deepspeed-zero3"})
    project = _project(project_copy, decisions)
    assert write_export(project, "trl")[0] == 0
    folder = project / "phase-2-training" / "trl"
    cfg = ClusterConfig.from_yaml_file(yaml_file=str(folder / "accelerate.yaml"))
    assert cfg.distributed_type.value == "DEEPSPEED" and cfg.deepspeed_config["zero_stage"] == 3
    checked = check_launch(folder, json.loads((folder / "export-manifest.json").read_text()))
    assert "8 processes, DeepSpeed ZeRO-3" in checked and "trl.scripts.sft" in checked
