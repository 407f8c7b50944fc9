"""Changing a few top-level values of a block-style YAML file by replacing only their bytes.

A round trip through ruamel.yaml re-emits the whole file, which costs tens of
milliseconds per write. A sidecar is a block mapping whose top-level keys start at
column 0, and a write changes one or two of them: the other keys' text is copied as it
is, a changed list of mappings (`decisions`) keeps the text of every unchanged item, and
only what changed is emitted. Callers load the result back and compare it with what
they meant to write; `None` means "this file's layout is not simple enough", and the
caller takes the full round trip instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any


# A top-level key: plain or quoted, at column 0, followed by ':' and a space or the line end.
_TOP_KEY = re.compile(r"""^(?:"[^"\n]*"|'[^'\n]*'|[^\s#'"\-?:{}\[\],&*!|>%@`][^\n]*?)[ \t]*:(?:[ \t]|$)""")
_ITEM = re.compile(r"^( *)- ")


def _blank_or_comment(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _chunks(text: str) -> tuple[list[str], list[list[str]]] | None:
    """(header lines, one list of lines per top-level key), or None for any other layout."""
    lines = text.splitlines(keepends=True)
    header: list[str] = []
    chunks: list[list[str]] = []
    for line in lines:
        if _TOP_KEY.match(line):
            chunks.append([line])
        elif line.startswith(("---", "...", "%")) or (line[:1] not in (" ", "\t", "\n", "\r", "#", "") and not _blank_or_comment(line)):
            return None  # document markers, a top-level continuation line: not this simple layout
        elif chunks:
            chunks[-1].append(line)
        else:
            header.append(line)
    return header, chunks


def _starts_with_key(line: str, key: str) -> bool:
    """Whether the line names `key` (plain or quoted): the caller's final load-back check is exact."""
    return any(line.startswith(form + ":") or line.startswith(form + " ") for form in (key, f'"{key}"', f"'{key}'"))


def _split_tail(lines: list[str]) -> tuple[list[str], list[str]]:
    """A chunk's own lines, and the blank and comment lines after them (they introduce what follows)."""
    end = len(lines)
    while end > 1 and _blank_or_comment(lines[end - 1]):
        end -= 1
    return lines[:end], lines[end:]


def splice(
    text: str,
    old: dict,
    new: dict,
    same: Callable[[Any, Any], bool],
    emit_key: Callable[[str, Any], str],
    emit_item: Callable[[Any], str],
) -> str | None:
    """`text` (which loads as `old`) changed to hold `new`; None when the layout does not allow it.

    `emit_key(key, value)` writes a whole top-level entry; `emit_item(item)` one list item
    as `  - ...` lines (indented two spaces, re-indented here to the file's own).
    """
    parsed = _chunks(text)
    if parsed is None:
        return None
    header, chunks = parsed
    if len(chunks) != len(old):
        return None
    keyed: dict[Any, list[str]] = {}
    for chunk, key in zip(chunks, old):
        if not (isinstance(key, str) and _starts_with_key(chunk[0], key)):
            return None
        keyed[key] = chunk

    out = list(header)
    for key, value in new.items():
        if out and not out[-1].endswith("\n"):
            out[-1] += "\n"
        chunk = keyed.get(key)
        if chunk is None:
            out.append(emit_key(key, value))
            continue
        if same(old[key], value):
            out += chunk
            continue
        body, tail = _split_tail(chunk)
        items = _list_items(body, old[key], value, same, emit_item) if isinstance(value, list) else None
        out.append(items if items is not None else emit_key(key, value))
        out += tail
    return "".join(out)


def _list_items(body: list[str], old: Any, new: list, same: Callable[[Any, Any], bool], emit_item: Callable[[Any], str]) -> str | None:
    """A block list of mappings with each unchanged item's text kept; None if the text is not one."""
    if not isinstance(old, list) or not all(isinstance(v, dict) for v in new) or len(body) < 2:
        return None
    if not re.match(r"^[^#]*:[ \t]*(#.*)?\r?\n$", body[0]):
        return None  # `key: [...]` or `key: []`: flow style, emitted anew
    starts = [i for i, line in enumerate(body) if _ITEM.match(line)]
    if not starts:
        return None
    indent = len(_ITEM.match(body[starts[0]]).group(1))
    starts = [i for i in starts if len(_ITEM.match(body[i]).group(1)) == indent]
    if any(not _blank_or_comment(line) for line in body[1 : starts[0]]) or len(starts) != len(old):
        return None
    segments = [body[a:b] for a, b in zip(starts, [*starts[1:], len(body)])]
    used: set[int] = set()
    out = ["".join(body[: starts[0]])]
    for item in new:
        match = next((j for j, value in enumerate(old) if j not in used and same(value, item)), None)
        if match is not None:
            used.add(match)
            segment = segments[match]
            if not segment[-1].endswith("\n"):
                segment = [*segment[:-1], segment[-1] + "\n"]
            out.append("".join(segment))
            continue
        piece = emit_item(item)
        shift = indent - 2
        if shift:
            piece = "".join((" " * shift + line) if shift > 0 else line[-shift:] for line in piece.splitlines(keepends=True))
        out.append(piece)
    return "".join(out)


def chunk_text(text: str, key: Any) -> str | None:
    """The text of top-level `key` without the comment lines that follow it."""
    parsed = _chunks(text)
    if parsed is None or not isinstance(key, str):
        return None
    for chunk in parsed[1]:
        if _starts_with_key(chunk[0], key):
            return "".join(_split_tail(chunk)[0])
    return None
