"""Shared test helpers: the reference folder beside the checkout and fixture copies."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = SHARED / "fixtures" / "projects"
FIXTURE_NAMES = ("support-bot", "contract-assistant", "docs-qa", "unscoped")

# Time limits in tests are generous, and grow with the machine's load (a busy 2-core machine runs
# everything several times slower) and with TEST_TIME_SCALE (for a machine slower still).
TIME_SCALE = float(os.environ.get("TEST_TIME_SCALE", "1")) * max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def seconds(limit: float) -> float:
    """`limit` seconds, scaled for this machine now (see TIME_SCALE)."""
    return round(limit * TIME_SCALE, 1)


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


@pytest.fixture(scope="module")
def loop():
    """One event loop per test module, so services bound to it (the knowledge client) are shared."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def knowledge(loop):
    """The embedded knowledge server over stdio: one process for the module."""
    from agent.knowledge.client import KnowledgeClient, KnowledgeConfig

    client = KnowledgeClient(KnowledgeConfig(timeout_s=seconds(15)))  # the start counts too: scaled
    yield client
    loop.run_until_complete(client.aclose())
