"""The package as a user gets it: a wheel built from pyproject.toml, installed with plain pip into
a fresh virtual environment outside the checkout, run from a folder that is not the checkout.

Checked there: `--help`, a whole offline chat session, a whole session with a language model
(the local OpenAI-compatible test server), `training-pipeline eval` on the shipped transcripts,
and `training-pipeline studio` serving the graph with the project checkpointer.
"""

from __future__ import annotations

import asyncio
import filecmp
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pexpect
import pytest
import yaml
from langgraph_sdk import get_client

from tests.conftest import FIXTURES, ROOT
from tests.test_kill_resume import QUESTION_ID, answer
from tests.test_llm_server import FakeOpenAI
from tests.test_studio import QUIET_ENV

SHIPPED = ("pyproject.toml", "README.md", "graph.py", "langgraph.json", "agent", "evals", "prompts")
INSTALL_TIMEOUT = 1800  # a fresh environment downloads or unpacks every dependency: generous on a busy machine
TIMEOUT = 120  # one question to appear


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def user_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing that points back at the checkout or its venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith(("KNOWLEDGE_MCP_", "OPENAI_", "TRAINING_PIPELINE_"))}
    env.update({"COLUMNS": "200", "LINES": "50", "TERM": "dumb", "NO_COLOR": "1"}, **extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path]:
    """(the fresh environment's bin folder, a working folder outside the checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy, so that building leaves nothing in the checkout
    source.mkdir()
    for name in SHIPPED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, source / name)
    env = user_env()
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root / "dist"), str(source)], root, env, INSTALL_TIMEOUT)
    [wheel] = (root / "dist").glob("training_pipeline-*.whl")
    run([sys.executable, "-m", "venv", str(root / "venv")], root, env)
    bin_dir = root / "venv" / "bin"
    run([str(bin_dir / "python"), "-m", "pip", "install", "-q", f"{wheel}[test]"], root, env, INSTALL_TIMEOUT)
    work = root / "work"
    work.mkdir()
    return bin_dir, work


def test_the_installed_package_is_not_the_checkout(installed):
    bin_dir, work = installed
    out = run([str(bin_dir / "python"), "-c", "import agent, evals, graph, prompts; print(agent.__file__, evals.__file__, graph.__file__)"],
              work, user_env()).stdout
    site = str(bin_dir.parent)
    assert all(path.startswith(site) for path in out.split()), out
    assert str(ROOT) not in out
    help_text = run([str(bin_dir / "training-pipeline"), "--help"], work, user_env()).stdout
    assert "chat" in help_text and "studio" in help_text and "eval" in help_text


def chat_session(bin_dir: Path, work: Path, project: str, env: dict[str, str], *flags: str) -> str:
    """A whole `training-pipeline chat` session in a pseudo-terminal; what it printed."""
    child = pexpect.spawn(str(bin_dir / "training-pipeline"), ["chat", "--project", project, *flags], cwd=str(work), env=env,
                          encoding="utf-8", timeout=TIMEOUT, dimensions=(50, 200))
    seen = ""
    try:
        while child.expect([QUESTION_ID, pexpect.EOF]) == 0:
            seen += child.before + child.after
            qid = child.match.group(1)
            child.expect(r"\n> ")
            child.sendline(answer(qid))
        seen += child.before
        child.close()
    finally:
        if child.isalive():
            child.kill(signal.SIGKILL)
    assert child.exitstatus == 0, seen[-3000:]
    return seen


def assert_phase_complete(project: Path) -> None:
    raw = yaml.safe_load((project / "sidecar.yaml").read_text(encoding="utf-8"))
    assert raw["phases"]["phase_2_training"] == "complete"
    assert [d["id"] for d in raw["decisions"] if d["id"].startswith("tp-")] == [f"tp-00{i}" for i in range(1, 7)]


def test_an_offline_chat_session(installed):
    bin_dir, work = installed
    run([str(bin_dir / "training-pipeline"), "init-demo", "offline-demo"], work, user_env())
    seen = chat_session(bin_dir, work, "offline-demo", user_env(), "--offline")
    assert "Mode: offline" in seen and "Done." in seen
    assert_phase_complete(work / "offline-demo")


def test_a_chat_session_with_a_language_model(installed):
    bin_dir, work = installed
    run([str(bin_dir / "training-pipeline"), "init-demo", "model-demo"], work, user_env())
    with FakeOpenAI() as server:
        env = user_env(OPENAI_API_KEY="test-key", OPENAI_BASE_URL=server.url, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        seen = chat_session(bin_dir, work, "model-demo", env, "--model", "test-model")
        tools = {r["tools"][0]["function"]["name"] for r in server.requests}
    assert "Mode: language model test-model" in seen and "Done." in seen
    assert len(tools) >= 2, tools  # the prompts were found and sent: synthesis, recommendations, ...
    assert_phase_complete(work / "model-demo")


def test_eval_replays_the_shipped_transcripts(installed):
    bin_dir, work = installed
    done = run([str(bin_dir / "training-pipeline"), "eval", "--json"], work, user_env(), timeout=1200)
    report = json.loads(done.stdout)
    shipped = len(list((ROOT / "evals" / "transcripts").glob("*.yaml")))
    assert report["passed"] and len(report["transcripts"]) == shipped


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_studio_serves_the_graph_with_the_project_checkpointer(installed):
    bin_dir, work = installed
    folder = work / "studio"
    folder.mkdir()
    run([str(bin_dir / "training-pipeline"), "init-demo", "demo"], folder, user_env())
    url = f"http://127.0.0.1:{free_port()}"
    env = user_env(**QUIET_ENV, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    log = folder.parent / "studio.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(bin_dir / "training-pipeline"), "studio", "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1],
                                 "--no-browser"], cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)

        async def first_question() -> dict:
            client = get_client(url=url)
            thread = await client.threads.create()
            await client.runs.wait(thread["thread_id"], "training_pipeline", input={"project_dir": "demo"}, context={"offline": True})
            return (await client.threads.get_state(thread["thread_id"]))["interrupts"][0]["value"]

        assert asyncio.run(first_question())["question_id"] == "base_model.constraints"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text()
    assert "Using custom checkpointer: ProjectCheckpointer" in text, text[-3000:]
    assert (folder / ".langgraph_api" / "training-pipeline" / "checkpoints.sqlite").is_file()
    assert "BlockingError" not in text


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="the shared fixture projects are not beside the checkout")
def test_the_shipped_fixture_projects_are_the_shared_ones():
    """evals/ ships the fixture projects its transcripts start from: they must not drift."""
    shipped = ROOT / "evals" / "fixtures" / "projects"

    def differences(cmp: filecmp.dircmp) -> list[str]:
        out = [*cmp.left_only, *cmp.right_only, *cmp.funny_files]
        out += [name for name in cmp.common_files if (Path(cmp.left) / name).read_bytes() != (Path(cmp.right) / name).read_bytes()]
        for sub in cmp.subdirs.values():
            out += differences(sub)
        return out

    assert differences(filecmp.dircmp(FIXTURES, shipped)) == [], "copy ../shared/fixtures/projects to evals/fixtures/projects"
