"""YAML scalars written by hand so the template keeps the seed's layout and comments,
yet any value (a user's text included) loads back unchanged with `yaml.safe_load`."""

from __future__ import annotations

import math
import re


from agent import yamlio

# Characters YAML accepts literally in a stream (YAML 1.1, as PyYAML's reader checks).
_PRINTABLE = re.compile("[\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Printable, but a line break or BOM inside a quoted scalar would be folded or dropped.
_ALWAYS_ESCAPE = {"\x85", "\u2028", "\u2029", "\ufeff"}
_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/]*")


def quoted(text: str) -> str:
    """A double-quoted YAML scalar (JSON-style escapes) for any string."""
    out = ['"']
    for ch in text:
        if ch in _SHORT:
            out.append(_SHORT[ch])
        elif ch in _ALWAYS_ESCAPE or not _PRINTABLE.match(ch):
            n = ord(ch)
            out.append(f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def plain_or_quoted(text: str) -> str:
    """Bare like the seed's `- q_proj` when that reads back as the same string, else quoted."""
    if _PLAIN.fullmatch(text) and yamlio.load(text) == text:
        return text
    return quoted(text)


def number(value: int | float) -> str:
    """A number PyYAML resolves as int/float (it wants `1.0e-05`, not `1e-05`)."""
    if isinstance(value, bool):
        raise TypeError("use boolean() for bools")
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(float(value))
    if "e" in text:
        mantissa, exp = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        if exp[0] not in "+-":
            exp = "+" + exp
        text = f"{mantissa}e{exp}"
    return text


def boolean(value: bool) -> str:
    return "true" if value else "false"


def scalar(value: object) -> str:
    """Any JSON-like scalar: null, bool, number or (quoted) string."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return boolean(value)
    if isinstance(value, (int, float)):
        return number(value)
    return quoted(str(value))
