"""Graph state and decision models.

The graph state is a TypedDict of plain JSON values so that it checkpoints the
same way in a file, in the LangGraph API server and in a transcript. The
pydantic models below validate those values at the boundaries (answers in,
artifacts and sidecar out).
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal

from langchain_core.messages import AnyMessage, RemoveMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.graph.message import add_messages
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# typing_extensions' TypedDict, not typing's: on Python < 3.12 pydantic builds JSON Schema only from
# this one, and that is how the API server gives Studio the graph's input and output schemas.
from typing_extensions import TypedDict

# The six sections, in the order the seed asks them; ids tp-001..tp-006.
SECTIONS: tuple[str, ...] = (
    "base_model",
    "training_approach",
    "training_data",
    "peft",
    "hyperparameters",
    "infrastructure",
)
DECISION_IDS: dict[str, str] = {s: f"tp-{i:03d}" for i, s in enumerate(SECTIONS, start=1)}
SECTION_TITLES: dict[str, str] = {
    "base_model": "Base Model",
    "training_approach": "Training Approach",
    "training_data": "Training Data",
    "peft": "PEFT Method and LoRA Configuration",
    "hyperparameters": "Hyperparameters",
    "infrastructure": "Infrastructure and Experiment Tracking",
}

Architecture = Literal["rag-only", "fine-tuning", "hybrid"]
ARCHITECTURES: tuple[str, ...] = ("rag-only", "fine-tuning", "hybrid")

MAX_TEXT = 4000  # longest free-text answer we accept; longer is re-asked, never truncated silently


class _Fields(BaseModel):
    """Structured part of a decision: what the config template needs."""

    # Validators built on first use (a decision), not at import: the first question needs none.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, defer_build=True)


class BaseModelFields(_Fields):
    model_id: str = Field(min_length=1, max_length=200, description="Catalogue key or Hugging Face repo id")
    name: str = Field(min_length=1, max_length=200, description="Hugging Face repo id used to load the model")
    revision: str = Field(default="main", min_length=1, max_length=100)
    params_b: float = Field(gt=0, le=2000, description="Parameters, in billions")
    license: str = Field(min_length=1, max_length=100)
    context_length: int = Field(ge=128, le=10_000_000)
    family: str = Field(min_length=1, max_length=50, description="Architecture family (llama, mistral, qwen2, gemma, phi3, falcon, gpt2, ...)")


class TrainingApproachFields(_Fields):
    approach: Literal["sft", "dpo", "combined"]


class TrainingDataFields(_Fields):
    source: str = Field(min_length=1, max_length=MAX_TEXT, description="Where the data comes from and how it was collected")
    sft_examples: int | None = Field(default=None, ge=0, le=10**9, description="Instruction-response pairs")
    dpo_pairs: int | None = Field(default=None, ge=0, le=10**9, description="Preference pairs (prompt, chosen, rejected)")
    quality_checks: list[Literal["diversity", "quality", "consistency", "no_contamination", "no_pii"]] = Field(default_factory=list)
    eval_split: float = Field(default=0.05, ge=0, lt=1, description="Held-out fraction for validation")
    train_path: str = Field(default="data/train.jsonl", min_length=1, max_length=500)
    eval_path: str = Field(default="data/eval.jsonl", min_length=1, max_length=500)


class PeftFields(_Fields):
    method: Literal["full", "lora", "qlora"]
    quantization: Literal["none", "4bit", "8bit"] = "none"
    r: int | None = Field(default=None, ge=1, le=1024)
    alpha: int | None = Field(default=None, ge=1, le=4096)
    dropout: float | None = Field(default=None, ge=0, le=0.5)
    target_modules: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _method_consistent(self) -> "PeftFields":
        if self.method == "full":
            if self.r is not None or self.alpha is not None:
                raise ValueError("full fine-tuning has no LoRA rank or alpha; leave r and alpha empty")
        else:
            if self.r is None or self.alpha is None:
                raise ValueError(f"{self.method} needs a rank r and an alpha")
            if not self.target_modules:
                raise ValueError(f"{self.method} needs at least one target module")
        if self.method == "qlora" and self.quantization == "none":
            raise ValueError("QLoRA loads the base model quantized: set quantization to 4bit (or 8bit)")
        return self


class HyperparameterFields(_Fields):
    learning_rate: float = Field(gt=0, le=1e-2)
    batch_size: int = Field(ge=1, le=4096, description="Micro-batch size per device")
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=4096)
    num_epochs: float = Field(gt=0, le=100)
    warmup_ratio: float = Field(default=0.03, ge=0, le=0.5)
    weight_decay: float = Field(default=0.0, ge=0, le=1)
    max_length: int = Field(ge=16, le=10_000_000)
    dpo_beta: float | None = Field(default=None, gt=0, le=10)
    reference_free: bool | None = None
    budget: str = Field(default="", max_length=MAX_TEXT)


class InfrastructureFields(_Fields):
    platform: str = Field(min_length=1, max_length=200)
    instance_type: str = Field(min_length=1, max_length=200)
    gpu_count: int = Field(default=1, ge=1, le=1024)
    spot_instances: bool = False
    tracking_tool: str = Field(min_length=1, max_length=200)
    project: str = Field(min_length=1, max_length=200)
    experiment: str = Field(min_length=1, max_length=200)
    estimated_cost: str = Field(default="", max_length=500)


FIELDS_MODELS: dict[str, type[_Fields]] = {
    "base_model": BaseModelFields,
    "training_approach": TrainingApproachFields,
    "training_data": TrainingDataFields,
    "peft": PeftFields,
    "hyperparameters": HyperparameterFields,
    "infrastructure": InfrastructureFields,
}


class Decision(BaseModel):
    """One TP decision: the structured part plus the ADR narrative."""

    model_config = ConfigDict(extra="forbid")

    id: str
    section: str
    title: str
    choice: str = Field(min_length=1, max_length=MAX_TEXT)
    rationale: str = Field(min_length=1, max_length=MAX_TEXT)
    options_considered: list[str] = Field(default_factory=list)
    consequences: list[str] = Field(default_factory=list)
    knowledge_refs: list[str] = Field(default_factory=list, description="'endpoint:topic-or-query' refs of queries consulted")
    knowledge_items: list[str] = Field(default_factory=list, description="Ids of knowledge items cited")
    warnings_acknowledged: list[str] = Field(default_factory=list)
    fields: dict[str, Any]
    context: str = Field(default="", max_length=MAX_TEXT, description="What the user said when asked the section's question")
    date: str
    superseded_on: str | None = None

    @field_validator("section")
    @classmethod
    def _known_section(cls, v: str) -> str:
        if v not in SECTIONS:
            raise ValueError(f"unknown section {v!r}")
        return v

    @model_validator(mode="after")
    def _fields_valid(self) -> "Decision":
        self.fields = FIELDS_MODELS[self.section].model_validate(self.fields).model_dump(mode="json")
        return self

    @property
    def knowledge_ref(self) -> str:
        """The single ref the sidecar's decision entry carries."""
        return self.knowledge_refs[0] if self.knowledge_refs else ""


def _merge_dict(left: dict | None, right: dict | None) -> dict:
    """Reducer: shallow merge; a value of None deletes the key."""
    out = dict(left or {})
    for k, v in (right or {}).items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def _sum_counts(left: dict | None, right: dict | None) -> dict:
    """Reducer: add numbers key by key (language-model usage over a session)."""
    out = dict(left or {})
    for k, v in (right or {}).items():
        out[k] = out.get(k, 0) + v
    return out


def _append_messages(current: list, writes: list) -> list:
    # One merge for all the batches: each merge indexes the whole chat, so rebuilding a long chat
    # from its deltas one batch at a time cost batches x messages. Batch by batch only where a
    # message is removed, where the order of merges decides the result.
    batches = [batch if isinstance(batch, list) else [batch] for batch in writes]
    if any(_removes(m) for batch in batches for m in batch):
        for batch in batches:
            current = add_messages(current, batch)
        return current
    return add_messages(current, [m for batch in batches for m in batch])


def _removes(message: Any) -> bool:
    return isinstance(message, RemoveMessage) or (isinstance(message, dict) and message.get("type") == "remove")


def _extend(current: list, writes: list) -> list:
    out = list(current)
    for batch in writes:
        out.extend(batch)
    return out


class GrowingDeltaChannel(DeltaChannel):
    """A DeltaChannel whose snapshots grow rarer as its value grows.

    Only the new writes go into most checkpoints, and a full snapshot now and then. A snapshot
    writes the whole value (the chat: some 350 kB after 200 answers), so at a fixed cadence the
    write cost grew with the session (3x after 200 answers, every 6 updates); and each run
    rebuilds the value by reading back the checkpoints since the last snapshot, so rare ones make
    every run read more. Here a snapshot comes every `snapshot_frequency` updates while the value
    is short, then after one update per ITEMS_PER_UPDATE items it holds: its cost, spread over
    those updates, stays the same per update however long the session, and a short session still
    reads back only a few checkpoints.
    """

    __slots__ = ()
    ITEMS_PER_UPDATE = 8

    @property  # type: ignore[override]  # LangGraph reads it when it decides to snapshot
    def snapshot_frequency(self) -> int:
        value = getattr(self, "value", None)
        return max(self._least, len(value) // self.ITEMS_PER_UPDATE) if isinstance(value, list) else self._least

    @snapshot_frequency.setter
    def snapshot_frequency(self, least: int) -> None:
        DeltaChannel.snapshot_frequency.__set__(self, least)  # the base class's slot

    @property
    def _least(self) -> int:
        return DeltaChannel.snapshot_frequency.__get__(self)

    # The base class makes its copies with `snapshot_frequency=self.snapshot_frequency`: give them
    # the least cadence, not the one this value has reached.
    def copy(self) -> GrowingDeltaChannel:
        return self._with_least(super().copy())

    def from_checkpoint(self, checkpoint: Any) -> GrowingDeltaChannel:
        return self._with_least(super().from_checkpoint(checkpoint))

    def _with_least(self, new: GrowingDeltaChannel) -> GrowingDeltaChannel:
        new.snapshot_frequency = self._least
        return new


# The two channels that grow with every answer: a snapshot about every two answers in a
# session of usual length, rarer in a long one.
MessagesChannel = GrowingDeltaChannel(_append_messages, snapshot_frequency=6)
AnswersChannel = GrowingDeltaChannel(_extend, snapshot_frequency=3)
# Knowledge is the largest value (tens of kB) and changes a few times a session: stored
# whole in the checkpoints where it changes (a snapshot at every update), and not in the others.
KnowledgeChannel = DeltaChannel(_extend, snapshot_frequency=1)


class AnswerRecord(TypedDict):
    question_id: str
    answer: Any
    accepted: bool
    error: str | None


class PipelineInput(TypedDict, total=False):
    """What a caller passes to start a run: the project folder, or chat messages (Agent Chat UI).

    With messages alone, a user message names the folder (a path, or JSON with `project_dir`);
    a message sent while a question waits is that question's answer.
    """

    # Title and description are what Studio shows on the input form.
    project_dir: Annotated[
        str,
        Field(
            title="Project folder",
            description="Path of the project folder (the one holding sidecar.yaml), as the server sees it",
        ),
    ]
    messages: Annotated[list[AnyMessage], Field(description="Chat messages (Agent Chat UI): one names the project folder, later ones answer the waiting question"), MessagesChannel]


class PipelineState(TypedDict, total=False):
    """The thread's state: the project, what the knowledge server said, the decisions, what was written."""

    project_dir: Annotated[str, Field(description="Path of the project folder (the one holding sidecar.yaml)")]
    messages: Annotated[list[AnyMessage], Field(description="The chat: the questions asked and the user's answers"), MessagesChannel]
    project: Annotated[dict[str, Any], Field(description="The project as loaded: name, architecture, constraints from project-spec, phase status")]
    architecture: Annotated[str | None, Field(description="The project's architecture (rag-only skips the phase)")]
    phase_status: Annotated[str, Field(description="pending | in_progress | complete | skipped")]
    knowledge: Annotated[list[dict[str, Any]], Field(description="Every knowledge query made, in order (see agent.knowledge.models.QueryRecord)"), KnowledgeChannel]
    insights: Annotated[list[dict[str, Any]], Field(description="The knowledge synthesis shown before the first decision")]
    section_context: Annotated[dict[str, str], Field(description="Per section: what the user said when asked"), _merge_dict]
    recommendations: Annotated[dict[str, dict[str, Any]], Field(description="Per section: the proposal made from what the user said"), _merge_dict]
    decisions: Annotated[dict[str, dict[str, Any]], Field(description="Confirmed decisions by section (Decision.model_dump())"), _merge_dict]
    superseded: Annotated[list[dict[str, Any]], Field(description="Decisions replaced by a revisit, kept for the decision log"), operator.add]
    answers: Annotated[list[AnswerRecord], Field(description="Every answer the user gave, accepted or not: nothing typed is lost"), AnswersChannel]
    errors: Annotated[dict[str, str], Field(description="Why the last answer to a question was rejected, by question_id"), _merge_dict]
    revisiting: Annotated[str | None, Field(description="The section being decided again from the menu (A)")]
    pending_question: Annotated[str | None, Field(description="A question typed at the menu, answered by the next node")]
    asking: Annotated[dict[str, str] | None, Field(description="The question posted to the chat and waiting for its answer: question_id, the node that asks it, and the id of its message (a user message after it answers it)")]
    notice: Annotated[str | None, Field(description="Shown at the top of the next menu (progress, an answer, a warning)")]
    notices: Annotated[list[str], Field(description="Knowledge failures and other things the user must know"), operator.add]
    artifacts: Annotated[list[str], Field(description="Paths written in the project folder, relative to it")]
    handoff: Annotated[dict[str, Any] | None, Field(description="The next step of the workflow (Phase 3), once this one ends")]
    llm_calls: Annotated[list[dict[str, Any]], Field(description="Language-model calls: one record per request (purpose, attempt, outcome, tokens, characters sent)"), operator.add]
    usage: Annotated[dict[str, int], Field(description="Totals of the model calls for the session, absent offline (see agent.llm.summarize_usage)"), _sum_counts]
