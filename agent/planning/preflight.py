"""Pre-flight: run every exported TRL stage for two optimizer steps before anyone pays for GPUs.

Each stage is parsed from its exported YAML by TRL's own script parser (what `trl sft --config`
does) and run through the script's own `main`, in a scratch folder laid out like the project (the
exported relative data and output paths hold there), on a model with the chosen family's
architecture: the family's transformers config class, two layers, small width, random weights,
and a word-level tokenizer built locally. Nothing is downloaded. Only what a CPU cannot do is
overridden (the base model, steps, 4-bit loading and paged optimizers without bitsandbytes on
CUDA); each override is reported as not exercised.

`--full-size` on a GPU builds the planned architecture at full size instead (random weights), at the
planned sequence length and micro-batch, and measures peak memory and tokens/s as
`tools/gpu-measure` does (step 1 warms up, the later steps are timed).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import os
import re
import runpy
import shutil
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from agent.fsutil import atomic_write_text
from agent.model_catalog import ModelSpec

REPORT = "phase-2-training/preflight.json"
TRAINER_MODULES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")
INSTALL_HINT = ("pre-flight needs the trainer libraries: pip install 'training-pipeline[trainers]' "
                "(from a checkout: make .venv/.trainers)")
TINY_STEPS, FULL_STEPS = 2, 4
TINY = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, vocab_size=512)
TOKENIZER_MAX_WORDS = 32000
SEED = 1234

# The family's transformers config class (what `AutoConfig` picks for its checkpoints' model_type).
CONFIG_CLASS = {
    "llama": "LlamaConfig", "mistral": "MistralConfig", "mixtral": "MixtralConfig", "qwen2": "Qwen2Config",
    "qwen3": "Qwen3Config", "gemma": "GemmaConfig", "gemma2": "Gemma2Config", "gemma3": "Gemma3TextConfig",
    "phi3": "Phi3Config", "falcon": "FalconConfig", "gpt2": "GPT2Config",
}


class TrainersMissing(RuntimeError):
    pass


@dataclass
class StageResult:
    stage: str
    status: str  # "ran", "failed", "not run"
    file: str = ""
    steps: int = 0
    seconds: float = 0.0
    loss: float | None = None
    error: str = ""
    key: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    not_exercised: list[str] = field(default_factory=list)
    peak_memory_gb: float | None = None
    tokens_per_s: float | None = None


@dataclass
class Report:
    ok: bool
    fingerprint: str
    mode: str  # "tiny (CPU)", "tiny (GPU)", "full size (GPU)"
    model: str
    stages: list[StageResult]
    not_exercised: list[str] = field(default_factory=list)
    launch_check: str = ""
    when: str = ""
    estimate_gb: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def first_failure(self) -> StageResult | None:
        return next((s for s in self.stages if s.status == "failed"), None)


def require_trainers() -> None:
    missing = [m for m in TRAINER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise TrainersMissing(f"{INSTALL_HINT} (missing: {', '.join(missing)})")


# ---------------------------------------------------------------- model, tokenizer, data
def _tiny_kwargs(family: str, max_length: int) -> dict[str, Any]:
    kw: dict[str, Any] = dict(TINY, max_position_embeddings=max(max_length + 8, 256), bos_token_id=1, eos_token_id=2,
                              pad_token_id=0, tie_word_embeddings=False)
    if family == "gpt2":
        return dict(n_layer=2, n_embd=64, n_head=4, n_inner=128, vocab_size=TINY["vocab_size"],
                    n_positions=max(max_length + 8, 256), bos_token_id=1, eos_token_id=2)
    if family == "falcon":
        kw.pop("intermediate_size"), kw.pop("num_key_value_heads"), kw.pop("head_dim")
    if family == "mixtral":
        kw.update(num_local_experts=4, num_experts_per_tok=2)
    if family in ("qwen2", "qwen3"):
        kw.update(max_window_layers=2)
    return kw


def _full_kwargs(spec: ModelSpec, max_length: int) -> dict[str, Any]:
    if spec.family == "gpt2":
        return dict(n_layer=spec.layers, n_embd=spec.hidden_size, n_head=spec.num_heads, n_inner=spec.intermediate_size,
                    vocab_size=spec.vocab_size, n_positions=max(spec.context_length, max_length), bos_token_id=1, eos_token_id=2)
    kw: dict[str, Any] = dict(num_hidden_layers=spec.layers, hidden_size=spec.hidden_size,
                              intermediate_size=spec.intermediate_size, num_attention_heads=spec.num_heads,
                              num_key_value_heads=spec.num_kv_heads, vocab_size=spec.vocab_size,
                              max_position_embeddings=max(spec.context_length, max_length),
                              tie_word_embeddings=spec.tie_word_embeddings, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    if spec.head_dim:
        kw["head_dim"] = spec.head_dim
    if spec.num_experts:
        kw.update(num_local_experts=spec.num_experts, num_experts_per_tok=spec.experts_per_token or 2)
    if spec.family == "falcon":
        kw.pop("intermediate_size"), kw.pop("num_key_value_heads")
    return kw


def build_model_folder(folder: Path, family: str, max_length: int, spec: ModelSpec | None = None,
                       device: str = "cpu") -> dict[str, Any]:
    """Save a random-weight model of the family's architecture and a local tokenizer into `folder`."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    cls_name = CONFIG_CLASS.get(family)
    if cls_name is None:
        raise ValueError(f"no transformers config class known for family {family!r}")
    kw = _full_kwargs(spec, max_length) if spec else _tiny_kwargs(family, max_length)
    cfg = getattr(transformers, cls_name)(**kw)
    torch.manual_seed(SEED)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    params = model.num_parameters()
    del model
    tok = build_tokenizer(min(cfg.vocab_size, TOKENIZER_MAX_WORDS))
    tok.save_pretrained(folder)
    return {"config_class": cls_name, "params": params, "model_class": cfg.architectures or ""}


def build_tokenizer(n_vocab: int) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials)}
    for i in range(n_vocab - len(specials)):
        vocab[f"w{i}"] = len(specials) + i
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    tok.model_max_length = 10**9
    return tok


def write_rows(path: Path, stage: str, n: int, words: int, n_vocab: int, seed: int) -> None:
    """Synthetic rows in the planned format: prompt/completion pairs (SFT), prompt/chosen/rejected (DPO).

    `words` is the tokens per example (prompt + answer + EOS), so full-size runs use exactly max_length.
    """
    import random

    rng = random.Random(seed)
    p_len = max(1, words // 2)
    c_len = max(1, words - p_len - 1)

    def text(k: int) -> str:
        return " ".join(f"w{rng.randrange(n_vocab - 4)}" for _ in range(k))

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            row = ({"prompt": text(p_len), "completion": " " + text(c_len)} if stage == "sft" else
                   {"prompt": text(p_len), "chosen": " " + text(c_len), "rejected": " " + text(c_len)})
            fh.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------- locating an error in the export
def locate_key(message: str, config: dict[str, Any]) -> str | None:
    """The exported key an error message points at: named as --key, named bare, or by its value."""
    keys = list(config)
    for flag in re.findall(r"--([A-Za-z0-9_]+)", message):
        if flag in config:
            return flag
    for k in sorted(keys, key=len, reverse=True):
        if len(k) > 3 and re.search(rf"(?<![A-Za-z0-9_]){re.escape(k)}(?![A-Za-z0-9_])", message):
            return k
    for k in keys:
        v = config[k]
        items = v if isinstance(v, list) else list(v.values()) if isinstance(v, dict) else [v]
        for item in items:
            s = str(item)
            if isinstance(item, (str, int, float)) and not isinstance(item, bool) and len(s) >= 4 and s in message:
                return k
    return None


def _error_text(exc: BaseException, stderr: str) -> str:
    if isinstance(exc, SystemExit):
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else f"exited with {exc.code}"
    return f"{type(exc).__name__}: {exc}".strip()


# ---------------------------------------------------------------- running
def nvidia_smi_used_mib() -> int | None:
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
        vals = [int(x) for x in out.stdout.split() if x.strip().isdigit()]
        return vals[0] if vals else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


class _Recorder:
    """TrainerCallback: progress per optimizer step, step times and peak memory (the gpu-measure method)."""

    def __init__(self, stage: str, steps: int, progress: Callable[[str], None], cuda: bool):
        from transformers import TrainerCallback

        rec = self
        self.times: list[float] = []
        self.peak_bytes = 0
        self.smi_mib = 0  # what nvidia-smi shows: the allocator's reserve plus the CUDA context
        self.loss: float | None = None

        class CB(TrainerCallback):
            def on_step_begin(self, args, state, control, **kw):
                if cuda:
                    import torch
                    torch.cuda.synchronize()
                rec._t = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                if cuda:
                    import torch
                    torch.cuda.synchronize()
                    rec.peak_bytes = max(rec.peak_bytes, torch.cuda.max_memory_reserved())
                    rec.smi_mib = max(rec.smi_mib, nvidia_smi_used_mib() or 0)
                rec.times.append(time.perf_counter() - rec._t)
                progress(f"{stage.upper()} stage: optimizer step {state.global_step}/{steps}")

            def on_log(self, args, state, control, logs=None, **kw):
                if logs and "loss" in logs:
                    rec.loss = float(logs["loss"])

        self.callback = CB()


@contextlib.contextmanager
def _with_callback(script: str, cb: Any):
    """Hand our callback to the trainer the script builds (the script passes none of its own)."""
    import trl

    name = "SFTTrainer" if script == "sft" else "DPOTrainer"
    original = getattr(trl, name)

    class Recorded(original):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **k):
            k["callbacks"] = [*(k.get("callbacks") or []), cb]
            super().__init__(*a, **k)

    setattr(trl, name, Recorded)
    try:
        yield
    finally:
        setattr(trl, name, original)


def bnb_usable() -> bool:
    """bitsandbytes' 4-bit loading and paged optimizers need it installed and a CUDA GPU here."""
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None


def _overrides(cfg: dict[str, Any], step: dict[str, Any], model_dir: Path, steps: int, cuda: bool,
               full_size: bool) -> tuple[list[str], dict[str, Any], list[str]]:
    """CLI overrides on top of `--config` (TRL's CLI precedence), what they replace, and what is not exercised."""
    over: dict[str, Any] = {"max_steps": steps, "report_to": "none", "save_strategy": "no", "logging_steps": 1,
                            "dataloader_num_workers": 0, "seed": SEED, "disable_tqdm": True}
    skipped: list[str] = []
    if not step.get("model_from_stage"):
        over["model_name_or_path"] = str(model_dir)
        over["model_revision"] = "main"
    if not cuda:
        over["use_cpu"] = True
    bnb = bnb_usable()
    if not bnb:
        if cfg.get("load_in_4bit") or cfg.get("load_in_8bit"):
            over["load_in_4bit"] = False
            over["load_in_8bit"] = False
            skipped.append(f"{'4' if cfg.get('load_in_4bit') else '8'}-bit loading of the base model "
                           "(bitsandbytes needs a CUDA GPU here): the stage ran on unquantized weights")
        if str(cfg.get("optim", "")).startswith(("paged_", "adamw_bnb")):
            over["optim"] = "adamw_torch"
            skipped.append(f"optimizer {cfg['optim']} (bitsandbytes needs a CUDA GPU here): adamw_torch ran instead")
    if not full_size:
        skipped.append("planned model size: a 2-layer model of the same architecture ran")
    argv = []
    for k, v in over.items():
        argv += [f"--{k}", str(v).lower() if isinstance(v, bool) else str(v)]
    return argv, over, skipped


def _run_train(step: dict[str, Any], folder: Path, model_dir: Path, steps: int, cuda: bool, full_size: bool,
               progress: Callable[[str], None], words: int, n_vocab: int) -> StageResult:
    stage = step["stage"]
    rel = f"{step['folder']}/{step['config']}"
    res = StageResult(stage=stage, status="failed", file=rel)
    path = folder / step["config"]
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        res.error = f"{type(exc).__name__}: {exc}"
        return res
    if not isinstance(cfg, dict):
        res.error = "the file is not a YAML mapping"
        return res
    batch = int(cfg.get("per_device_train_batch_size") or 1)
    accum = int(cfg.get("gradient_accumulation_steps") or 1)
    argv, over, skipped = _overrides(cfg, step, model_dir, steps, cuda, full_size)
    res.overrides, res.not_exercised = over, skipped
    script = importlib.import_module(f"trl.scripts.{step['script']}")
    rec = _Recorder(stage, steps, progress, cuda)
    err = io.StringIO()
    t0 = time.perf_counter()
    progress(f"{stage.upper()} stage: loading {rel}")
    try:
        with contextlib.redirect_stderr(err):
            parsed = script.make_parser().parse_args_and_config(["--config", str(path), *argv])
        if cuda:
            import torch
            torch.cuda.reset_peak_memory_stats()
        with _with_callback(step["script"], rec.callback):
            script.main(*parsed)
    except (Exception, SystemExit) as exc:  # any failure of the user's run is the report's content
        res.error = _error_text(exc, err.getvalue())[:600]
        tb = traceback.extract_tb(exc.__traceback__)
        res.key = locate_key(res.error, cfg) or (locate_key(str(exc.__cause__ or ""), cfg) if exc.__cause__ else None)
        if tb and not res.key:
            res.error += f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})"
        res.seconds = round(time.perf_counter() - t0, 1)
        res.steps = len(rec.times)
        return res
    res.status = "ran" if len(rec.times) >= steps else "failed"
    if res.status == "failed":
        res.error = f"only {len(rec.times)} of {steps} optimizer steps ran"
    res.steps, res.loss = len(rec.times), rec.loss
    res.seconds = round(time.perf_counter() - t0, 1)
    if cuda and rec.peak_bytes:
        # nvidia-smi's figure is what the estimate targets; torch's reserved peak when it cannot be read.
        res.peak_memory_gb = round((rec.smi_mib * 2**20 if rec.smi_mib else rec.peak_bytes) / 1e9, 2)
        timed = rec.times[1:] or rec.times
        per_example = 2 if stage == "dpo" else 1  # chosen + rejected
        tokens = batch * accum * words * per_example
        res.tokens_per_s = round(tokens / (sum(timed) / len(timed)), 1)
    return res


def _write_all_data(manifest: dict[str, Any], folder: Path, steps: int, words: int, n_vocab: int,
                    stages: list[StageResult]) -> bool:
    """Synthetic rows for every stage where the exports read them, all before the first stage runs:
    the layout is the project's, so a stage that would read another stage's files shows here."""
    for step in manifest["steps"]:
        if step["kind"] != "train":
            continue
        paths = [p for p in (step["train_file"], step.get("eval_file")) if p]
        if any(Path(p).is_absolute() or ".." in Path(p).parts for p in paths):
            stages.append(StageResult(stage=step["stage"], status="failed", file=f"{manifest['folder']}/{step['config']}",
                                      error="pre-flight writes synthetic rows only at data paths inside the project"))
            return False
        try:
            cfg = yaml.safe_load((folder / step["config"]).read_text(encoding="utf-8")) or {}
            rows = int(cfg.get("per_device_train_batch_size") or 1) * int(cfg.get("gradient_accumulation_steps") or 1)
        except (OSError, yaml.YAMLError, TypeError, ValueError, AttributeError):
            rows = 8  # the stage itself reports what is wrong with its file
        write_rows(Path(step["train_file"]), step["stage"], rows * steps + 4, words, n_vocab, SEED)
        if step.get("eval_file"):
            write_rows(Path(step["eval_file"]), step["stage"], 4, words, n_vocab, SEED + 1)
    return True


def _run_merge(step: dict[str, Any], folder: Path, progress: Callable[[str], None]) -> StageResult:
    rel = f"{step['folder']}/{step['file']}"
    res = StageResult(stage="merge", status="failed", file=rel)
    progress("merging the SFT adapter into the base model")
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            runpy.run_path(str(folder / step["file"]), run_name="__main__")
        res.status = "ran"
    except (Exception, SystemExit) as exc:
        res.error = f"{type(exc).__name__}: {exc}"[:600]
    res.seconds = round(time.perf_counter() - t0, 1)
    return res


def check_launch(folder: Path, manifest: dict[str, Any]) -> str:
    """Dry run of launch.sh's `accelerate launch` lines (accelerate has no dry-run flag): each line is
    parsed by accelerate's own launch parser, merged with the config file as `accelerate launch` does,
    and turned into the environment its launcher would start the processes with; nothing starts."""
    import shlex

    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    lines = [ln for ln in (folder / "launch.sh").read_text(encoding="utf-8").splitlines() if ln.startswith("accelerate launch")]
    if not lines:
        return "single GPU: no accelerate launch lines"
    checked = []
    for ln in lines:
        argv = shlex.split(ln)[2:]
        # launch.sh runs in the project folder; the paths in it are relative to that.
        argv = [str(folder.parent.parent / a) if a.startswith(manifest["folder"] + "/") and a.endswith(".yaml") and argv[i - 1] == "--config_file"
                else a for i, a in enumerate(argv)]
        args = launch_command_parser().parse_args(argv)
        args, defaults, _ = _validate_launch_command(args)
        if args.use_deepspeed:
            what = f"DeepSpeed ZeRO-{defaults.deepspeed_config.get('zero_stage')}"
            if importlib.util.find_spec("deepspeed"):
                prepare_deepspeed_cmd_env(args)  # the deepspeed command line and environment it would start
            else:
                what += " (deepspeed is not installed here: its command line was not built)"
        else:
            env = prepare_multi_gpu_env(args)
            what = f"FSDP{env.get('FSDP_VERSION', '')} wrapping {env.get('FSDP_TRANSFORMER_CLS_TO_WRAP', '?')}"
        checked.append(f"{args.num_processes} processes, {what}, module {args.training_script}")
    return "; ".join(checked)


def run_preflight(project: Path, manifest: dict[str, Any], decisions: dict[str, Any], *, full_size: bool = False,
                  progress: Callable[[str], None] = lambda s: None, spec: ModelSpec | None = None,
                  estimate_gb: float | None = None) -> Report:
    """Run the exported stages in order in a scratch copy of the project's layout; never raises for a run's failure."""
    require_trainers()
    import torch

    from agent.planning.export import family_of, fingerprint
    from agent.planning.plan import section_fields

    f = section_fields(decisions)
    family = family_of(f.get("base_model") or {})
    cuda = torch.cuda.is_available()
    if full_size and not cuda:
        raise RuntimeError("--full-size needs a CUDA GPU; this machine has none (pre-flight without it runs a 2-layer model on CPU)")
    if full_size and spec is None:
        raise RuntimeError("--full-size needs a model from the catalogue (its real shape)")
    max_length = int((f.get("hyperparameters") or {}).get("max_length") or 512)
    folder_rel = manifest["folder"]
    scratch = Path(tempfile.mkdtemp(prefix="preflight-"))
    cwd = os.getcwd()
    stages: list[StageResult] = []
    report = Report(ok=False, fingerprint=fingerprint(decisions), model="", stages=stages, estimate_gb=estimate_gb,
                    mode="full size (GPU)" if full_size else ("tiny (GPU)" if cuda else "tiny (CPU)"),
                    when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    try:
        shutil.copytree(project / folder_rel, scratch / folder_rel)
        folder = scratch / folder_rel
        os.chdir(scratch)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.logging.set_verbosity_error()
        progress(f"building a {'full-size' if full_size else '2-layer'} {family} model with random weights")
        info = build_model_folder(scratch / ".preflight-model", family, max_length, spec if full_size else None,
                                  "cuda" if full_size else "cpu")
        report.model = f"{info['config_class']} ({info['params']:,} parameters, random weights)"
        n_vocab = min(TOKENIZER_MAX_WORDS, spec.vocab_size if (full_size and spec) else TINY["vocab_size"])
        words = max_length if full_size else 24
        steps = FULL_STEPS if full_size else TINY_STEPS
        failed = not _write_all_data(manifest, folder, steps, words, n_vocab, stages)
        for step in manifest["steps"]:
            step = {**step, "folder": folder_rel}
            if failed:
                stages.append(StageResult(stage=step.get("stage", "merge"), status="not run",
                                          file=f"{folder_rel}/{step.get('config') or step.get('file')}",
                                          error="an earlier stage failed"))
                continue
            if step["kind"] == "merge":
                r = _run_merge(step, folder, progress)
            else:
                r = _run_train(step, folder, scratch / ".preflight-model", steps, cuda, full_size, progress, words, n_vocab)
            stages.append(r)
            failed = r.status != "ran"
        if manifest.get("gpu_count", 1) > 1:
            report.not_exercised.append(f"sharding across {manifest['gpu_count']} GPUs ({manifest.get('sharding')}): "
                                        "each stage ran in one process")
            try:
                report.launch_check = "accelerate launch dry run: " + check_launch(folder, manifest)
            except (Exception, SystemExit) as exc:
                report.launch_check = f"accelerate launch dry run FAILED: {type(exc).__name__}: {exc}"
                failed = True
        for s in stages:
            report.not_exercised += [x for x in s.not_exercised if x not in report.not_exercised]
        report.ok = not failed and all(s.status == "ran" for s in stages)
    finally:
        os.chdir(cwd)
        shutil.rmtree(scratch, ignore_errors=True)
    return report


def save_report(project: Path, report: Report) -> Path:
    return atomic_write_text(REPORT, json.dumps(report.to_json(), indent=2) + "\n", root=project)


def load_report(project: Path | str) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(project) / REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def outcome(report: dict[str, Any] | None, current_fingerprint: str | None) -> tuple[str, str]:
    """("passed" | "failed" | "stale" | "not run", one line) for the spec and the menu."""
    if not report:
        return "not run", "Pre-flight not run (`training-pipeline preflight --project DIR`, or at the menu)"
    when = report.get("when", "")
    if current_fingerprint and report.get("fingerprint") != current_fingerprint:
        return "stale", f"Pre-flight of {when} ran an earlier plan: run it again"
    stages = report.get("stages") or []
    if report.get("ok"):
        ran = ", ".join(s["stage"].upper() for s in stages if s["stage"] != "merge")
        return "passed", f"Pre-flight passed ({ran}: {stages[0]['steps'] if stages else 0} optimizer steps each, {report.get('mode')}, {when})"
    bad = next((s for s in stages if s.get("status") == "failed"), None)
    if bad:
        where = f"{bad['file']}" + (f", key `{bad['key']}`" if bad.get("key") else "")
        return "failed", f"Pre-flight FAILED at the {bad['stage'].upper()} stage ({where}): {bad['error']}"
    return "failed", f"Pre-flight FAILED: {report.get('launch_check') or 'see phase-2-training/preflight.json'}"
