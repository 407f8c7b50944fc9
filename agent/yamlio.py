"""YAML for the project's files.

`load` is the fast safe load (through libyaml when PyYAML has it: the pure-Python
parser is ~10x slower) for the files this step writes itself. `load_checked` reads a
file somebody else may have written (the sidecar): the same safe types, but duplicate
keys, alias bombs and absurd nesting are errors that say where, instead of a last value
silently winning or a later step running out of memory or stack.
"""

from __future__ import annotations

from typing import Any

import yaml

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# A real sidecar has a few hundred values nested a few levels deep: these leave a wide
# margin and still stop a crafted file before it costs a second.
MAX_VALUES = 200_000  # after expanding aliases
MAX_DEPTH = 100


class DuplicateKeys(yaml.YAMLError):
    """A mapping in the document names the same key twice."""

    def __init__(self, found: list[tuple[str, int]]) -> None:
        self.found = found  # (key, 1-based line of the repeat)
        self.where = ", ".join(f"{key!r} (again at line {line})" for key, line in found)
        super().__init__(f"duplicate keys: {self.where}")


class TooLarge(yaml.YAMLError):
    """Expanding the document's aliases, or its nesting, goes past what a project file holds."""


def load(text: str) -> Any:
    """`yaml.safe_load`, faster: same safe constructors, same resolver.

    On invalid YAML the pure-Python parser runs again, for its clearer message and mark.
    """
    try:
        return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        if SafeLoader is yaml.SafeLoader:
            raise
        return yaml.safe_load(text)


class _StrictLoader(SafeLoader):  # type: ignore[misc, valid-type]
    """Records every key a mapping repeats (merge keys `<<` excepted: overriding is their point)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            # A scalar key is its resolved tag and text (cheap: no second construction).
            key = (key_node.tag, key_node.value) if isinstance(key_node, yaml.ScalarNode) else id(key_node)
            if key in seen:
                self.duplicates.append((str(key_node.value), key_node.start_mark.line + 1))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_checked(text: str) -> Any:
    """A document written by hand or by other tools: safe types, checked before anyone walks it.

    Raises DuplicateKeys naming every repeated key, TooLarge for alias bombs and deep
    nesting, and yaml.YAMLError (with the pure-Python parser's marks) for invalid YAML.
    """
    loader = _StrictLoader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        if "nesting depth" in str(exc.problem or ""):  # libyaml's own limit: no slow second parse
            raise TooLarge(f"values are nested more than {MAX_DEPTH} levels deep") from None
        if SafeLoader is yaml.SafeLoader:
            raise
        try:
            yaml.safe_load(text)  # for its clearer message and mark
        except RecursionError:
            raise TooLarge(f"values are nested more than {MAX_DEPTH} levels deep") from None
        raise
    except RecursionError:  # the pure-Python parser recurses per level
        raise TooLarge(f"values are nested more than {MAX_DEPTH} levels deep") from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise DuplicateKeys(loader.duplicates)
    check_size(data)
    return data


def check_size(data: Any) -> None:
    """Count values as a reader walking the data would see them (aliases expanded).

    Shared containers are counted once per use from a memo, so a bomb of nested
    aliases is measured in microseconds, not expanded.
    """
    sizes: dict[int, int] = {}

    def size(value: Any, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise TooLarge(f"values are nested more than {MAX_DEPTH} levels deep")
        if not isinstance(value, (dict, list)):
            return 1
        known = sizes.get(id(value))
        if known is not None:
            return known
        items = value.values() if isinstance(value, dict) else value
        total = 1
        for item in items:
            total += size(item, depth + 1)
            if total > MAX_VALUES:
                raise TooLarge(f"it expands to more than {MAX_VALUES:,} values (YAML aliases `*name` repeat what they point to)")
        sizes[id(value)] = total
        return total

    size(data, 0)
