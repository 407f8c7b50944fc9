"""Prompt texts for the model-backed facilitator, loaded from `prompts/*.md`.

A prompt file starts with a front matter that lists the variables it needs:

    ---
    variables: project, user_answer
    ---
    Body, with {{project}} and {{user_answer}} where the values go.

Files are read once per process. Rendering fails with the prompt's name and
the missing (or unexpected) variables rather than sending a half-filled prompt
to a model. `TRAINING_PIPELINE_PROMPTS` points at another folder of the same
files, to try a prompt without touching the package.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "prompts"
_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_FRONT = re.compile(r"\A---\n(.*?)\n---\n", re.S)


class PromptError(ValueError):
    """A prompt file that is malformed, or a render call that does not match its variables."""


@dataclass(frozen=True)
class Prompt:
    name: str
    variables: tuple[str, ...]
    body: str

    def render(self, **values: object) -> str:
        missing = [v for v in self.variables if v not in values]
        unknown = sorted(set(values) - set(self.variables))
        if missing or unknown:
            parts = []
            if missing:
                parts.append("missing variable(s): " + ", ".join(missing))
            if unknown:
                parts.append("unexpected variable(s): " + ", ".join(unknown))
            raise PromptError(f"prompt '{self.name}': " + "; ".join(parts))
        # One pass, so a value that itself contains {{...}} (user text) is never expanded.
        return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), self.body)


def prompts_dir() -> Path:
    return Path(os.environ.get("TRAINING_PIPELINE_PROMPTS") or DEFAULT_DIR)


def parse_prompt(name: str, text: str) -> Prompt:
    """A prompt from a file's text; its placeholders must be exactly the declared variables."""
    m = _FRONT.match(text.replace("\r\n", "\n"))
    if not m:
        raise PromptError(f"prompt '{name}': no front matter (a '---' block with 'variables:') at the top")
    declared: tuple[str, ...] = ()
    for line in m.group(1).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "variables":
            declared = tuple(v.strip() for v in value.split(",") if v.strip())
    body = text.replace("\r\n", "\n")[m.end():].strip() + "\n"
    used = set(_PLACEHOLDER.findall(body))
    if used != set(declared):
        undeclared, unused = sorted(used - set(declared)), sorted(set(declared) - used)
        raise PromptError(f"prompt '{name}': placeholders and variables differ (undeclared: {undeclared}, unused: {unused})")
    return Prompt(name=name, variables=declared, body=body)


@lru_cache(maxsize=None)
def _load(folder: str, name: str) -> Prompt:
    path = Path(folder) / f"{name}.md"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptError(f"prompt '{name}' not found ({path.name} in the prompts folder)") from None
    return parse_prompt(name, text)


def load_prompt(name: str) -> Prompt:
    """The prompt `name` (a path under prompts/ without `.md`, e.g. `recommend/peft`), cached."""
    return _load(str(prompts_dir()), name)


def render(name: str, **values: object) -> str:
    return load_prompt(name).render(**values)


def all_prompt_names() -> list[str]:
    root = prompts_dir()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.md"))


# Every prompt the facilitator renders: all must be there when the program starts.
REQUIRED = (
    "persona", "repair", "synthesis", "recommend", "read_answer", "menu_answer",
    *(f"recommend/{section}" for section in ("base_model", "training_approach", "training_data", "peft", "hyperparameters", "infrastructure")),
)  # fmt: skip


def preload() -> None:
    """Read every prompt now, at import, so that no node reads a file on the event loop.

    A missing folder or prompt is an error here, at start, naming what is missing, rather
    than a failure in the middle of a session.
    """
    folder = prompts_dir()
    if not folder.is_dir():
        raise PromptError(
            f"The prompts folder {folder} is missing: reinstall training-pipeline (it ships prompts/ beside agent/), "
            "or point TRAINING_PIPELINE_PROMPTS at a folder of prompts."
        )
    missing = [name for name in REQUIRED if not (folder / f"{name}.md").is_file()]
    if missing:
        raise PromptError(f"The prompts folder {folder} lacks: " + ", ".join(f"{n}.md" for n in missing))
    for name in all_prompt_names():
        load_prompt(name)
