# Everything needs only python3 and pip; `make setup` makes the virtual environment.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup bytecode test test-fast chat demo eval bench reliability clean

$(BIN)/training-pipeline: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $@

# The tests also load exported configs into the real TRL and peft classes (CPU torch).
$(VENV)/.trainers: $(BIN)/training-pipeline
	$(BIN)/pip install -q -e ".[test,trainers]"
	touch $@

setup: $(BIN)/training-pipeline bytecode

# An editable install leaves our modules uncompiled, and with PYTHONDONTWRITEBYTECODE set (as on
# many CI machines) every start compiled them again: a tenth of the wait for the first question.
# pip compiles the installed dependencies; this does the same for our own code (fast when current).
bytecode: $(BIN)/training-pipeline
	$(BIN)/python -m compileall -q agent evals graph.py >/dev/null

test: $(VENV)/.trainers bytecode
	$(BIN)/python -m pytest

# The everyday loop (about 2 minutes): everything but the tests marked slow.
test-fast: $(VENV)/.trainers bytecode
	$(BIN)/python -m pytest -m "not slow"

eval: setup
	$(BIN)/training-pipeline eval evals/transcripts

bench: setup
	$(BIN)/python -m evals.bench

# 1,000 fuzzed sessions with injected faults, and kill-anywhere runs; prints the summary table.
reliability: setup
	$(BIN)/python -m evals.reliability --sessions 1000

demo: setup
	test -f demo/sidecar.yaml || $(BIN)/training-pipeline init-demo demo --architecture fine-tuning

# Offline unless OPENAI_API_KEY is set (see the README).
chat: demo
	$(BIN)/training-pipeline chat --project demo

clean:
	rm -rf $(VENV) demo .pytest_cache
