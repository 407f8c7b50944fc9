"""Session transcripts: the format (pydantic models), the recorder, and a session's outcome.

A transcript is one YAML file per session (evals/README.md documents it): the starting
project, the mode, the knowledge source, a fixed date, then per graph thread the questions
asked (question_id, prompt digest and text) with the answers given and the nodes that ran,
then the expected outcome. `training-pipeline chat --record FILE`, the eval runner and
evals/make_transcripts.py all record through `Recorder`, so a replay produces a transcript
that compares field by field with the stored one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from langchain_core.callbacks import BaseCallbackHandler
from pydantic import BaseModel, ConfigDict, Field, model_validator

from agent.redact import redact_text

FORMAT = 1
# The files this phase reads or writes; the recorder keeps their starting text, the outcome their outline.
PROJECT_FILES = ("sidecar.yaml", "project-spec.md", "decision-log.md")
ARTIFACTS = (
    "phase-2-training/spec.md",
    "phase-2-training/templates/training-config.template.yaml",
    "decision-log.md",
    "project-spec.md",
)
INTERRUPT = "__interrupt__"


def digest(value: Any) -> str:
    """First 12 hex of the sha256 of a text (or of an object's canonical JSON)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]


# --- the format -------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectSource(_Model):
    """Where the session starts: a fixture project, or files given inline."""

    fixture: str | None = None  # a folder name under ../shared/fixtures/projects
    sidecar: str | dict[str, Any] | None = None  # sidecar.yaml as text (bytes kept) or as a mapping
    project_spec: str | None = None  # project-spec.md
    files: dict[str, str] = Field(default_factory=dict)  # any other starting file, by relative path
    dirname: str | None = None  # the folder's name (the project name falls back to it)

    @model_validator(mode="after")
    def _one_source(self) -> "ProjectSource":
        if (self.fixture is None) == (self.sidecar is None):
            raise ValueError("project: give either `fixture` or `sidecar`")
        bad = [p for p in self.files if Path(p).is_absolute() or ".." in Path(p).parts]
        if bad:
            raise ValueError(f"project.files: paths must stay inside the project folder: {bad}")
        return self


class KnowledgeSource(_Model):
    source: Literal["embedded", "recorded"] = "embedded"
    # query_id -> the QueryRecords returned for it, in the order they were returned.
    records: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)


class Shown(_Model):
    """A question as the user saw it."""

    question_id: str
    prompt_sha: str
    prompt: str | None = None  # kept so a changed prompt can be shown as a diff
    options: list[str] = Field(default_factory=list)  # option values
    error: str | None = None  # why the previous answer was rejected

    @model_validator(mode="after")
    def _prompt_matches(self) -> "Shown":
        if self.prompt is not None and digest(self.prompt) != self.prompt_sha:
            raise ValueError(f"{self.question_id}: prompt text does not match prompt_sha (edit one, or run eval --update)")
        return self

    @classmethod
    def of(cls, payload: dict[str, Any]) -> "Shown":
        return cls(
            question_id=payload["question_id"],
            prompt_sha=digest(payload["prompt"]),
            prompt=payload["prompt"],
            options=[o["value"] for o in payload.get("options") or []],
            error=payload.get("error"),
        )


class Turn(Shown):
    answer: str | dict[str, Any]
    answer_sha: str | None = None

    @model_validator(mode="after")
    def _answer_matches(self) -> "Turn":
        if self.answer_sha is None:
            self.answer_sha = digest(self.answer)
        elif digest(self.answer) != self.answer_sha:
            raise ValueError(
                f"{self.question_id}: the answer does not match answer_sha (the YAML changed it?); "
                "if you edited the answer on purpose, delete its answer_sha"
            )
        return self


class Session(_Model):
    """One run of the front end on one graph thread."""

    thread: str = "main"  # a label; sessions with the same label share a thread
    resumed: bool = False  # continues the question the thread's previous session stopped at
    today: str | None = None  # when this session ran on another day than the transcript's `today`
    turns: list[Turn] = Field(default_factory=list)
    stopped_at: Shown | None = None  # the question left unanswered; None: the graph ended
    # Node names per run of the graph: [0] before the first question, [i] after turn i.
    trajectory: list[list[str]] = Field(default_factory=list)


class DecisionOutcome(_Model):
    id: str
    choice: str
    fields: dict[str, Any]


class Expected(_Model):
    phase_status: str | None = None
    handoff: str | None = None  # the next step's id once the user continued
    decisions: dict[str, DecisionOutcome] = Field(default_factory=dict)
    superseded: list[str] = Field(default_factory=list)
    sidecar: dict[str, Any] = Field(default_factory=dict)
    # path -> outline (Markdown: headings and status lines; YAML: flattened values); None = absent
    artifacts: dict[str, list[str] | dict[str, Any] | None] = Field(default_factory=dict)


class Transcript(_Model):
    format: Literal[1] = FORMAT
    name: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    project: ProjectSource
    mode: Literal["offline", "model"] = "offline"
    model_responses: list[dict[str, Any]] = Field(default_factory=list)  # chat model outputs, in call order
    usage: dict[str, int] = Field(default_factory=dict)  # the session's model token totals (mode: model)
    knowledge: KnowledgeSource = Field(default_factory=KnowledgeSource)
    today: str
    sessions: list[Session] = Field(default_factory=list)
    expected: Expected = Field(default_factory=Expected)

    @property
    def question_ids(self) -> list[str]:
        return [t.question_id for s in self.sessions for t in s.turns]

    def saw(self, question_id: str) -> bool:
        shown = [t for s in self.sessions for t in s.turns] + [s.stopped_at for s in self.sessions if s.stopped_at]
        return any(q.question_id == question_id for q in shown)


# --- YAML ---------------------------------------------------------------------------------


# libyaml when available: transcripts are large and the pure-Python parser dominates a replay's time.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Literal blocks keep prompts readable; PyYAML falls back to quoting when a block cannot hold the text.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


class _Flow(list):
    """A short list written on one line: trajectory steps and option values."""


_Dumper.add_representer(str, _str)
_Dumper.add_representer(_Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def _prune(session: dict[str, Any]) -> dict[str, Any]:
    """Leave out empty optional keys so a transcript reads like the conversation."""
    for shown in [*session.get("turns", []), session.get("stopped_at") or {}]:
        for key in ("error", "options"):
            if shown.get(key) in (None, []):
                shown.pop(key, None)
        if shown.get("options"):
            shown["options"] = _Flow(shown["options"])
    if session.get("today") is None:
        session.pop("today", None)
    session["trajectory"] = [_Flow(step) for step in session["trajectory"]]
    return session


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader


def dump_transcript(t: Transcript) -> str:
    data = t.model_dump(mode="json")
    data["sessions"] = [_prune(s) for s in data["sessions"]]
    data["project"] = {k: v for k, v in data["project"].items() if v not in (None, {})}
    if not data["knowledge"]["records"]:
        data["knowledge"].pop("records")
    for key in ("description", "tags", "model_responses", "usage"):
        if not data[key]:
            data.pop(key)
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


def load_transcript(path: Path | str) -> Transcript:
    """Read and validate a transcript; errors name the file."""
    path = Path(path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
        return Transcript.model_validate(raw)
    except (yaml.YAMLError, ValueError) as exc:
        raise TranscriptError(f"{path}: {exc}") from None


def save_transcript(t: Transcript, path: Path | str) -> None:
    from agent.fsutil import atomic_write_text

    path = Path(path).resolve()
    atomic_write_text(path, dump_transcript(t), root=path.parent)  # never half a transcript


class TranscriptError(ValueError):
    """A transcript file that cannot be read or does not match the format."""


# --- secrets ------------------------------------------------------------------------------

_SECRET_ENV = re.compile(r"(API_KEY|TOKEN|SECRET|PASSWORD)$")
_SECRET_PATTERNS = [  # (pattern, replacement): keys by their shape, and whatever follows an auth header name
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), "[REDACTED]"),  # OpenAI-style keys
    (re.compile(r"\b(?:lsv2|ls_|kp|ghp|gho|xox[abp])_[A-Za-z0-9_-]{12,}"), "[REDACTED]"),  # LangSmith, GitHub, Slack, ...
    (re.compile(r"(?i)\b(x-api-key|authorization|api[_-]?key)(\s*[:=]\s*)(?:(?:bearer|basic|token)\s+)?\S+"), r"\1\2[REDACTED]"),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 [REDACTED]"),
]
REDACTED = "[REDACTED]"


class Redactor:
    """Removes API keys and auth headers from anything a transcript stores."""

    def __init__(self, extra: tuple[str, ...] = ()):
        values = [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8]
        self.values = sorted({*values, *(e for e in extra if e)}, key=len, reverse=True)

    def text(self, s: str) -> str:
        s = s.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate cannot be written to a file
        for v in self.values:
            s = s.replace(v, REDACTED)
        for pattern, replacement in _SECRET_PATTERNS:
            s = pattern.sub(replacement, s)
        return redact_text(s)  # URLs: userinfo and credential-like query values

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        return value


# --- the outcome of a session ---------------------------------------------------------------


def markdown_outline(text: str) -> list[str]:
    """Headings (outside code fences) and status lines: the structure a reader relies on."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (line.startswith("#") or line.startswith("**Status:**")):
            out.append(line.rstrip())
    return out


def yaml_outline(text: str) -> dict[str, Any]:
    """Every leaf of a YAML mapping as 'a.b.c': value."""
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        return {"__invalid_yaml__": str(exc).splitlines()[0]}
    out: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = node

    walk("", data)
    return out


def artifact_outline(path: Path) -> list[str] | dict[str, Any] | None:
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    return yaml_outline(text) if path.suffix in (".yaml", ".yml") else markdown_outline(text)


def sidecar_outcome(project_dir: Path) -> dict[str, Any]:
    """The sidecar fields this phase owns or must keep."""
    raw = load_yaml((project_dir / "sidecar.yaml").read_text(encoding="utf-8")) or {}
    return {
        "architecture": raw.get("architecture"),
        "currentPhase": raw.get("currentPhase"),
        "stepsCompleted": raw.get("stepsCompleted"),
        "phase_2_training": (raw.get("phases") or {}).get("phase_2_training"),
        "decisions": [f"{d.get('id')}: {d.get('choice')}" for d in raw.get("decisions") or [] if isinstance(d, dict)],
        "warnings_acknowledged": raw.get("warnings_acknowledged") or [],
    }


def outcome(project_dir: Path | str, values: dict[str, Any]) -> Expected:
    """What a session left behind: state, sidecar and artifacts, in the transcript's terms."""
    root = Path(project_dir)
    decisions = values.get("decisions") or {}
    return Expected(
        phase_status=values.get("phase_status"),
        handoff=(values.get("handoff") or {}).get("step_id"),
        decisions={
            s: DecisionOutcome(id=d["id"], choice=d["choice"], fields=d["fields"]) for s, d in decisions.items()
        },
        superseded=[d["id"] for d in values.get("superseded") or []],
        sidecar=sidecar_outcome(root),
        artifacts={p: artifact_outline(root / p) for p in ARTIFACTS},
    )


def starting_project(project_dir: Path | str, redact: Redactor | None = None) -> ProjectSource:
    """The project folder's current files, as an inline project source."""
    root = Path(project_dir)
    redact = redact or Redactor()
    read = {p: redact.text((root / p).read_text(encoding="utf-8")) for p in PROJECT_FILES if (root / p).is_file()}
    for p in ARTIFACTS[:2]:  # a phase already (partly) done: its spec and config matter too
        if (root / p).is_file():
            read[p] = redact.text((root / p).read_text(encoding="utf-8"))
    return ProjectSource(
        sidecar=read.pop("sidecar.yaml"),
        project_spec=read.pop("project-spec.md", None),
        files=read,
        dirname=root.resolve().name,
    )


# --- recording ------------------------------------------------------------------------------


@dataclass
class DecisionEvent:
    """A node put decisions into the state: which session, after which turn (0: before the first)."""

    session: int
    step: int
    node: str
    sections: tuple[str, ...]


class Recorder:
    """Builds a transcript from what a front end sees: graph updates, questions, answers.

    The same calls serve the terminal (`--record`), the transcript generator and the
    replay, whose recording is then compared with the stored transcript.
    """

    def __init__(self, transcript: Transcript, path: Path | str | None = None, *, keep_knowledge: bool = True):
        self.transcript = transcript
        self.path = Path(path) if path else None
        self.keep_knowledge = keep_knowledge
        self.redact = Redactor()
        self.decision_events: list[DecisionEvent] = []
        self._session: Session | None = None

    @classmethod
    def for_project(
        cls, path: Path | str, project_dir: Path | str, *, today: str, knowledge_source: str = "embedded",
        mode: str = "offline",
    ) -> "Recorder":
        """Append to the transcript at `path` (a session stopped and resumed), or start one from the project."""
        path = Path(path)
        if path.exists():
            return cls(load_transcript(path), path)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem) or "session"
        transcript = Transcript(
            name=name, project=starting_project(project_dir), mode=mode,  # type: ignore[arg-type]
            knowledge=KnowledgeSource(source=knowledge_source), today=today,  # type: ignore[arg-type]
        )
        return cls(transcript, path)

    # -- sessions ------------------------------------------------------------------------

    def thread_label(self, thread: str, has_checkpoint: bool) -> str:
        """The label for a session on `thread`: a lost checkpoint means a new thread in the replay."""
        used = {s.thread for s in self.transcript.sessions}
        if has_checkpoint or thread not in used:
            return thread
        n = 2
        while f"{thread}#{n}" in used:
            n += 1
        return f"{thread}#{n}"

    def can_resume(self, thread: str) -> bool:
        """The thread's last recorded session stopped at a question (so a session can continue it)."""
        last = [s for s in self.transcript.sessions if s.thread == thread]
        return bool(last and last[-1].stopped_at)

    def begin_session(self, thread: str = "main", *, resumed: bool = False, today: str | None = None) -> Session:
        if resumed and not self.can_resume(thread):
            raise TranscriptError(f"cannot resume thread {thread!r}: no earlier session of it stopped at a question")
        session = Session(thread=thread, resumed=resumed, today=today if today != self.transcript.today else None)
        session.trajectory.append([])
        self.transcript.sessions.append(session)
        self._session = session
        return session

    @property
    def session(self) -> Session:
        if self._session is None:
            raise TranscriptError("no session begun")
        return self._session

    def on_update(self, node: str, change: Any) -> None:
        """One item of `stream_mode="updates"`: the node ran (or the graph stopped at a question)."""
        session = self.session
        session.trajectory[-1].append(node)
        if not isinstance(change, dict):
            return
        if self.keep_knowledge:
            for rec in change.get("knowledge") or []:
                kept = {k: v for k, v in rec.items() if k != "latency_ms"}  # timing noise, not behaviour
                self.transcript.knowledge.records.setdefault(rec["query_id"], []).append(self.redact(kept))
        if change.get("decisions"):
            index = self.transcript.sessions.index(session)
            self.decision_events.append(
                DecisionEvent(index, len(session.trajectory) - 1, node, tuple(change["decisions"]))
            )

    def on_answer(self, payload: dict[str, Any], answer: Any) -> None:
        """The user answered the question `payload`; the next graph run starts a new trajectory step."""
        shown = Shown.of(self.redact(payload))
        self.session.turns.append(Turn(**shown.model_dump(), answer=self.redact(answer)))
        self.session.trajectory.append([])

    def end_session(self, pending: dict[str, Any] | None) -> None:
        """The session ended: at a question left unanswered, or with the graph finished (None)."""
        self.session.stopped_at = Shown.of(self.redact(pending)) if pending else None

    def finish(self, project_dir: Path | str, values: dict[str, Any]) -> Transcript:
        self.transcript.expected = outcome(project_dir, values)
        self.transcript.usage = {k: int(v) for k, v in (values.get("usage") or {}).items() if isinstance(v, (int, float))}
        return self.transcript

    def save(self) -> None:
        if self.path is not None:
            save_transcript(self.transcript, self.path)

    @property
    def callbacks(self) -> list[BaseCallbackHandler]:
        """Callbacks that record the chat model's responses (for replay in model mode)."""
        return [_ModelResponses(self)]


class _ModelResponses(BaseCallbackHandler):
    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        for generations in getattr(response, "generations", []) or []:
            for gen in generations:
                message = getattr(gen, "message", None)
                entry = {
                    "usage": dict(getattr(message, "usage_metadata", None) or {}),  # tokens of this call
                    "content": message.content if message is not None else getattr(gen, "text", ""),
                    "tool_calls": [
                        {"name": c["name"], "args": c["args"]} for c in getattr(message, "tool_calls", None) or []
                    ],
                }
                self.recorder.transcript.model_responses.append(self.recorder.redact(entry))
