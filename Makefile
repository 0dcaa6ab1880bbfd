# Two commands a user needs: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
# offline-safe settings: no analytics daemons phoning home
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1

.PHONY: setup run test lint bench lock clean

setup: $(VENV)/.installed $(VENV)/.on-path

# torch first, pinned, so pip takes the local CPU wheel instead of a multi-GB CUDA build
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $@

# Stage commands in dvc.yaml are a bare `cadenza ...`, so every tool that runs them (.venv/bin/dvc
# repro / exp run, a queue worker, `.venv/bin/prefect worker start`) needs .venv/bin on PATH, and
# users (and cron, and workers) rarely activate the venv. dvc.yaml stays install-neutral; instead
# a .pth file puts the venv's bin folder first on PATH whenever the venv's Python starts (site
# runs a .pth line that begins with `import`), so every entry point of the venv finds `cadenza`.
PATH_PTH := import os, sys; b = os.path.join(sys.prefix, "bin"); p = os.environ.get("PATH", ""); \
  os.environ["PATH"] = p if p.split(os.pathsep)[0] == b else b + os.pathsep + p
$(VENV)/.on-path: $(VENV)/.installed Makefile
	site=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') && \
	  echo '$(PATH_PTH)' > "$$site/cadenza-venv-path.pth"
	touch $@

run: setup  ## fetch -> prepare -> train -> generate -> evaluate -> report, with params.yaml
	$(BIN)/dvc repro

test: setup  ## the whole test suite (unit + tiny end-to-end dvc repro + Prefect flow)
	$(BIN)/pytest -q --durations=15

lint: setup  ## ruff check + format check, mypy on src/cadenza, pipeline and bench (also .ci/run)
	$(BIN)/ruff check src pipeline tests bench
	$(BIN)/ruff format --check src pipeline tests bench
	$(BIN)/mypy

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
