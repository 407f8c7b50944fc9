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
from agent.errors import ProjectError, write_problem
from agent.fsutil import UnsafePath, atomic_write_text, safe_join
from agent.lock import project_writes

SPEC = "phase-2-training/spec.md"
CONFIG_TEMPLATE = "phase-2-training/templates/training-config.template.yaml"
DECISION_LOG = "decision-log.md"
PROJECT_SPEC = "project-spec.md"


def _read(root: Path, rel: str) -> str | None:
    path = _inside(root, rel)
    if not path.exists():
        return None
    # newline="" keeps CRLF files byte for byte: we only own our own sections.
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return fh.read()
    except UnicodeDecodeError as exc:
        raise ProjectError(f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded). Save it as UTF-8, then try again.") from None
    except OSError as exc:
        raise ProjectError(f"Cannot read {path}: {exc.strerror or exc}. Check its permissions, then try again.") from None


def _inside(root: Path, rel: str) -> Path:
    try:
        return safe_join(root, rel)
    except UnsafePath:
        raise ProjectError(_outside_message(root, rel)) from None


def _outside_message(root: Path, rel: str) -> str:
    """Names the link on the way to `rel` that leads out of the project."""
    part = Path(root)
    for name in Path(rel).parts:
        part = part / name
        if part.is_symlink():
            kind = "folder" if part.is_dir() else "file"
            return (
                f"{part} is a link to {part.resolve()}, outside the project folder {root}. Nothing was written. "
                f"Replace the link with a real {kind} (move what it points to into the project), then try again."
            )
    return f"{Path(root) / rel} leads outside the project folder {root}. Nothing was written; fix the path, then try again."


def _new_decision_log(project: dict[str, Any]) -> str:
    """A header in the shape step 01 creates, for a project folder that lacks the log."""
    name = str(project.get("name") or "project")
    created = project.get("created")
    front = [f"project_name: {quoted(name)}"] + ([f"created: {quoted(str(created))}"] if created else [])
    return "\n".join(["---", *front, "---", "", f"# {inline(name)} - Decision Log", "", "## Decisions", ""]) + "\n"


def _write(root: Path, files: dict[str, str]) -> list[str]:
    for rel, text in files.items():
        try:
            atomic_write_text(rel, text, root=root)
        except UnsafePath:
            raise ProjectError(_outside_message(root, rel)) from None
        except OSError as exc:
            raise ProjectError(write_problem(root / rel, exc)) from None
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
    with project_writes(root):  # the log and project-spec are read, changed and written back
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
    with project_writes(root):
        return _write(
            root,
            {
                SPEC: render_skip_record(),
                PROJECT_SPEC: update_project_spec(_read(root, PROJECT_SPEC) or "", {}, {}, skipped=True),
            },
        )
