"""`training-pipeline estimate` and `training-pipeline export`, as functions the main CLI dispatches to."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from agent.fsutil import atomic_write_text
from agent.model_catalog import find_model
from agent.planning import gpu as gpus
from agent.planning.export import AXOLOTL_FOLDER, TRL_FOLDER, Export, ExportError, blocking_problems, export_axolotl, export_trl
from agent.project import read_overview
from agent.planning.memory import OPTIMIZERS, default_optimizer, estimate_memory
from agent.planning.plan import replicated_gb

SECTION_BY_ID = {
    "tp-001": "base_model",
    "tp-002": "training_approach",
    "tp-003": "training_data",
    "tp-004": "peft",
    "tp-005": "hyperparameters",
    "tp-006": "infrastructure",
}
TRAINING_FOLDER = "phase-2-training"
DEFAULT_BITS = {"full": 32, "lora": 16, "qlora": 4}


# ---------------------------------------------------------------- estimate
def _estimate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="training-pipeline estimate", description="Estimate fine-tuning GPU memory.")
    p.add_argument("--params", type=float, help="model size in billions of parameters (or use --model)")
    p.add_argument("--model", help="catalogue key or Hugging Face repo: uses its real shape")
    p.add_argument("--method", choices=("full", "lora", "qlora"), required=True)
    p.add_argument("--bits", type=int, choices=(4, 8, 16, 32), help="weight bits (default: full 32, lora 16, qlora 4)")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--micro-batch", type=int, default=1)
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps (keeps full fine-tuning's gradients)")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help="default: paged_adamw_32bit for qlora, else adamw")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank")
    p.add_argument("--target-modules", help="comma-separated; default all linear layers")
    p.add_argument("--dpo", action="store_true", help="DPO: chosen and rejected sequences per example")
    p.add_argument("--gpu", help='GPUs to run on: "H200", "RTX 4090", "2x A100 80GB", "g5.2xlarge"')
    p.add_argument("--examples", type=int, help="training examples (DPO: pairs), for the training time")
    p.add_argument("--epochs", type=float, default=1.0, help="epochs, for the training time (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def estimate_main(argv: list[str] | None = None) -> int:
    args = _estimate_parser().parse_args(argv)
    spec = find_model(args.model) if args.model else None
    if args.model and spec is None:
        print(f"error: unknown model {args.model!r} (use --params for models outside the catalogue)", file=sys.stderr)
        return 2
    params_b = args.params or (spec.params_b if spec else None)
    if not params_b:
        print("error: give --params or --model", file=sys.stderr)
        return 2
    optimizer = args.optimizer or default_optimizer(args.method)
    try:
        est = estimate_memory(
            params_b,
            args.method,
            args.bits or DEFAULT_BITS[args.method],
            lora_rank=args.rank,
            target_modules=[t.strip() for t in args.target_modules.split(",") if t.strip()] if args.target_modules else None,
            seq_len=args.seq_len,
            micro_batch=args.micro_batch,
            gradient_checkpointing=args.gradient_checkpointing,
            optimizer=optimizer,
            shape=spec,
            dpo=args.dpo,
            gradient_accumulation_steps=args.grad_accum,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stated = gpus.parse_gpu(args.gpu) if args.gpu else None
    if args.gpu and stated is None:
        print(f"error: no GPU recognised in {args.gpu!r} (try a card such as \"RTX 4090\", \"2x A100 80GB\" "
              "or an instance type such as \"g5.2xlarge\")", file=sys.stderr)
        return 2
    if args.examples is not None and (args.examples < 0 or args.epochs <= 0):
        print("error: --examples must be 0 or more and --epochs above 0", file=sys.stderr)
        return 2
    rep = replicated_gb(est)
    result = est.model_dump()
    result["model"] = spec.key if spec else None
    fit = gpus.fit_gpus(est.total_gb, rep)
    result["fit"] = ({"gpu_class_gb": fit[0], "count": fit[1], "gpus": gpus.describe_fit(*fit),
                      "note": gpus.SHARDING_NOTE if fit[1] > 1 else ""} if fit else
                     {"gpu_class_gb": None, "count": None, "gpus": None,
                      "note": f"no GPU holds the {rep:.0f} GB every GPU needs: shorten the sequence or the micro-batch"})
    run_on = _run_on(args, est, spec, params_b, stated, fit)
    result["gpu"] = run_on
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    b = est.breakdown
    name = f"{spec.name} ({params_b:g}B)" if spec else f"{params_b:g}B model"
    print(f"{name}, {args.method}, {est.weight_bits}-bit weights, {optimizer}")
    for label, value in (("weights", b.weights), ("trainable params", b.trainable_params), ("gradients", b.gradients),
                         ("optimizer states", b.optimizer_states), ("activations", b.activations), ("overhead", b.overhead)):
        print(f"  {label:<18}{value:>9.2f} GB")
    print(f"  {'total':<18}{est.total_gb:>9.2f} GB"
          + (f"  ({est.cpu_offload_gb:.2f} GB paged optimizer state can move to CPU RAM: {est.min_gb:.2f} GB without it)"
             if est.cpu_offload_gb else ""))
    print(f"smallest fit: {result['fit']['gpus'] or result['fit']['note']}")
    if run_on:
        verdict = "fits" if run_on["fits"] else "does NOT fit"
        print(f"on {run_on['gpus']}: {verdict} ({run_on['per_gpu_gb']:.1f} GB per GPU of {run_on['memory_gb']:g} GB); "
              f"about {run_on['tokens_per_second']:,.0f} tokens/s")
        if run_on.get("hours") is not None:
            print(f"training time: about {run_on['hours']:.1f} hours for {args.examples:,} "
                  f"{'pairs' if args.dpo else 'examples'} x {args.epochs:g} epoch(s) "
                  f"(range {run_on['low_hours']:.1f}-{run_on['high_hours']:.1f})")
    print("assumptions:")
    for a in est.assumptions + (run_on["assumptions"] if run_on else []):
        print(f"  - {a}")
    return 0


def _run_on(args, est, spec, params_b: float, stated: gpus.GpuSpec | None, fit: tuple[int, int] | None) -> dict | None:
    """Fit, tokens/s and hours on the named GPUs, or on the smallest fit when only --examples is given."""
    if stated is None and (args.examples is None or fit is None):
        return None
    if stated is None:
        ref = gpus.reference_card(fit[0])
        stated = gpus.GpuSpec(card=ref["name"], memory_gb=ref["memory_gb"], count=fit[1], bf16_tflops=ref["bf16_tflops"])
    rep = replicated_gb(est)
    active = spec.active_params_b if spec and spec.active_params_b else params_b
    t = gpus.estimate_time(
        args.examples or 0, args.seq_len, args.epochs, active, args.method, gpus.gpu_class_for(stated.memory_gb),
        stated.count, card_name=stated.card if stated.bf16_tflops else None,
        gradient_checkpointing=args.gradient_checkpointing, dpo=args.dpo, micro_batch=args.micro_batch, shape=spec,
    )
    per_gpu = est.total_gb if stated.count == 1 else (est.total_gb - min(rep, est.total_gb)) / stated.count + min(rep, est.total_gb)
    return {
        "gpus": stated.label, "card": stated.card, "count": stated.count, "memory_gb": stated.memory_gb,
        "per_gpu_gb": round(per_gpu, 2), "fits": gpus.fits_in(est.total_gb, stated.memory_gb, stated.count, rep),
        "tokens_per_second": t.tokens_per_second,
        "hours": t.hours if args.examples is not None else None,
        "low_hours": t.low_hours if args.examples is not None else None,
        "high_hours": t.high_hours if args.examples is not None else None,
        "throughput_card": t.card, "assumptions": t.assumptions,
    }


# ---------------------------------------------------------------- export
def read_decisions(project_dir: Path) -> dict[str, dict]:
    """Section -> structured fields from the sidecar's tp-00x entries (key `training_pipeline`)."""
    return read_plan(project_dir)[0]


def read_plan(project_dir: Path) -> tuple[dict[str, dict], list[str]]:
    """(decisions by section, warnings_acknowledged) from the project's sidecar."""
    sidecar = project_dir / "sidecar.yaml"
    data = yaml.safe_load(sidecar.read_text(encoding="utf-8")) or {}
    out: dict[str, dict] = {}
    for entry in data.get("decisions") or []:
        if not isinstance(entry, dict):
            continue
        section = SECTION_BY_ID.get(str(entry.get("id", "")).lower())
        fields = entry.get("training_pipeline")
        if section and isinstance(fields, dict):
            out[section] = fields  # a later entry for the same id wins
    return out, [str(a) for a in data.get("warnings_acknowledged") or []]


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="training-pipeline export", description="Export the training run: TRL or Axolotl configs "
                                "per stage, launch.sh and, for several GPUs, an accelerate config.")
    p.add_argument("--project", required=True, help="project folder (with sidecar.yaml)")
    p.add_argument("--format", choices=("trl", "axolotl"), required=True)
    p.add_argument("--out", help=f"output folder; relative paths are under the project (default {TRL_FOLDER} or {AXOLOTL_FOLDER})")
    p.add_argument("--force", action="store_true", help="export even when the plan has errors")
    return p


def write_export(project: Path, fmt: str, out: str | None = None, force: bool = False,
                 err=None) -> tuple[int, Export | None]:
    """Export into the project folder; (exit code, the export). Errors in the plan refuse unless `force`."""
    err = err or sys.stderr
    if not (project / "sidecar.yaml").is_file():
        print(f"error: no sidecar.yaml in {project}", file=err)
        return 2, None
    try:
        decisions, acknowledged = read_plan(project)
        folder = out or (TRL_FOLDER if fmt == "trl" else AXOLOTL_FOLDER)
        ex = export_trl(decisions, folder) if fmt == "trl" else export_axolotl(decisions, folder)
    except (ExportError, yaml.YAMLError) as exc:
        print(f"error: {exc}", file=err)
        return 2, None
    problems = blocking_problems(decisions, {"constraints": read_overview(project).get("constraints", [])}, acknowledged)
    if problems:
        verb = "exporting anyway (--force)" if force else "not exported; fix them (revisit at the A/P/C menu) or pass --force"
        print(f"the plan has {len(problems)} error(s), {verb}:", file=err)
        for p in problems:
            print(f"  - [{p.id}] {p.message} Fix: {p.fix}", file=err)
        if not force:
            return 1, None
    root = project.resolve()
    base = Path(ex.folder)
    for name, text in ex.files.items():
        target = base / name if base.is_absolute() else root / base / name
        atomic_write_text(target, text, root=root if not base.is_absolute() else base)
        if name.endswith(".sh"):
            target.chmod(0o755)
    print(f"wrote {', '.join(ex.files)} in {ex.folder}")
    for n in ex.notes:
        print(f"note: {n}")
    return 0, ex


def export_main(argv: list[str] | None = None) -> int:
    args = _export_parser().parse_args(argv)
    return write_export(Path(args.project), args.format, args.out, args.force)[0]


# ---------------------------------------------------------------- preflight
def _preflight_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="training-pipeline preflight",
                                description="Run every exported TRL stage for two optimizer steps on a small model of the "
                                "planned architecture (CPU is enough), and report what ran.")
    p.add_argument("--project", required=True, help="project folder (with sidecar.yaml)")
    p.add_argument("--full-size", action="store_true", help="on a GPU: the planned model size at the planned sequence "
                   "length and micro-batch; reports peak memory and tokens/s next to the estimate")
    p.add_argument("--force", action="store_true", help="export and run even when the plan has errors")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _current_manifest(project: Path, decisions: dict) -> dict | None:
    from agent.planning.export import MANIFEST, fingerprint

    try:
        manifest = json.loads((project / TRL_FOLDER / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("fingerprint") == fingerprint(decisions) else None


def preflight_main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    from agent.planning import preflight as pf
    from agent.planning.plan import plan, resolve_model

    args = _preflight_parser().parse_args(argv)
    project = Path(args.project)
    console = Console(highlight=False, stderr=args.json)
    try:
        pf.require_trainers()
    except pf.TrainersMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not (project / "sidecar.yaml").is_file():
        print(f"error: no sidecar.yaml in {project}", file=sys.stderr)
        return 2
    decisions, _ = read_plan(project)
    manifest = _current_manifest(project, decisions)
    if manifest is None:  # no export yet, or one of an earlier plan: export the current decisions first
        code, ex = write_export(project, "trl", force=args.force)
        if ex is None:
            return code
        manifest = json.loads(ex.files["export-manifest.json"])
    else:
        console.print(f"[dim]using the exported files in {TRL_FOLDER} (they match the decisions)[/dim]")
    base = decisions.get("base_model") or {}
    spec = resolve_model(base.get("fields", base) if isinstance(base, dict) else None)
    try:
        estimate = plan(decisions).memory.total_gb
    except (ValueError, KeyError, TypeError):
        estimate = None
    try:
        with console.status("pre-flight: starting") as status:
            report = pf.run_preflight(project, manifest, decisions, full_size=args.full_size, spec=spec,
                                      estimate_gb=estimate, progress=lambda s: status.update(f"pre-flight: {s}"))
    except (RuntimeError, ValueError) as exc:  # no GPU for --full-size, a family without a known architecture
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pf.save_report(project, report)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print_report(console, report)
    return 0 if report.ok else 1


def _print_report(console, report) -> None:
    console.print(f"Pre-flight, {report.mode}: {report.model}")
    for s in report.stages:
        mark = {"ran": "[green]ran[/green]", "failed": "[red]FAILED[/red]"}.get(s.status, "[yellow]not run[/yellow]")
        line = f"  {s.stage.upper():<6} {mark}  {s.file}"
        if s.status == "ran" and s.stage != "merge":
            line += f"  {s.steps} optimizer steps, loss {s.loss:.3f}" if s.loss is not None else f"  {s.steps} optimizer steps"
            line += f", {s.seconds:g} s"
        if s.peak_memory_gb is not None:
            est = f" (plan's estimate {report.estimate_gb:.1f} GB)" if report.estimate_gb else ""
            line += f"\n         peak memory {s.peak_memory_gb:.1f} GB{est}, {s.tokens_per_s:,.0f} tokens/s"
        if s.status != "ran":
            line += f"\n         {s.error}" + (f"\n         key: {s.key}" if s.key else "")
        console.print(line)
    if report.launch_check:
        console.print(f"  {report.launch_check}")
    if report.not_exercised:
        console.print("not exercised here:")
        for n in report.not_exercised:
            console.print(f"  - {n}")
    console.print("[green]pre-flight passed[/green]" if report.ok else "[red]pre-flight failed[/red]")
