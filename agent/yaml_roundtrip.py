"""Rewriting a YAML document people keep by hand, with ruamel.yaml's round trip.

Comments, key order, quoting and flow/block style of every value a change does not
touch come out as they went in; only the values the change sets are emitted anew.
"""

from __future__ import annotations

import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.compat import StringIO
from ruamel.yaml.error import CommentMark
from ruamel.yaml.scalarstring import LiteralScalarString, ScalarString
from ruamel.yaml.tokens import CommentToken

# "key:" followed by a block sequence item: how far the file indents its list items.
_SEQUENCE_UNDER_KEY = re.compile(r"^( *)[^\s#-][^\n]*:[ \t]*(?:#[^\n]*)?\n(?:[ \t]*(?:#[^\n]*)?\n)*( *)- ", re.M)


def _yaml(text: str) -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 1 << 30  # never fold a long line the file kept on one
    match = _SEQUENCE_UNDER_KEY.search(text)
    offset = max(0, len(match.group(2)) - len(match.group(1))) if match else 2
    y.indent(mapping=2, sequence=offset + 2, offset=offset)  # the workflow writes "  - id: ..."
    first = next((line for line in text.splitlines() if line.strip() and not line.startswith("#")), "")
    y.explicit_start = first.startswith("---")
    return y


class Document:
    """A parsed document and how to write it back in the file's own layout."""

    def __init__(self, text: str) -> None:
        self._yaml = _yaml(text)
        self.data: Any = self._yaml.load(text)

    def dump(self) -> str:
        out = StringIO()
        self._yaml.dump(self.data, out)
        return out.getvalue()


def readable(value: Any) -> Any:
    """A plain value made ready to insert: multi-line text as `|` blocks, short number lists inline.

    Only a matter of looks: the caller loads the result back and checks it holds exactly
    `value` (a `|` block cannot hold every text, e.g. trailing spaces on a line).
    """
    if isinstance(value, dict):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = readable(v)
        return out
    if isinstance(value, list):
        seq = CommentedSeq(readable(v) for v in value)
        if value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            seq.fa.set_flow_style()
        return seq
    if isinstance(value, str) and "\n" in value.rstrip("\n") and _fits_a_block(value):
        return LiteralScalarString(value)
    return value


def _fits_a_block(text: str) -> bool:
    lines = text.split("\n")
    return (
        not text.startswith((" ", "\t"))
        and all(line == line.rstrip(" \t") for line in lines)
        and all(ch == "\n" or ch == "\t" or (ch.isprintable() and ch not in "\u2028\u2029\ufeff") for ch in text)
    )


def rewrite(text: str, new: dict) -> str:
    """`text`, a mapping, changed to hold `new`: only the values that differ are emitted anew."""
    doc = Document(text)
    if not isinstance(doc.data, CommentedMap):
        doc.data = readable(new)
    else:
        for key in [k for k in doc.data if k not in new]:
            del doc.data[key]
        for key, value in new.items():
            merge_into(doc.data, key, value)
    return doc.dump()


def merge_into(target: Any, key: Any, value: Any) -> None:
    """`target[key] = value`, keeping the comments, quoting and style of every part that stays."""
    exists = key in target if isinstance(target, dict) else key < len(target)
    if not exists:
        target[key] = readable(value)
        return
    old = target[key]
    if isinstance(old, CommentedMap) and type(value) is dict:
        for k in [k for k in old if k not in value]:
            del old[k]
        for k, v in value.items():
            merge_into(old, k, v)
        return
    if isinstance(old, CommentedSeq) and type(value) is list:
        for i in range(min(len(old), len(value))):
            merge_into(old, i, value[i])
        del old[len(value) :]
        for item in value[len(old) :]:
            old.append(readable(item))
            if len(old) > 1:
                _move_trailing_comment(old[-2], old[-1])
        return
    if _same_scalar(old, value):
        return
    if isinstance(old, ScalarString) and isinstance(value, str):
        target[key] = type(old)(value)  # "pending" -> "complete", still quoted
    else:
        target[key] = readable(value)


def _same_scalar(old: Any, new: Any) -> bool:
    if isinstance(old, (dict, list)) or isinstance(new, (dict, list)):
        return False
    if isinstance(old, bool) != isinstance(new, bool) or isinstance(old, str) != isinstance(new, str):
        return False
    try:
        return bool(old == new)
    except Exception:  # noqa: BLE001 - incomparable: not the same
        return False


def _move_trailing_comment(before: Any, appended: Any) -> None:
    """Comments and blank lines after a list's last item belong to what follows the list
    (`# Warnings Acknowledged` above the next key): keep them after an appended item."""
    old = _last_slot(before)
    new = _last_slot(appended)
    if old is None or new is None:
        return
    holder, key = old
    token = holder.ca.items.get(key, [None, None, None, None])
    slot = 2 if isinstance(holder, dict) else 0
    comment = token[slot] if len(token) > slot else None
    if comment is None or "\n" not in comment.value:
        return
    own, _, rest = comment.value.partition("\n")
    if not rest:
        return
    comment.value = own + "\n"
    target, target_key = new
    entry = target.ca.items.setdefault(target_key, [None, None, None, None])
    moved = CommentToken("\n" + rest, CommentMark(0), None)
    entry[2 if isinstance(target, dict) else 0] = moved


def _last_slot(value: Any) -> tuple[Any, Any] | None:
    """The container and key (or index) of the deepest last value: where ruamel keeps trailing comments."""
    slot = None
    while isinstance(value, (CommentedMap, CommentedSeq)) and len(value):
        key = list(value)[-1] if isinstance(value, CommentedMap) else len(value) - 1
        slot = (value, key)
        value = value[key]
    return slot

