"""`training-pipeline studio [langgraph dev options]`: the LangGraph API server for Studio.

`langgraph dev` reads a langgraph.json; an installed package has none in the folder a user
works in, so this writes the one below (the checkout's langgraph.json says the same) into the
server's own state folder and starts `langgraph dev` with it. The graph and the checkpointer
are named as modules, so they load from the installed package, from any folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from agent.checkpoint import DEFAULT_SERVER_DIR

CONFIG = {
    "dependencies": ["."],
    "graphs": {"training_pipeline": "graph:graph"},
    "checkpointer": {"path": "agent.checkpoint.make_checkpointer"},
    "env": {"LANGGRAPH_NO_VERSION_CHECK": "true"},
}


def studio_main(argv: list[str]) -> int:
    cli = shutil.which("langgraph", path=str(Path(sys.executable).parent)) or shutil.which("langgraph")
    if cli is None:
        print("Studio needs the LangGraph CLI: pip install 'training-pipeline[studio]'", file=sys.stderr)
        return 2
    folder = Path(DEFAULT_SERVER_DIR)  # the server keeps its threads in .langgraph_api/ here too
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "langgraph.json"
    config.write_text(json.dumps(CONFIG, indent=2) + "\n", encoding="utf-8")
    env = dict(os.environ)
    env.setdefault("LANGGRAPH_CLI_NO_ANALYTICS", "1")  # the CLI's usage ping goes out before it reads any config
    # No reloading: nothing here is edited, and the project folders a user works in may sit below this one.
    args = [cli, "dev", "--config", str(config), *([] if "--reload" in argv else ["--no-reload"]), *[a for a in argv if a != "--reload"]]
    os.execve(cli, args, env)
    return 0  # not reached
