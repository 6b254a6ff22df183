# Set-up and the two README commands. `make demo` runs the default audit;
# `make test` runs every test (core, plugins, contrib template); `make test-slow`
# the long end-to-end claims; `make test-gpu` the CUDA / bf16 tests (needs a GPU:
# without one it fails instead of skipping).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# These releases lie on the project machines' disk; pyproject declares ranges they satisfy.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
PLUGINS := $(sort $(wildcard plugins/*))
STAMP  := $(VENV)/.dife-installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install demo test test-slow test-gpu clean

install: $(STAMP)

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH_PIN)
	# Two steps: pip 23 cannot match a plugin's test extra that requires another
	# plugin against that plugin's own editable-with-extras argument.
	$(PIP) install -e . $(foreach p,$(PLUGINS),-e '$(p)')
	$(PIP) install -e '.[test]' $(foreach p,$(PLUGINS),-e '$(p)[test]')
	touch $(STAMP)

demo: install
	$(BIN)/dife demo

test: install
	DIFE_STRICT_PLUGINS=1 $(BIN)/python -m pytest -q

test-slow: install
	DIFE_STRICT_PLUGINS=1 $(BIN)/python -m pytest -q -m slow

test-gpu: install
	PY=$(BIN)/python benchmarks/gpu_check.sh

clean:
	rm -rf $(VENV) dife-demo
