"""Missing prompts are an error at start that names them, never a silent skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from agent import prompts
from agent.prompts import REQUIRED, PromptError, preload, prompts_dir
from tests.conftest import ROOT


@pytest.fixture
def prompt_folder(tmp_path, monkeypatch):
    folder = tmp_path / "prompts"
    shutil.copytree(prompts_dir(), folder)
    monkeypatch.setenv("TRAINING_PIPELINE_PROMPTS", str(folder))
    prompts._load.cache_clear()
    yield folder
    prompts._load.cache_clear()


def test_every_required_prompt_is_shipped():
    assert all((prompts.DEFAULT_DIR / f"{name}.md").is_file() for name in REQUIRED)
    preload()


def test_a_missing_folder_is_named(prompt_folder):
    shutil.rmtree(prompt_folder)
    with pytest.raises(PromptError, match=f"prompts folder {prompt_folder} is missing"):
        preload()


def test_a_missing_prompt_is_named(prompt_folder):
    (prompt_folder / "recommend" / "peft.md").unlink()
    with pytest.raises(PromptError, match=r"lacks: recommend/peft\.md"):
        preload()


def test_chat_stops_at_start_with_the_message(tmp_path, prompt_folder):
    (prompt_folder / "persona.md").unlink()
    subprocess.run([sys.executable, "-m", "agent.cli", "init-demo", str(tmp_path / "demo")], cwd=ROOT, check=True, capture_output=True)
    done = subprocess.run([sys.executable, "-m", "agent.cli", "chat", "--project", str(tmp_path / "demo"), "--offline"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "300"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "lacks: persona.md" in done.stdout and "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "demo" / ".training-pipeline").exists()  # stopped before touching the project
