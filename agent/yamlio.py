"""YAML loading through libyaml when PyYAML has it: the pure-Python parser is ~10x slower,
and the sidecar is read back after every write."""

from __future__ import annotations

from typing import Any

import yaml

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
