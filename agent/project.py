"""What the step knows about the project besides the sidecar: project-spec.md's overview."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def read_overview(project_dir: Path | str) -> dict[str, Any]:
    """Use case, key requirements and constraints from project-spec.md (empty when absent)."""
    path = Path(project_dir) / "project-spec.md"
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return {"use_case": "", "requirements": [], "constraints": []}
    return {
        "use_case": _field(text, "Use Case"),
        "requirements": _bullets(text, "Key Requirements"),
        "constraints": _bullets(text, "Constraints"),
    }


def _field(text: str, name: str) -> str:
    m = re.search(rf"^\*\*{re.escape(name)}:\*\*\s*(.+)$", text, re.MULTILINE)
    return m.group(1).strip() if m else ""


def _bullets(text: str, name: str) -> list[str]:
    m = re.search(rf"^\*\*{re.escape(name)}:\*\*\s*\n((?:\s*[-*] .+\n?)+)", text, re.MULTILINE)
    if not m:
        return []
    return [ln.strip()[2:].strip() for ln in m.group(1).splitlines() if ln.strip()]
