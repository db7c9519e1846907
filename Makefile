# Two commands do all set-up on a fresh machine:
#   make demo   - creates .venv, installs faceloom, fetches the sample clips, runs the whole chain
#   make test   - creates .venv, installs faceloom, runs lint, type checks and the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo-output

.PHONY: setup demo test lint pytest bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/faceloom demo --workspace $(DEMO_OUT)

lint: setup
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/mypy

pytest: setup
	$(BIN)/python -m pytest -q

test: lint pytest

bench: setup
	$(BIN)/python benchmarks/extract.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache .ruff_cache
