# `make demo`: set up .venv and run the embedded CPU demo (demo data -> fit -> test -> generate).
# `make demo-model`: remake the committed demo codec, evaluator and model from scratch (see README).
# `make test`: set up .venv and run the test suite without the `slow` tests; `make test-all`: all of it (CI).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: install demo demo-model test test-all

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

install: $(STAMP)

demo: $(STAMP)
	DEMO_DIR=$(DEMO_DIR) VMAS=$(BIN)/vmas bash scripts/demo.sh

demo-model: $(STAMP)
	VMAS=$(BIN)/vmas bash scripts/demo_model.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "" $(PYTEST_ARGS)
