"""The interrupt payload contract, asking, and answer parsing.

Every human-in-the-loop question goes through `ask()`, so every interrupt value
has the same shape (DESIGN.md, "Interrupt payload") whatever the front end.
Parsing never raises anything but `InvalidAnswer`, whose message becomes the
`error` of the same question asked again.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Literal

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
    """Interrupt with the question's payload and return the raw resume value."""
    return interrupt(question.payload(), response_schema=response_schema(question))


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
