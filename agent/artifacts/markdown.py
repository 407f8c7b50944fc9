"""Markdown helpers: escaping user text and finding `##` sections in existing files.

User text never starts a line in what we render (newlines become `<br>`), so it can
neither break a table nor forge a heading that `heading_spans` would later take for
one of our sections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Every break `str.splitlines` knows, so no reader of our files sees user text start a line.
_NEWLINES = re.compile("\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_BACKTICKS = re.compile(r"`+")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def inline(text: object) -> str:
    """One line of Markdown for arbitrary text: line breaks become `<br>`."""
    return _NEWLINES.sub("<br>", str(text).strip())


def cell(text: object) -> str:
    """A table cell: one line, pipes escaped (GFM splits rows on bare pipes)."""
    return inline(text).replace("|", "\\|")


def code(text: object) -> str:
    """An inline code span that survives backticks inside `text`."""
    s = inline(text)
    longest = max((len(m) for m in _BACKTICKS.findall(s)), default=0)
    fence = "`" * (longest + 1)
    if s.startswith("`") or s.endswith("`"):
        s = f" {s} "
    return f"{fence}{s}{fence}"


def split_lines(text: str) -> list[str]:
    """Lines with their endings. Splits on "\\n" only: `str.splitlines` also splits on
    U+2028 and friends, which Markdown does not, and user text may contain them."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


@dataclass(frozen=True)
class Span:
    """A `##` section: lines[start:end], heading at lines[start]."""

    heading: str
    start: int
    end: int


def heading_spans(lines: list[str], *, rule_ends_section: bool = False) -> list[Span]:
    """Every `## ` section outside code fences.

    A section runs to the next `#`/`##` heading (or, if `rule_ends_section`, the next
    `---` line) or the end of the file, so its trailing blank lines belong to it.
    """
    boundaries: list[tuple[int, str | None]] = []  # (index, heading text or None for a rule)
    in_fence = False
    for i, raw in enumerate(lines):
        line = raw.rstrip("\r\n")
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if line.startswith("## "):
            boundaries.append((i, line))
        elif line.startswith("# ") or (rule_ends_section and line.strip() == "---"):
            boundaries.append((i, None))
    spans = []
    for k, (i, heading) in enumerate(boundaries):
        if heading is None:
            continue
        end = boundaries[k + 1][0] if k + 1 < len(boundaries) else len(lines)
        spans.append(Span(heading, i, end))
    return spans


def splice(lines: list[str], index: int, block: str) -> str:
    """Insert `block` (complete lines) at `index`, with exactly one blank line on each
    side where there is a neighbour, so re-running on the output changes nothing."""
    before, after = lines[:index], lines[index:]
    if before and not before[-1].endswith("\n"):
        before[-1] += "\n"
    prefix = "\n" if before and before[-1].strip() else ""
    suffix = "\n" if after and after[0].strip() else ""
    return "".join(before) + prefix + block + suffix + "".join(after)
