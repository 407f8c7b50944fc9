"""Shared test helpers: the reference folder beside the checkout and fixture copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures" / "projects"
FIXTURE_NAMES = ("support-bot", "contract-assistant", "docs-qa", "unscoped")


@pytest.fixture
def project_copy(tmp_path):
    """Copy a fixture project into a temporary folder and return its path."""

    def _copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(FIXTURES / name, dest)
        for p in [dest, *dest.rglob("*")]:  # the shared copy is read-only
            p.chmod(0o755 if p.is_dir() else 0o644)
        return dest

    return _copy
