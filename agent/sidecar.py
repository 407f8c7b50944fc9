"""The project's `sidecar.yaml`: load, validate, and merge step 4's keys into it.

The sidecar belongs to the whole workflow; step 4 owns only a few keys
(`architecture` when it had to ask, `currentPhase`, `stepsCompleted`,
`phases.phase_2_training`, the `tp-*` decisions, `warnings_acknowledged`).
Every write re-reads the file, applies the change to the mapping exactly as
loaded, validates the result and replaces the file atomically, so keys written
by other steps or by later workflow versions survive untouched.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import yaml

from agent import yamlio
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from agent.fsutil import UnsafePath, atomic_write_text
from agent.state import ARCHITECTURES

SIDECAR_NAME = "sidecar.yaml"
PHASE_KEY = "phase_2_training"
STEP = 4  # this step's number in stepsCompleted
NEXT_PHASE = 3  # currentPhase is always the next phase to run
PHASE_STATUSES = ("pending", "in_progress", "complete", "skipped")
TP_ID = re.compile(r"^tp-\d{3}$")

_INIT_HINT = "training-pipeline init-demo {dir} --architecture fine-tuning"


class ProjectError(ValueError):
    """A problem with the project folder that the user can fix; the message says how.

    A ValueError, so the LangGraph API server passes the message on to its clients."""


# --- the shape step 4 relies on ------------------------------------------------------


class DecisionEntry(BaseModel):
    """One `decisions` entry. Later workflow versions add fields (phase, date, ...): kept."""

    model_config = ConfigDict(extra="allow")

    id: StrictStr = Field(min_length=1)
    choice: StrictStr
    rationale: StrictStr
    knowledge_ref: StrictStr


class Phases(BaseModel):
    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, StrictStr] = Field(init=False)

    phase_2_training: Literal["pending", "in_progress", "complete", "skipped"]


class SidecarModel(BaseModel):
    """What step 4 reads from the sidecar; every other key is allowed and left alone.

    `architecture` accepts any text: an unknown value is not an error in the file, the
    graph asks the user instead (see `known_architecture`).
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    project_name: StrictStr = Field(min_length=1)
    architecture: StrictStr | None = None
    current_phase: StrictInt | None = Field(default=None, alias="currentPhase")
    steps_completed: list[StrictInt] = Field(default_factory=list, alias="stepsCompleted")
    decisions: list[DecisionEntry] = Field(default_factory=list)
    warnings_acknowledged: list[Any] = Field(default_factory=list)
    phases: Phases | None = None

    @property
    def known_architecture(self) -> str | None:
        """The architecture if it is one of the three the workflow knows, else None."""
        value = (self.architecture or "").strip().lower()
        return value if value in ARCHITECTURES else None

    @property
    def phase_status(self) -> str:
        return self.phases.phase_2_training if self.phases else "pending"


# --- reading ---------------------------------------------------------------------------


def sidecar_path(project_dir: Path | str) -> Path:
    return Path(project_dir) / SIDECAR_NAME


def load_sidecar(project_dir: Path | str) -> dict:
    """The sidecar as a plain mapping (key order as in the file), after validation."""
    _text, raw = _read(Path(project_dir))
    return raw


def validate_sidecar(raw: Any, *, where: str = SIDECAR_NAME) -> SidecarModel:
    """Check `raw` has what step 4 needs; ProjectError names every bad key path."""
    if not isinstance(raw, dict):
        raise ProjectError(
            f"{where} must be a mapping of keys (project_name: ..., phases: ...), "
            f"but it holds {_kind(raw)}. Fix the file and try again."
        )
    try:
        return SidecarModel.model_validate(raw)
    except ValidationError as exc:
        problems = "\n".join(f"  - {_describe(err)}" for err in exc.errors())
        raise ProjectError(
            f"{where} does not have the shape the workflow expects:\n{problems}\n"
            "Fix these keys (other keys may stay as they are) and try again."
        ) from None


def _read(folder: Path) -> tuple[str, dict]:
    if not folder.exists():
        raise ProjectError(
            f"Project folder not found: {folder}. Check the path, or create a demo project "
            f"with `{_INIT_HINT.format(dir=folder)}`."
        )
    if not folder.is_dir():
        raise ProjectError(f"{folder} is a file, not a project folder. Pass the folder that contains {SIDECAR_NAME}.")
    path = folder / SIDECAR_NAME
    if not path.exists():
        raise ProjectError(
            f"No {SIDECAR_NAME} in {folder}: this folder is not an AI engineering project yet. "
            f"Create one with `{_INIT_HINT.format(dir=folder)}` or run step 1 of the workflow."
        )
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: tolerate a byte-order mark from editors
    except UnicodeDecodeError as exc:
        raise ProjectError(f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded). Save it as UTF-8.") from None
    except OSError as exc:
        raise ProjectError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        raw = yamlio.load(text)
    except yaml.MarkedYAMLError as exc:
        raise ProjectError(f"{path} is not valid YAML {_yaml_problem(exc)}. Fix the file and try again.") from None
    except yaml.YAMLError as exc:
        raise ProjectError(f"{path} is not valid YAML: {exc}. Fix the file and try again.") from None
    if raw is None:
        raise ProjectError(
            f"{path} is empty. Restore it from version control, or create a project with "
            f"`{_INIT_HINT.format(dir=folder)}`."
        )
    validate_sidecar(raw, where=str(path))
    return text, raw


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    """Where and what, 1-based; with where the broken construct started when that differs."""

    def at(mark: yaml.Mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    mark = exc.problem_mark or exc.context_mark
    text = f"at {at(mark)}: {exc.problem or exc.context}" if mark else f": {exc.problem or exc}"
    ctx = exc.context_mark
    if exc.context and ctx and (not exc.problem_mark or ctx.line != exc.problem_mark.line):
        text += f" ({exc.context} at {at(ctx)})"
    return text


def _describe(err: dict) -> str:
    path = _key_path(err["loc"])
    kind = err["type"]
    if kind == "missing":
        return f"{path}: missing (required)"
    expected = {
        "string_type": "text",
        "int_type": "an integer",
        "list_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
    }.get(kind)
    if expected is None:  # literal choices, lengths, ...: pydantic's wording is precise
        return f"{path}: {err['msg'][0].lower()}{err['msg'][1:]}, found {_kind(err.get('input'))}"
    return f"{path}: expected {expected}, found {_kind(err.get('input'))}"


def _key_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _kind(value: Any) -> str:
    """How a YAML value looks to the person who wrote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"text ({shown!r})"
    if isinstance(value, (dt.date, dt.datetime)):
        return f"a date ({value.isoformat()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


# --- writing ---------------------------------------------------------------------------

_locks: dict[Path, threading.RLock] = {}
_locks_guard = threading.Lock()


def _lock_for(folder: Path) -> threading.RLock:
    key = folder.resolve()
    with _locks_guard:
        return _locks.setdefault(key, threading.RLock())


def update_sidecar(project_dir: Path | str, fn: Callable[[dict], None]) -> dict:
    """Read the sidecar, let `fn` change the mapping in place, validate, write atomically.

    Nothing is written if `fn` raises or the result does not validate. Returns the
    mapping as written.
    """
    folder = Path(project_dir)
    with _lock_for(folder):
        text, raw = _read(folder)  # re-read: another step may have changed the file
        fn(raw)
        validate_sidecar(raw, where=f"{sidecar_path(folder)} (after the change)")
        new_text = _leading_comments(text) + dump_yaml(raw)
        try:
            atomic_write_text(SIDECAR_NAME, new_text, root=folder)
        except UnsafePath as exc:
            raise ProjectError(f"{exc}. {SIDECAR_NAME} must be a file inside the project folder.") from None
        return raw


def _leading_comments(text: str) -> str:
    """The comment block the file starts with (the workflow's header), kept on rewrite."""
    kept: list[str] = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            break
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return "\n".join(kept) + "\n\n" if kept else ""


class _Dumper(yaml.SafeDumper):
    """Block style indented like the workflow's own files (list items under their key)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


class _PrettyDumper(_Dumper):
    """Also prints multi-line text as `|` blocks and short number lists inline."""


def _pretty_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None  # the emitter falls back to quotes when `|` cannot hold it
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _pretty_list(dumper: yaml.SafeDumper, value: list) -> yaml.SequenceNode:
    inline = bool(value) and all(isinstance(v, (int, float)) for v in value)  # e.g. stepsCompleted: [1, 2, 3]
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=inline)


_PrettyDumper.add_representer(str, _pretty_str)
_PrettyDumper.add_representer(list, _pretty_list)


def dump_yaml(data: Any) -> str:
    """YAML text that `yaml.safe_load` turns back into exactly `data`.

    The readable form is checked by loading it back. PyYAML has corner cases (block
    scalars; U+0085 written raw inside quotes), so when a value does not survive, the
    plain quoted form is tried, then the same with non-ASCII escaped, which is exact.
    """
    if isinstance(data, dict):
        try:
            text = _pieced(data)
            if same_yaml_value(yamlio.load(text), data):
                return text
        except yaml.YAMLError:
            pass  # RepresenterError included: the loop below reports it
    for dumper, unicode in ((_PrettyDumper, True), (_Dumper, True), (_Dumper, False)):
        try:
            text = yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=unicode, width=2**31, default_flow_style=False)
        except yaml.representer.RepresenterError as exc:
            raise TypeError(f"cannot write this value to YAML: {exc}") from None
        try:
            back = yamlio.load(text)
        except yaml.YAMLError:
            continue
        if same_yaml_value(back, data):
            return text
    raise ProjectError("The sidecar holds a value that does not survive a YAML round trip; nothing was written.")


def _pieced(data: dict) -> str:
    """The readable form, assembled from per-key (and per-list-item) pieces.

    Emitting YAML in pure Python costs most of a sidecar write, and between two writes
    only one decision changes: unchanged pieces come from a cache. Block-style top-level
    keys and list items are independent, so concatenating them gives the same document
    (and `dump_yaml` still loads it back to check).
    """
    parts = []
    for key, value in data.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            parts.append(_piece({key: []}).replace(" []", "", 1))
            parts += [_list_item(repr(item), item) for item in value]
        else:
            parts.append(_piece_cached(repr({key: value}), {key: value}))
    return "".join(parts)


def _piece(value: Any) -> str:
    return yaml.dump(value, Dumper=_PrettyDumper, sort_keys=False, allow_unicode=True, width=2**31, default_flow_style=False)


_PIECES: dict[str, str] = {}  # repr of a value (exact and type-aware) -> its YAML text


def _cached(key: str, make: Callable[[], str]) -> str:
    text = _PIECES.get(key)
    if text is None:
        if len(_PIECES) > 1024:
            _PIECES.clear()
        text = _PIECES[key] = make()
    return text


def _piece_cached(key: str, value: Any) -> str:
    return _cached(key, lambda: _piece(value))


def _list_item(key: str, item: dict) -> str:
    # Dumped under a throwaway key for the list's indentation; that key's line is dropped.
    return _cached("item:" + key, lambda: _piece({"_": [item]}).split("\n", 1)[1])


def same_yaml_value(a: Any, b: Any) -> bool:
    """Equality that also checks types (1 is not True), key order, and treats NaN as equal."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same_yaml_value(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(same_yaml_value(x, y) for x, y in zip(a, b))
    return a == b


# --- step 4's operations ---------------------------------------------------------------


def upsert_decision(project_dir: Path | str, entry: dict, acknowledged: list[str] | None = None) -> dict:
    """Record a decision: replace the entry with the same id where it stands, else append.

    Phase 2 becomes `in_progress` unless it is already complete or skipped. Warnings the
    user acknowledged with it are added in the same write (one rewrite per answer).
    """
    try:
        DecisionEntry.model_validate(entry)
    except ValidationError as exc:
        raise ValueError(f"decision entry is incomplete: {exc.errors()[0]['loc']} {exc.errors()[0]['msg']}") from None
    new = copy.deepcopy(dict(entry))

    def apply(raw: dict) -> None:
        decisions = raw.get("decisions")
        if not isinstance(decisions, list):
            decisions = raw["decisions"] = []
        same = [i for i, d in enumerate(decisions) if isinstance(d, dict) and d.get("id") == new["id"]]
        if same:
            decisions[same[0]] = new
            for i in reversed(same[1:]):  # one entry per id
                del decisions[i]
        else:
            decisions.append(new)
        if _phases(raw).get(PHASE_KEY) not in ("complete", "skipped"):
            _phases(raw)[PHASE_KEY] = "in_progress"
        if acknowledged:
            _acknowledge(raw, acknowledged)

    return update_sidecar(project_dir, apply)


def set_architecture(project_dir: Path | str, arch: str) -> dict:
    if arch not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, not {arch!r}")
    return update_sidecar(project_dir, lambda raw: raw.__setitem__("architecture", arch))


def mark_phase_complete(project_dir: Path | str) -> dict:
    return update_sidecar(project_dir, lambda raw: _finish_phase(raw, "complete"))


def mark_phase_skipped(project_dir: Path | str) -> dict:
    return update_sidecar(project_dir, lambda raw: _finish_phase(raw, "skipped"))


def acknowledge_warnings(project_dir: Path | str, items: list[str]) -> dict:
    """Append warnings the user acknowledged, each once, keeping earlier ones."""
    if not all(isinstance(i, str) for i in items):
        raise ValueError("warnings to acknowledge must be strings")

    return update_sidecar(project_dir, lambda raw: _acknowledge(raw, items))


def _acknowledge(raw: dict, items: list[str]) -> None:
    acked = raw.get("warnings_acknowledged")
    if not isinstance(acked, list):
        acked = raw["warnings_acknowledged"] = []
    for item in items:
        if item not in acked:
            acked.append(item)


def tp_entries(raw: dict) -> list[dict]:
    """This step's decision entries (tp-001 ... tp-006), in file order."""
    return [
        d
        for d in raw.get("decisions") or []
        if isinstance(d, dict) and isinstance(d.get("id"), str) and TP_ID.match(d["id"])
    ]


def phase_status(raw: dict) -> str:
    """`phases.phase_2_training`, or `pending` when the sidecar has no phases yet."""
    phases = raw.get("phases")
    return phases.get(PHASE_KEY, "pending") if isinstance(phases, dict) else "pending"


def _phases(raw: dict) -> dict:
    if not isinstance(raw.get("phases"), dict):
        raw["phases"] = {}
    return raw["phases"]


def _finish_phase(raw: dict, status: str) -> None:
    current = raw.get("currentPhase")
    # Never move the workflow backwards: revisiting Phase 2 after Phase 3 keeps the later phase.
    if isinstance(current, int) and not isinstance(current, bool) and current > NEXT_PHASE:
        raw["currentPhase"] = current
    else:
        raw["currentPhase"] = NEXT_PHASE
    steps = raw.get("stepsCompleted")
    steps = steps if isinstance(steps, list) else []
    if STEP not in steps:
        steps = [*steps, STEP]
    raw["stepsCompleted"] = sorted(steps)
    _phases(raw)[PHASE_KEY] = status
