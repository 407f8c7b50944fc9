"""Text that comes from outside (a sidecar, a knowledge server, an answer sent as JSON, a model)
is made safe to print and to write, here and only here.

A terminal obeys escape sequences wherever they come from: an ANSI/OSC sequence in a sidecar
value can retitle the window, clear the screen or hide text, and it would also land in the
artifacts. So every such text loses its escape sequences and control characters (newlines and
tabs stay). Rich markup is a separate concern of the terminal: `escape_markup` keeps a text like
`[/red]` literal inside a styled message.
"""

from __future__ import annotations

import re
from typing import Any

# ESC-introduced sequences: CSI (ESC [ ... final), OSC/DCS/SOS/PM/APC strings (ended by BEL or
# ESC \), and two-character escapes. Their 8-bit C1 forms (0x9B CSI, 0x9D OSC, ...) likewise.
_SEQUENCE = re.compile(
    r"""
      (?:\x1b\[|\x9b) [0-?]* [ -/]* [@-~]                       # CSI
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]) .*? (?:\x07|\x1b\\|\x9c|$)  # OSC, DCS, SOS, PM, APC
    | \x1b [ -/]* [0-~]                                         # other escapes (ESC c, ESC ( B, ...)
    """,
    re.VERBOSE | re.DOTALL,
)
# What is left of C0 and C1 after the sequences, DEL included; \t and \n are kept, \r is dropped
# (a lone carriage return overwrites the line it is on).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def sanitize(text: str) -> str:
    """`text` without escape sequences or control characters; newlines and tabs kept."""
    # Nearly every text is clean: one scan finds that (ESC, CR and the C1 codes are all controls),
    # where the two substitutions below cost a knowledge stage's thousands of strings far more.
    if not text or _CONTROL.search(text) is None:
        return text
    text = text.replace("\r\n", "\n")
    return _CONTROL.sub("", _SEQUENCE.sub("", text))


def sanitize_data(value: Any) -> Any:
    """`sanitize` applied to every string in a JSON-like value (dict keys included)."""
    if isinstance(value, str):
        return sanitize(value)
    if isinstance(value, dict):
        return {sanitize_data(k): sanitize_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitize_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(sanitize_data(v) for v in value)
    return value


def escape_markup(text: Any) -> str:
    """`text` for a Rich markup string: sanitized, and its `[...]` shown literally."""
    from rich.markup import escape

    return escape(sanitize(str(text)))
