# The two commands: `make train` (the embedded default job) and `make test` (ruff, the import contracts, pytest).
# Both install first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: install train test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --progress-bar off --upgrade pip
	$(BIN)/pip install -q --progress-bar off -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q --progress-bar off -c constraints.txt -e ".[dev]"
	touch $(STAMP)

train: install
	$(BIN)/vla-rl train configs/quickstart.yaml

test: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest -q tests

bench: install
	$(BIN)/vla-rl bench env

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs
