# Set-up and the two README commands. `make demo` runs the default audit;
# `make test` runs every test (core, plugins, contrib template).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# These releases lie on the project machines' disk; pyproject declares ranges they satisfy.
TORCH_PIN ?= torch==2.14.1 torchvision==0.29.1
PLUGINS := $(sort $(wildcard plugins/*))
STAMP  := $(VENV)/.dife-installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: install demo test test-slow clean

install: $(STAMP)

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH_PIN)
	$(PIP) install -e '.[test]' $(foreach p,$(PLUGINS),-e '$(p)[test]')
	touch $(STAMP)

demo: install
	$(BIN)/dife demo

test: install
	DIFE_STRICT_PLUGINS=1 $(BIN)/python -m pytest -q

test-slow: install
	DIFE_STRICT_PLUGINS=1 $(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) dife-demo
