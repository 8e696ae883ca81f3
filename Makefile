# Kaggle image-classification pipeline. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
COMPETITION ?= dogs-vs-cats-redux-kernels-edition
ARGS ?=
TRIALS ?= 20
WORKERS ?= 1
ACCELERATOR ?= gpu
EXTRAS ?= dev

PHONY_KERNEL := kernel-push kernel-status kernel-output kernel-demo
.PHONY: help setup demo $(PHONY_KERNEL) report download index preview tune train predict submit leaderboard bench bench-quick bench-quality test test-fast lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

setup: $(VENV)/.installed  ## create .venv and install the package with its dev tools (EXTRAS=dev,jax: + JAX)

demo: setup  ## the whole flow offline on the generated demo competition (no Kaggle account)
	$(PY) -m pipeline demo $(ARGS)

download: setup  ## download, unpack and index COMPETITION with your Kaggle credentials
	$(PY) -m pipeline download --competition $(COMPETITION) $(ARGS)

index: setup  ## unpack and index COMPETITION files already on disk
	$(PY) -m pipeline index --competition $(COMPETITION) $(ARGS)

preview: setup  ## a look at a few augmented batches of COMPETITION
	$(PY) -m pipeline preview --competition $(COMPETITION) $(ARGS)

tune: setup  ## Optuna search of the recipe on COMPETITION (TRIALS per worker, WORKERS processes)
	$(PY) -m pipeline tune --competition $(COMPETITION) --trials $(TRIALS) --workers $(WORKERS) $(ARGS)

train: setup  ## train COMPETITION: stratified k-fold, two-phase transfer learning (ARGS=--holdout: one split)
	$(PY) -m pipeline train --competition $(COMPETITION) $(ARGS)

predict: setup  ## predict with the newest finished run (k-fold or holdout) and TTA; write the submission CSV
	$(PY) -m pipeline predict --competition $(COMPETITION) $(ARGS)

submit: setup  ## validate and upload the newest submission CSV (or FILE=...) through the Kaggle API
	$(PY) -m pipeline submit --competition $(COMPETITION) $(if $(FILE),--file $(FILE)) $(ARGS)

report: setup  ## the report page of the newest finished run (ARGS="--run NAME" for another)
	$(PY) -m pipeline report --competition $(COMPETITION) $(ARGS)

leaderboard: setup  ## every submission with its CV and leaderboard scores
	$(PY) -m pipeline leaderboard --competition $(COMPETITION) $(ARGS)

kernel-push: setup  ## push this code as a Kaggle kernel and start it (ACCELERATOR=gpu|tpu|none)
	$(PY) -m pipeline kernel push --competition $(COMPETITION) --accelerator $(ACCELERATOR) $(ARGS)

kernel-status: setup  ## the latest pushed kernel's status (ARGS=--wait: follow it to the end)
	$(PY) -m pipeline kernel status --competition $(COMPETITION) $(ARGS)

kernel-output: setup  ## fetch the latest kernel's outputs into runs/; ARGS=--submit submits its CSV
	$(PY) -m pipeline kernel output --competition $(COMPETITION) $(ARGS)

kernel-demo: setup  ## the kernel round trip offline: push to the sandbox, follow, fetch, submit
	$(PY) -m pipeline kernel-demo $(ARGS)

bench: setup  ## benchmarks on the real photos of ../shared/datasets, side by side with baselines
	$(PY) -m benchmarks.bench
	$(PY) -m benchmarks.quality

bench-quality: setup  ## the quality ladder: baseline to MobileNet k-fold + TTA on real photos and weights
	$(PY) -m benchmarks.quality

bench-quick: setup  ## a smoke run of the benchmarks (under 3 minutes)
	$(PY) -m benchmarks.bench --quick

test: setup  ## the whole test suite: fast tier, then integration (what CI runs)
	$(PY) -m pytest $(ARGS)

test-fast: setup  ## the fast tier: pure functions and quick checks (under a minute)
	$(PY) -m pytest tests/unit $(ARGS)

lint: setup  ## ruff
	$(VENV)/bin/ruff check pipeline tests benchmarks
	$(VENV)/bin/ruff format --check pipeline tests benchmarks

clean:  ## remove runs, caches and the virtual environment (keeps data/)
	rm -rf runs $(VENV) .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
