# The two commands: `make train` (the embedded default job) and `make test` (ruff, the import contracts, pytest).
# Both install first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: install install-ros2 install-ray train test bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --progress-bar off --upgrade pip
	$(BIN)/pip install -q --progress-bar off -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q --progress-bar off -c constraints.txt -e ".[dev]"
	touch $(STAMP)

# The ros2 extra (robots/ros2 and its tests, which skip without it).
install-ros2: $(VENV)/.installed-ros2

$(VENV)/.installed-ros2: $(STAMP)
	$(BIN)/pip install -q --progress-bar off -c constraints.txt -e ".[dev,ros2]"
	touch $@

# The ray extra (vla_rl.distributed: distributed.backend=ray, and its tests, which skip without it).
install-ray: $(VENV)/.installed-ray

$(VENV)/.installed-ray: $(STAMP)
	$(BIN)/pip install -q --progress-bar off -c constraints.txt -e ".[dev,ray]"
	touch $@

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
