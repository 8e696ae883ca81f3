# Kaggle image-classification pipeline. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=
EXTRAS ?= dev
INSTALLED := $(VENV)/.installed

# COMPETITION, TRIALS, WORKERS and ACCELERATOR reach the command only when you set them (on the
# make command line or in the environment), so the order is: built-in defaults < --config file <
# ARGS flags < make variables you typed.
given = $(if $(filter command line environment override,$(origin $(1))),$(2) $($(1)))
COMPETITION_FLAG = $(call given,COMPETITION,--competition)

PHONY_KERNEL := kernel-push kernel-status kernel-output kernel-demo kernel-resume-demo kernel-fanout-demo weights-dataset describe-competition
.PHONY: help setup demo $(PHONY_KERNEL) report download index preview tune train predict lr-find stack blend submit leaderboard bench bench-quick bench-quality test test-fast lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

# Installed again when pyproject.toml changes, or when EXTRAS names other extras than the last install.
ifneq ($(filter command line environment,$(origin EXTRAS)),)
ifneq ($(shell cat $(INSTALLED) 2>/dev/null),$(EXTRAS))
.PHONY: $(INSTALLED)
endif
endif
$(INSTALLED): pyproject.toml
	@echo "Installing the package and its dependencies into $(VENV) (first time: about 4 minutes, 2.6 GB) ..."
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@PYTHONWARNINGS=ignore $(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	@echo '$(EXTRAS)' > $@

setup: $(INSTALLED)  ## create .venv and install the package with its dev tools (EXTRAS=dev,jax: + JAX)

demo: setup  ## the whole flow offline on a generated competition (DEMO=shapes or digits: many classes)
	$(PY) -m pipeline demo $(if $(DEMO),--config $(DEMO)) $(ARGS)

download: setup  ## download, unpack and index COMPETITION with your Kaggle credentials
	$(PY) -m pipeline download $(ARGS) $(COMPETITION_FLAG)

index: setup  ## unpack and index COMPETITION files already on disk
	$(PY) -m pipeline index $(ARGS) $(COMPETITION_FLAG)

preview: setup  ## a look at a few augmented batches of COMPETITION
	$(PY) -m pipeline preview $(ARGS) $(COMPETITION_FLAG)

tune: setup  ## Optuna search of the recipe on COMPETITION (TRIALS per worker, WORKERS processes)
	$(PY) -m pipeline tune $(ARGS) $(COMPETITION_FLAG) $(call given,TRIALS,--trials) $(call given,WORKERS,--workers)

train: setup  ## train COMPETITION: the auto recipe (a portfolio within --time-budget; ARGS="--recipe finetune", --holdout: one split)
	$(PY) -m pipeline train $(ARGS) $(COMPETITION_FLAG)

predict: setup  ## predict with the newest finished run (k-fold or holdout) and TTA; write the submission CSV
	$(PY) -m pipeline predict $(ARGS) $(COMPETITION_FLAG)

lr-find: setup  ## the learning-rate range test: a plot and suggested rates (then ARGS="--lr-head auto --lr-fine auto")
	$(PY) -m pipeline lr-find $(ARGS) $(COMPETITION_FLAG)

stack: setup  ## stacked bottleneck features at several sizes, a logistic regression per fold; the submission CSV
	$(PY) -m pipeline stack $(ARGS) $(COMPETITION_FLAG)

blend: setup  ## blend predicted runs (RUNS=a,b; default: all) with weights fit on their OOF predictions
	$(PY) -m pipeline blend $(if $(RUNS),--runs "$(RUNS)") $(ARGS) $(COMPETITION_FLAG)

submit: setup  ## validate and upload the newest submission CSV (or FILE=...) through the Kaggle API
	$(PY) -m pipeline submit $(ARGS) $(COMPETITION_FLAG) $(if $(FILE),--file $(FILE))

report: setup  ## the report page of the newest finished run (ARGS="--run NAME" for another)
	$(PY) -m pipeline report $(ARGS) $(COMPETITION_FLAG)

leaderboard: setup  ## every submission with its CV and leaderboard scores
	$(PY) -m pipeline leaderboard $(ARGS) $(COMPETITION_FLAG)

kernel-push: setup  ## push this code as a Kaggle kernel and start it (ACCELERATOR=gpu|tpu|none; ARGS="--shards N": a group)
	$(PY) -m pipeline kernel push $(ARGS) $(COMPETITION_FLAG) $(call given,ACCELERATOR,--accelerator)

kernel-status: setup  ## the latest pushed kernel's status, or its group's table (ARGS=--wait: follow to the end)
	$(PY) -m pipeline kernel status $(ARGS) $(COMPETITION_FLAG)

kernel-output: setup  ## fetch the latest kernel's outputs (a group: gather into one run); ARGS=--submit submits
	$(PY) -m pipeline kernel output $(ARGS) $(COMPETITION_FLAG)

kernel-resume-demo: setup  ## offline: a tuning kernel stopped by its budget, resumed to a submission
	$(PY) -m pipeline kernel-resume-demo $(ARGS)

kernel-fanout-demo: setup  ## offline: the demo's folds in 3 sandbox kernels gathered and submitted; a 2-kernel tuning group
	$(PY) -m pipeline kernel-fanout-demo $(ARGS)

describe-competition: setup  ## infer the table of a competition with none (COMPETITION=<slug>) from its files
	$(PY) -m pipeline describe-competition $(COMPETITION) $(ARGS)

weights-dataset: setup  ## upload the backbones' weights (Keras cache) as a private dataset for offline kernels
	$(PY) -m pipeline weights-dataset $(ARGS) $(COMPETITION_FLAG)

kernel-demo: setup  ## the kernel round trip offline: push to the sandbox, follow, fetch, submit
	$(PY) -m pipeline kernel-demo $(ARGS)

bench: setup  ## benchmarks on the real photos of ../shared/datasets, side by side with baselines
	$(PY) -m benchmarks.bench
	$(PY) -m benchmarks.fanout
	$(PY) -m benchmarks.quality

bench-quality: setup  ## the quality ladder: baseline to MobileNet k-fold + TTA on real photos and weights
	$(PY) -m benchmarks.quality

bench-quick: setup  ## a smoke run of the benchmarks (under 3 minutes)
	$(PY) -m benchmarks.bench --quick

# Tests run in TEST_WORKERS processes (pytest-xdist), each test file whole in one of them; 2 fits a
# 2-core machine (TensorFlow already uses every core of each). TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

test: setup  ## the whole test suite: fast tier, then integration (what CI runs; TEST_WORKERS=2 processes)
	$(PY) -m pytest $(XDIST) $(ARGS)

test-fast: setup  ## the fast tier: pure functions and quick checks (under a minute)
	$(PY) -m pytest $(XDIST) tests/unit $(ARGS)

lint: setup  ## ruff
	$(VENV)/bin/ruff check pipeline tests benchmarks examples
	$(VENV)/bin/ruff format --check pipeline tests benchmarks examples

clean:  ## remove runs, caches and the virtual environment (keeps data/)
	rm -rf runs $(VENV) .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
