"""Write the phase's files into the project folder (the only module here that does I/O)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.artifacts.config_template import render_config_template
from agent.artifacts.decision_log import update_decision_log
from agent.artifacts.markdown import inline
from agent.artifacts.phase_spec import render_phase_spec
from agent.artifacts.project_spec import update_project_spec
from agent.artifacts.skip_record import render_skip_record
from agent.artifacts.yaml_scalar import quoted
from agent.fsutil import atomic_write_text, safe_join

SPEC = "phase-2-training/spec.md"
CONFIG_TEMPLATE = "phase-2-training/templates/training-config.template.yaml"
DECISION_LOG = "decision-log.md"
PROJECT_SPEC = "project-spec.md"


def _read(root: Path, rel: str) -> str | None:
    path = safe_join(root, rel)
    if not path.exists():
        return None
    # newline="" keeps CRLF files byte for byte: we only own our own sections.
    with open(path, encoding="utf-8", newline="") as fh:
        return fh.read()


def _new_decision_log(project: dict[str, Any]) -> str:
    """A header in the shape step 01 creates, for a project folder that lacks the log."""
    name = str(project.get("name") or "project")
    created = project.get("created")
    front = [f"project_name: {quoted(name)}"] + ([f"created: {quoted(str(created))}"] if created else [])
    return "\n".join(["---", *front, "---", "", f"# {inline(name)} - Decision Log", "", "## Decisions", ""]) + "\n"


def _write(root: Path, files: dict[str, str]) -> list[str]:
    for rel, text in files.items():
        atomic_write_text(rel, text, root=root)
    return list(files)


def _preflight(root: Path, decisions: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The last pre-flight's outcome for these decisions (stale when they changed since)."""
    from agent.planning.export import fingerprint
    from agent.planning.preflight import load_report, outcome

    return outcome(load_report(root), fingerprint(decisions))


def write_phase_artifacts(
    project_dir: Path | str,
    decisions: dict[str, dict[str, Any]],
    superseded: list[dict[str, Any]],
    knowledge: list[dict[str, Any]],
    project: dict[str, Any],
    pitfalls: list[dict[str, Any]] | None = None,
    estimate_summary: str | None = None,
) -> list[str]:
    """Render and write the four Phase 2 files; return their paths relative to the project."""
    root = Path(project_dir)
    log = _read(root, DECISION_LOG)
    if log is None:
        log = _new_decision_log(project)
    return _write(
        root,
        {
            SPEC: render_phase_spec(decisions, knowledge, project, pitfalls, estimate_summary, _preflight(root, decisions)),
            CONFIG_TEMPLATE: render_config_template(decisions, project),
            DECISION_LOG: update_decision_log(log, decisions, superseded),
            PROJECT_SPEC: update_project_spec(_read(root, PROJECT_SPEC) or "", decisions, project),
        },
    )


def write_skip_artifacts(project_dir: Path | str) -> list[str]:
    """The RAG-only skip record and its project-spec section."""
    root = Path(project_dir)
    return _write(
        root,
        {
            SPEC: render_skip_record(),
            PROJECT_SPEC: update_project_spec(_read(root, PROJECT_SPEC) or "", {}, {}, skipped=True),
        },
    )
