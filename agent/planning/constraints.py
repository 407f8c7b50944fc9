"""What the user stated about hardware, budget and data, read from every answer and the project files.

Each value keeps where it came from, so a proposal can say what it read and from where, and a
misreading can be corrected in the same question. What the user says now wins over what they said
earlier, and any answer wins over the project files.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Iterable

from pydantic import BaseModel, Field

from agent.planning import gpu as gpus
from agent.planning import reading

PROJECT = "project"  # the source key of the project spec's constraints

SOURCE_NAMES = {
    "base_model": "your answer on base model constraints",
    "training_approach": "your answer on data and goals",
    "training_data": "your answer about the training data",
    "peft": "your answer on compute resources",
    "hyperparameters": "your answer on the training budget",
    "infrastructure": "your answer on infrastructure",
    PROJECT: "the project spec's constraints",
}
# Answers read later in this order are older: the newest section first, the project files last.
_RECENCY = ("infrastructure", "hyperparameters", "peft", "training_data", "training_approach", "base_model")


class Stated(BaseModel):
    value: Any
    source: str = Field(description="A section name, or 'project'")
    text: str = Field(default="", description="The words it was read from")


class Replaced(BaseModel):
    source: str = Field(description="Where the statement that won came from")
    text: str


class Constraints(BaseModel):
    gpu: Stated | None = None  # value: a GpuSpec dict
    budget_hours: Stated | None = None
    budget_usd: Stated | None = None
    sft_examples: Stated | None = None
    dpo_pairs: Stated | None = None
    max_tokens: Stated | None = None
    data_issues: Stated | None = None  # value: {check: words}
    overridden: list[Replaced] = Field(default_factory=list, description="Older statements a newer one replaced")

    @property
    def gpu_spec(self) -> gpus.GpuSpec | None:
        return gpus.GpuSpec.model_validate(self.gpu.value) if self.gpu else None

    def understood(self, section: str) -> list[str]:
        """What was read from the answer to `section`'s question, one phrase per constraint."""
        out = []
        for name, item in self._items():
            if item is not None and item.source == section:
                out.append(describe(name, item))
        return out

    def sources(self) -> dict[str, str]:
        return {name: item.source for name, item in self._items() if item is not None}

    def _items(self) -> Iterable[tuple[str, Stated | None]]:
        for name in ("gpu", "budget_hours", "budget_usd", "sft_examples", "dpo_pairs", "max_tokens", "data_issues"):
            yield name, getattr(self, name)


def _key(name: str, value: Any) -> Any:
    """What must differ for two statements to disagree (a card named where only its size was is no change)."""
    if name == "gpu" and isinstance(value, dict):
        return value.get("count"), value.get("memory_gb")
    return value


def gpu_text(spec: gpus.GpuSpec) -> str:
    if spec.card.endswith(" GB GPU"):  # only the size was stated
        return f"{spec.count} x {spec.card}"
    return f"{spec.count} x {spec.card} ({spec.memory_gb:g} GB each)"


def describe(name: str, item: Stated) -> str:
    v = item.value
    if name == "gpu":
        return "GPUs: " + gpu_text(gpus.GpuSpec.model_validate(v))
    if name == "budget_hours":
        return f"budget: {v:g} GPU hours per run"
    if name == "budget_usd":
        return f"budget: ${v:,.0f}"
    if name == "sft_examples":
        return f"data: {v:,} instruction examples"
    if name == "dpo_pairs":
        return f"data: {v:,} preference pairs"
    if name == "max_tokens":
        return f"lengths: up to about {v:,} tokens per example"
    if name == "data_issues":
        return "data issues: " + "; ".join(f"{check} (\"{words}\")" for check, words in v.items())
    return f"{name}: {v}"


def source_name(source: str) -> str:
    return SOURCE_NAMES.get(source, source)


def read_gpu(text: str) -> gpus.GpuSpec | None:
    """GPUs named in free text, from the catalogue; None when the text names none."""
    if not text or not text.strip():
        return None
    try:
        spec = gpus.parse_gpu(text)
    except Exception:  # noqa: BLE001 - a reader never stops the interview; the answer is just not read
        spec = None
    if spec is not None and spec.memory_gb > 0 and spec.count >= 1:
        return spec
    found = reading.gpu_memory(text)
    if found and found[1] > 0:
        return gpus.GpuSpec(card=f"{found[1]:g} GB GPU", memory_gb=found[1], count=max(1, found[0]))
    return None


def _readers() -> dict[str, Any]:
    return {
        "gpu": lambda t: (lambda g: g.model_dump() if g else None)(read_gpu(t)),
        "budget_hours": lambda t: reading.hours(t) if reading.mentions(t, "gpu", "hour", "hrs", "day", "budget", "overnight", "run") else None,
        "budget_usd": reading.money,
        "sft_examples": lambda t: reading.count_near(t, reading.SFT_UNITS),
        "dpo_pairs": lambda t: reading.count_near(t, reading.DPO_UNITS),
        "max_tokens": reading.context_tokens,
        "data_issues": lambda t: reading.data_issues(t) or None,
    }


def read_constraints(said: dict[str, str] | None, project: dict | None = None, current: str | None = None) -> Constraints:
    """Constraints from the answers by section (`said`) and the project's constraints.

    The answer to `current` (the question just answered) is read first, then the other answers
    from the newest section back, then the project files: the first source that states a value
    wins, and an older different statement is listed in `overridden`.
    """
    said = {k: str(v) for k, v in (said or {}).items() if isinstance(v, str) and v.strip()}
    order = ([current] if current in said else []) + [s for s in _RECENCY if s in said and s != current]
    texts = [(s, said[s]) for s in order]
    project_text = "\n".join(str(c) for c in (project or {}).get("constraints") or [])
    if project_text.strip():
        texts.append((PROJECT, project_text))
    return _read(tuple(texts)).model_copy(deep=True)


@lru_cache(maxsize=64)
def _read(texts: tuple[tuple[str, str], ...]) -> Constraints:
    # Cached by the texts read: every node of a section reads the same answers again, and the
    # readers' patterns are most of a proposal's time. Callers get a copy (see read_constraints).
    found: dict[str, Stated] = {}
    overridden: list[str] = []
    for name, read in _readers().items():
        for source, text in texts:
            try:
                value = read(text)
            except (ValueError, OverflowError):
                value = None
            if value is None or value == 0:
                continue
            item = Stated(value=value, source=source, text=text[:200])
            if name not in found:
                found[name] = item
            elif _key(name, found[name].value) != _key(name, value):
                overridden.append(Replaced(source=found[name].source, text=f"{describe(name, found[name])} ({source_name(found[name].source)}) "
                                           f"replaces {describe(name, item)} ({source_name(source)})"))
    return Constraints(**found, overridden=overridden)


def from_decisions(decisions: dict[str, Any] | None, project: dict | None = None) -> Constraints:
    """Constraints from recorded decisions (each keeps what the user said when asked) and the project."""
    said = {}
    for section, d in (decisions or {}).items():
        if isinstance(d, dict) and isinstance(d.get("context"), str):
            said[section] = d["context"]
    return read_constraints(said, project)
