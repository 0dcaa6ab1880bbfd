# Two commands a user needs: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
# offline-safe settings: no analytics daemons phoning home
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1

.PHONY: setup run test lint bench lock clean

setup: $(VENV)/.installed

# torch first, pinned, so pip takes the local CPU wheel instead of a multi-GB CUDA build
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $@

run: setup  ## fetch -> prepare -> train -> generate -> evaluate -> report, with params.yaml
	$(BIN)/dvc repro

test: setup  ## the whole test suite (unit + tiny end-to-end dvc repro + Prefect flow)
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check src pipeline tests bench

bench: setup
	$(BIN)/python bench/prepare.py
	$(BIN)/python bench/metrics.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/robustness.py

lock: setup  ## rewrite constraints.txt from the current venv
	{ echo "# Exact versions of every dependency (pip constraints). Regenerate with: make lock"; \
	  $(BIN)/pip freeze --exclude-editable | grep -v '^cadenza' | sed 's/+cpu$$//'; } > constraints.txt

clean:
	rm -rf $(VENV) .dvc/tmp .state
