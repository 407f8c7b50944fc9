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
import os
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import yaml

from agent import yaml_splice, yamlio
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from agent.errors import ProjectError, write_problem
from agent.fsutil import UnsafePath, atomic_write_text
from agent.lock import project_writes
from agent.state import ARCHITECTURES

SIDECAR_NAME = "sidecar.yaml"
PHASE_KEY = "phase_2_training"
STEP = 4  # this step's number in stepsCompleted
NEXT_PHASE = 3  # currentPhase is always the next phase to run
PHASE_STATUSES = ("pending", "in_progress", "complete", "skipped")
TP_ID = re.compile(r"^tp-\d{3}$")

_INIT_HINT = "training-pipeline init-demo {dir} --architecture fine-tuning"


# --- the shape step 4 relies on ------------------------------------------------------


class DecisionEntry(BaseModel):
    """One of this step's `decisions` entries (tp-nnn). Extra fields are kept.

    Entries of other steps or workflow versions (`req-001` requirements without a
    choice, decisions without `knowledge_ref`, ...) are not this step's to check.
    """

    model_config = ConfigDict(extra="allow")

    id: StrictStr = Field(min_length=1)
    choice: StrictStr
    rationale: StrictStr
    knowledge_ref: StrictStr | None = None


class WrittenDecision(DecisionEntry):
    """What this step writes: always with the knowledge it consulted (empty when none)."""

    knowledge_ref: StrictStr


class Phases(BaseModel):
    model_config = ConfigDict(extra="allow")

    phase_2_training: Literal["pending", "in_progress", "complete", "skipped"] = "pending"


class SidecarModel(BaseModel):
    """What step 4 reads from the sidecar; every other key is allowed and left alone.

    `architecture` accepts any text: an unknown value is not an error in the file, the
    graph asks the user instead (see `known_architecture`).
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    project_name: StrictStr = Field(min_length=1)
    architecture: StrictStr | None = None
    current_phase: StrictInt | None = Field(default=None, alias="currentPhase")
    steps_completed: list[StrictInt | StrictStr] = Field(default_factory=list, alias="stepsCompleted")
    decisions: list[Any] = Field(default_factory=list)
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
    errors: list[dict] = []
    model = None
    try:
        model = SidecarModel.model_validate(raw)
    except ValidationError as exc:
        errors += exc.errors()
    decisions = raw.get("decisions")
    for i, entry in enumerate(decisions if isinstance(decisions, list) else []):
        if not (isinstance(entry, dict) and isinstance(entry.get("id"), str) and TP_ID.match(entry["id"])):
            continue  # another step's entry, in whatever shape its version writes
        try:
            DecisionEntry.model_validate(entry)
        except ValidationError as exc:
            errors += [{**err, "loc": ("decisions", i, *err["loc"])} for err in exc.errors()]
    if errors:
        problems = "\n".join(f"  - {_describe(err)}" for err in errors)
        raise ProjectError(
            f"{where} does not have the shape the workflow expects:\n{problems}\n"
            "Fix these keys (other keys may stay as they are) and try again."
        )
    assert model is not None
    return model


# A sidecar is a few kilobytes; one this large is not a sidecar, and rewriting it on every
# answer would take seconds.
MAX_SIDECAR_BYTES = 2 * 1024 * 1024


def _read(folder: Path, known: tuple[str, dict] | None = None) -> tuple[str, dict]:
    """The sidecar's text and validated mapping. `known` is a (text, mapping) this process
    wrote: when the file still holds that text, its mapping is returned without parsing."""
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
    data = _read_regular_file(path)
    try:
        text = data.decode("utf-8-sig")  # -sig: tolerate a byte-order mark from editors
    except UnicodeDecodeError as exc:
        raise ProjectError(f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded). Save it as UTF-8.") from None
    if known is not None and known[0] == text:
        return known
    try:
        raw = yamlio.load_checked(text)
    except yamlio.DuplicateKeys as exc:
        raise ProjectError(
            f"{path} repeats keys: {exc.where}. YAML keeps only the last of them, so the earlier values "
            "would be silently lost. Keep one of each and try again."
        ) from None
    except yamlio.TooLarge as exc:
        raise ProjectError(f"{path} is not a sidecar this step can use: {exc}. Restore it from version control.") from None
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


def _read_regular_file(path: Path) -> bytes:
    """The file's bytes, refusing what is not a plain file of sidecar size.

    Opened non-blocking and checked with fstat before reading: a FIFO would otherwise
    block the open (or the read) until something writes to it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ProjectError(f"Cannot read {path}: {exc.strerror or exc}. Check its permissions.") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ProjectError(
                f"{path} is {_file_kind(info.st_mode)}, not a regular file. Replace it with the project's "
                f"{SIDECAR_NAME} (restore it from version control)."
            )
        if info.st_size > MAX_SIDECAR_BYTES:
            raise ProjectError(
                f"{path} is {info.st_size / 1024 / 1024:.1f} MB; a sidecar holds a few kilobytes of project state "
                f"(at most {MAX_SIDECAR_BYTES // 1024 // 1024} MB here). Move large content out of it, or restore it "
                "from version control."
            )
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            if sum(map(len, chunks)) > MAX_SIDECAR_BYTES:  # grew while we read
                raise ProjectError(f"{path} is larger than {MAX_SIDECAR_BYTES // 1024 // 1024} MB; a sidecar holds a few kilobytes.")
        return b"".join(chunks)
    except OSError as exc:
        raise ProjectError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


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

def update_sidecar(project_dir: Path | str, fn: Callable[[dict], None]) -> dict:
    """Read the sidecar, let `fn` change the mapping in place, validate, write atomically.

    Runs under the project's write lock (every process and thread), so a change is never
    made to a stale copy. The file is rewritten through a round trip that keeps the
    comments, order, quoting and style of everything `fn` does not touch; the new text is
    loaded back and must hold exactly the changed mapping. Nothing is written if `fn`
    raises or the result does not validate. Returns the mapping as written.
    """
    folder = Path(project_dir)
    with project_writes(folder):
        key = folder.resolve()
        # Re-read: another step or process may have changed the file. If it still holds what
        # this process last wrote there, that write's checked mapping saves parsing it again.
        text, old = _read(folder, _written.get(key))
        raw = copy.deepcopy(old)
        fn(raw)
        validate_sidecar(raw, where=f"{sidecar_path(folder)} (after the change)")
        new_text, written = _round_trip(text, old, raw)
        try:
            atomic_write_text(SIDECAR_NAME, new_text, root=folder)
        except UnsafePath as exc:
            raise ProjectError(f"{exc}. {SIDECAR_NAME} must be a file inside the project folder.") from None
        except OSError as exc:
            raise ProjectError(write_problem(sidecar_path(folder), exc)) from None
        _written[key] = (new_text, written)  # its own copy, loaded back from the text: never handed out
        return raw


_written: dict[Path, tuple[str, dict]] = {}  # folder -> (text last written there, its mapping)


def _round_trip(text: str, old: dict, new: dict) -> tuple[str, dict]:
    """`text` changed to hold `new`, everything that stays keeping its bytes.

    The fast way replaces only the changed top-level values (and, in a changed list,
    only the changed items); a layout it does not handle goes through ruamel.yaml's
    round trip, which keeps comments, order, quoting and style. Each result is loaded
    back and must hold exactly `new`; if neither can, the file is rewritten plainly,
    keeping its header comments. Returns the text and the mapping loaded back from it.
    """
    attempts = (
        lambda: yaml_splice.splice(text, old, new, same_yaml_value, _rewrite_key(text, old), _list_item),
        lambda: _roundtrip().rewrite(text, new),
    )
    for attempt in attempts:
        try:
            candidate = attempt()
            if candidate is None:
                continue
            back = yamlio.load(candidate)
            if same_yaml_value(back, new):
                return candidate, back
        except Exception:  # noqa: BLE001 - any failure here has the next way to fall back on
            continue
    plain = _leading_comments(text) + dump_yaml(new)
    return plain, yamlio.load(plain)


def _rewrite_key(text: str, old: dict) -> Callable[[str, Any], str]:
    """Writes one top-level entry: a changed one through the round trip of its own text, a new one plainly."""

    def emit(key: str, value: Any) -> str:
        if key not in old:
            return _piece({key: value})
        chunk = yaml_splice.chunk_text(text, key)
        if chunk is None:
            raise ValueError(f"no text for {key!r}")
        return _roundtrip().rewrite(chunk, {key: value})

    return emit


def _roundtrip() -> Any:
    # Imported on the first write that needs it: ruamel.yaml costs start-up time, and reading does not.
    from agent import yaml_roundtrip

    return yaml_roundtrip


def _piece(value: Any) -> str:
    return yaml.dump(value, Dumper=_PrettyDumper, sort_keys=False, allow_unicode=True, width=2**31, default_flow_style=False)


_PIECES: dict[str, str] = {}  # repr of an item (exact and type-aware) -> its YAML text


def _list_item(item: Any) -> str:
    """One `  - ...` list item; cached, since a revisit writes the same items again."""
    key = repr(item)
    piece = _PIECES.get(key)
    if piece is None:
        if len(_PIECES) > 256:
            _PIECES.clear()
        # Dumped under a throwaway key for the list's indentation; that key's line is dropped.
        piece = _PIECES[key] = _piece({"_": [item]}).split("\n", 1)[1]
    return piece


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
    Used when the round trip cannot hold a value exactly.
    """
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
        WrittenDecision.model_validate(entry)
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
    if not (isinstance(current, int) and not isinstance(current, bool) and current > NEXT_PHASE):
        raw["currentPhase"] = NEXT_PHASE
    steps = raw.get("stepsCompleted")
    if not isinstance(steps, list):
        steps = raw["stepsCompleted"] = []
    if STEP not in steps:
        steps.append(STEP)
    if steps != sorted(steps, key=_step_order):
        steps.sort(key=_step_order)  # in place: the list keeps its style in the file
    _phases(raw)[PHASE_KEY] = status


def _step_order(step: Any) -> tuple[int, int, str]:
    # Later workflow versions may name steps with text; numbers sort first, as numbers.
    return (0, step, "") if isinstance(step, int) else (1, 0, str(step))
