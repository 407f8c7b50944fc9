"""The interrupt payload contract, asking, and answer parsing.

Every human-in-the-loop question goes through `ask()`, so every interrupt value
has the same shape (DESIGN.md, "Interrupt payload") whatever the front end.
Parsing never raises anything but `InvalidAnswer`, whose message becomes the
`error` of the same question asked again.

Beside our own keys, every payload carries LangChain's human-in-the-loop request
(`action_requests`, `review_configs`), which chat front ends such as Agent Chat UI
render as a card; `from_decisions()` turns their `{"decisions": [...]}` resume into
the answer the terminal would have typed, so every node parses one language.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, Literal

from langchain_core.messages import AIMessage
from langgraph.types import interrupt
from pydantic import BaseModel, Field

from agent.state import MAX_TEXT

Kind = Literal["text", "choice", "form", "menu", "confirm"]

YES = {"y", "yes", "ok", "okay", "accept", "confirm", "confirmed", "agree", "sure", "looks good", "lgtm"}
NO = {"n", "no", "nope", "cancel"}


class Option(BaseModel):
    value: str
    label: str
    description: str = ""


class FormField(BaseModel):
    """One field of a `form` question (the structured part of a decision)."""

    name: str
    label: str
    type: Literal["string", "integer", "number", "boolean", "list"]
    description: str = ""
    choices: list[str] | None = None
    required: bool = True


class Question(BaseModel):
    question_id: str
    section: str
    kind: Kind
    title: str
    prompt: str
    options: list[Option] = Field(default_factory=list)
    default: Any = None
    error: str | None = None
    fields: list[FormField] = Field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"fields"} if not self.fields else set())


class InvalidAnswer(ValueError):
    """The answer cannot be used; the message tells the user why."""


# JSON Schema of the interrupt payload (the contract); tests validate every payload against it.
PAYLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["question_id", "section", "kind", "title", "prompt", "options", "default", "error"],
    "properties": {
        "question_id": {"type": "string", "pattern": r"^(menu|architecture|[a-z_]+\.[a-z_]+|menu\.revisit)$"},
        "section": {"type": "string", "minLength": 1},
        "kind": {"enum": ["text", "choice", "form", "menu", "confirm"]},
        "title": {"type": "string", "minLength": 1},
        "prompt": {"type": "string", "minLength": 1},
        "options": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["value", "label"],
                "properties": {
                    "value": {"type": "string", "minLength": 1},
                    "label": {"type": "string", "minLength": 1},
                    "description": {"type": "string"},
                },
            },
        },
        "default": {},
        "error": {"type": ["string", "null"]},
        "fields": {"type": "array"},
    },
}


def ask(question: Question) -> Any:
    """Interrupt with the question's payload (and the HITL request beside it); return the raw resume value."""
    return interrupt({**question.payload(), **hitl_request(question)}, response_schema=response_schema(question))


def response_schema(question: Question) -> dict[str, Any]:
    """A JSON Schema for the resume value, so Studio can render a typed input."""
    if question.kind == "form" and question.fields:
        props: dict[str, Any] = {}
        for f in question.fields:
            json_type = {"list": "array", "integer": "integer", "number": "number", "boolean": "boolean"}.get(f.type, "string")
            prop: dict[str, Any] = {"type": json_type, "title": f.label, "description": f.description}
            if f.type == "list":
                prop["items"] = {"type": "string"}
            if f.choices:
                prop["enum"] = f.choices
            props[f.name] = prop
        return {
            "title": question.title,
            "anyOf": [
                {"type": "object", "properties": props},
                {"type": "string", "description": "yes to accept, an option, or key: value edits"},
            ],
        }
    if question.options:
        return {"title": question.title, "type": "string", "examples": [o.value for o in question.options]}
    return {"title": question.title, "type": "string"}


# --- validation -------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def clean_text(raw: Any, *, max_len: int = MAX_TEXT, allow_empty: bool = False) -> str:
    """Validate a free-text answer; returns it stripped or raises InvalidAnswer."""
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = str(raw)
        else:
            raise InvalidAnswer("Please answer with text.")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in raw):
        raise InvalidAnswer("The answer contains characters that are not valid text (broken UTF-8). Please type it again.")
    if _CONTROL.search(raw):
        raise InvalidAnswer("The answer contains control characters. Please type it again without them.")
    text = unicodedata.normalize("NFC", raw).strip()
    if not text and not allow_empty:
        raise InvalidAnswer("An answer is needed here: type it, or pick one of the options.")
    if len(text) > max_len:
        raise InvalidAnswer(f"The answer is {len(text):,} characters long; please keep it under {max_len:,}.")
    return text


def parse_choice(raw: Any, options: list[Option]) -> str:
    """An option's value, its 1-based number, or its label (case-insensitive)."""
    text = clean_text(raw, max_len=500)
    if text.isdecimal():  # not isdigit(): int() refuses digits like '²' that isdigit() accepts
        n = int(text)
        if 1 <= n <= len(options):
            return options[n - 1].value
        raise InvalidAnswer(f"{n} is not one of the options: pick a number from 1 to {len(options)}.")
    folded = text.casefold()
    for opt in options:
        if folded in (opt.value.casefold(), opt.label.casefold()):
            return opt.value
    choices = ", ".join(f"{i}. {o.value}" for i, o in enumerate(options, 1))
    raise InvalidAnswer(f"'{_short(text)}' is not one of the options ({choices}).")


def match_choice(raw: Any, options: list[Option]) -> str | None:
    """Like parse_choice, but None instead of an error when the text is not an option."""
    try:
        return parse_choice(raw, options)
    except InvalidAnswer:
        return None


def is_yes(text: str) -> bool:
    return text.strip().casefold().rstrip(".!") in YES


def is_no(text: str) -> bool:
    return text.strip().casefold().rstrip(".!") in NO


_KV = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_ ]*?)\s*[:=]\s*(.*)$")


def parse_edits(text: str, fields: list[FormField]) -> dict[str, Any]:
    """Read `key: value` lines (or `key=value, key=value`) into field edits.

    Values are converted to the field's type; unknown keys are an error naming
    the fields that exist.
    """
    by_name = {f.name: f for f in fields}
    aliases = {f.label.casefold(): f.name for f in fields} | {f.name.replace("_", " "): f.name for f in fields}
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1 and "," in lines[0] and lines[0].count(":") + lines[0].count("=") > 1:
        lines = _split_pairs(lines[0])
    edits: dict[str, Any] = {}
    for line in lines:
        m = _KV.match(line)
        if not m:
            raise InvalidAnswer(
                f"Could not read '{_short(line)}'. Answer yes to accept, pick an option, or write edits as `field: value` "
                f"(fields: {', '.join(by_name)})."
            )
        key = m.group(1).strip().casefold().replace("-", "_")
        name = key if key in by_name else aliases.get(key) or aliases.get(key.replace("_", " "))
        if name is None:
            raise InvalidAnswer(f"There is no field '{_short(m.group(1))}'. Fields: {', '.join(by_name)}.")
        edits[name] = convert(m.group(2).strip(), by_name[name])
    if not edits:
        raise InvalidAnswer("No edits found.")
    return edits


def _split_pairs(line: str) -> list[str]:
    # "r: 16, alpha: 32, target_modules: q_proj, v_proj" -> keep list values together
    parts, current = [], ""
    for chunk in line.split(","):
        if _KV.match(chunk) and current:
            parts.append(current)
            current = chunk
        else:
            current = f"{current},{chunk}" if current else chunk
    if current:
        parts.append(current)
    return parts


def convert(value: str, field: FormField) -> Any:
    """Convert one typed value; raises InvalidAnswer with the field's name."""
    v = value.strip().strip('"').strip("'").strip()
    if v.casefold() in ("", "none", "null", "-") and not field.required:
        return None
    try:
        if field.type == "integer":
            return int(float(v.replace(",", "").replace("_", "")))
        if field.type == "number":
            return float(v.replace(",", "").replace("_", ""))
        if field.type == "boolean":
            if is_yes(v) or v.casefold() in ("true", "1", "on"):
                return True
            if is_no(v) or v.casefold() in ("false", "0", "off"):
                return False
            raise ValueError
        if field.type == "list":
            items = [x.strip().strip('"').strip("'") for x in re.split(r"[,\s]+", v.strip("[]")) if x.strip()]
            return items
    except (ValueError, OverflowError):  # OverflowError: int(float("inf")) for `r: inf` or `r: 1e400`
        raise InvalidAnswer(f"{field.name}: '{_short(v)}' is not a valid {field.type}.") from None
    if field.choices and v not in field.choices:
        folded = {c.casefold(): c for c in field.choices}
        if v.casefold() in folded:
            return folded[v.casefold()]
        raise InvalidAnswer(f"{field.name} must be one of: {', '.join(field.choices)}.")
    return v


def format_validation_error(exc: Exception) -> str:
    """A pydantic ValidationError as one short line per field."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    parts = []
    for err in errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _short(text: str, n: int = 60) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


# --- LangChain's human-in-the-loop request (what Agent Chat UI renders and answers) -----------------

DESCRIPTION_MAX = 400  # the card says what is asked; long tables stay in the chat message above it


def allowed_decisions(question: Question) -> list[str]:
    """A proposal (form, confirm) is approved, edited, or rejected with a message saying what instead;
    any other question is answered by editing its `answer` field (approve keeps a default)."""
    if question.kind in ("form", "confirm"):
        return ["approve", "edit", "reject"]
    return ["edit", "approve"] if _has_default(question) else ["edit"]


def hitl_request(question: Question) -> dict[str, Any]:
    """One action per question: its title, the proposal's fields (or an `answer` field), the question in short."""
    return {
        "action_requests": [{"name": question.title, "args": action_args(question), "description": describe(question)}],
        "review_configs": [{"action_name": question.title, "allowed_decisions": allowed_decisions(question)}],
    }


def action_args(question: Question) -> dict[str, Any]:
    if question.kind == "form" and isinstance(question.default, dict):
        return dict(question.default)
    return {"answer": "" if question.default is None else str(question.default)}


def describe(question: Question) -> str:
    """The question in short Markdown: the last error, the options, the question's own words."""
    parts = [f"**{question.error}**"] if question.error else []
    if question.options:
        heading = "Options (reject with one's number or name to pick it):" if question.kind == "form" else "Options (answer with the number or value):"
        lines = [f"{i}. **{o.label}** (`{o.value}`)" + (f": {o.description}" if o.description else "") for i, o in enumerate(question.options, 1)]
        parts.append(heading + "\n" + "\n".join(lines))
    if question.kind == "form":
        parts.append(
            "**Approve** records the proposal shown above, **edit** changes its fields, "
            "or **reject** with a message: another option's number or name, or what to change."
        )
    else:
        parts.append(question_text(question.prompt))
    return "\n\n".join(parts)


def question_text(prompt: str, limit: int = DESCRIPTION_MAX) -> str:
    """The prompt's last paragraph, where the question is (the rest stays in the chat message)."""
    paragraphs = [p.strip() for p in prompt.split("\n\n") if p.strip()]
    last = paragraphs[-1] if paragraphs else prompt.strip()
    return last if len(last) <= limit else last[: limit - 1].rsplit(" ", 1)[0] + "…"


def from_decisions(question: Question, raw: Any) -> Any:
    """A `{"decisions": [...]}` resume as the answer typed in the terminal; any other value unchanged.

    approve: `yes` to a proposal, else the question's default; edit: the changed form fields (a
    submitted form) or the `answer` text; reject: its message, read as free text.
    """
    if not (isinstance(raw, dict) and "decisions" in raw):
        return raw
    decisions = raw["decisions"]
    if not isinstance(decisions, list) or len(decisions) != 1 or not isinstance(decisions[0], dict):
        raise InvalidAnswer("Send one decision for this question: approve, edit or reject.")
    decision = decisions[0]
    kind, allowed = decision.get("type"), allowed_decisions(question)
    if kind not in allowed:
        raise InvalidAnswer(f"'{_short(str(kind))}' is not possible for this question; it allows: {', '.join(allowed)}.")
    if kind == "approve":
        return "yes" if question.kind in ("form", "confirm") else question.default
    if kind == "reject":
        message = decision.get("message")
        if question.kind == "confirm" and not (isinstance(message, str) and message.strip()):
            return "no"
        return clean_text(message)
    action = decision.get("edited_action")
    args = action.get("args") if isinstance(action, dict) else None
    if not isinstance(args, dict):
        raise InvalidAnswer("An edit needs the edited fields (`edited_action.args`).")
    if question.kind == "form" and question.fields:
        return edited_fields(question, args) or "yes"  # nothing changed: the proposal as shown
    if "answer" not in args:
        raise InvalidAnswer("Type your answer in the `answer` field.")
    return args["answer"]


def edited_fields(question: Question, args: dict[str, Any]) -> dict[str, Any]:
    """The fields whose edited value differs from the proposal, converted to their types.

    A card's text inputs send every value as a string (lists and null as JSON)."""
    by_name = {f.name: f for f in question.fields}
    unknown = [k for k in args if k not in by_name]
    if unknown:
        raise InvalidAnswer(f"There is no field '{_short(str(unknown[0]))}'. Fields: {', '.join(by_name)}.")
    original = question.default if isinstance(question.default, dict) else {}
    changed: dict[str, Any] = {}
    for name, value in args.items():
        typed = _typed(value, by_name[name])
        if typed != original.get(name):
            changed[name] = typed
    return changed


def _typed(value: Any, field: FormField) -> Any:
    if not isinstance(value, str):
        return [str(v) for v in value] if isinstance(value, list) else value
    text = value.strip()
    if field.type == "list" and text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            items = None
        if isinstance(items, list):
            return [str(v) for v in items]
    if text == "null" and field.required:
        raise InvalidAnswer(f"{field.name} needs a value.")
    return convert(text, field)


def _has_default(question: Question) -> bool:
    return question.default not in (None, "") and not isinstance(question.default, (dict, list))


# --- questions and answers in the chat (`messages`) --------------------------------------------------


def question_message(text: str, question_id: str, message_id: str) -> AIMessage:
    """A question posted to the chat; marked, so the terminal (which shows the question itself) skips it."""
    return AIMessage(content=text, name="facilitator", id=message_id, additional_kwargs={"question_id": question_id})


def is_question_message(message: Any) -> bool:
    return bool((getattr(message, "additional_kwargs", None) or {}).get("question_id"))


def message_text(message: Any) -> str:
    """A message's text: its content as a string, or its text blocks joined (chat front ends send blocks)."""
    content = getattr(message, "content", message)
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            b if isinstance(b, str) else str(b.get("text", "")) for b in content if isinstance(b, str) or (isinstance(b, dict) and b.get("type") == "text")
        )
    return str(content)
