# Two entry points on a fresh machine:  make run  (default workflow)  and  make test.
# Both create .venv and install everything first (idempotent: reinstalls only when
# pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
CORES ?= 2
# A CPU build of torch keeps the install small; on a GPU cluster use e.g.
#   make TORCH_SPEC="torch==2.13.0" JAX_EXTRA="jax[cuda12]==0.7.2" run
TORCH_SPEC ?= torch==2.13.0
JAX_EXTRA ?=
BIN := $(VENV)/bin

.PHONY: install run test lint dryrun report clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test,compare]" $(JAX_EXTRA)
	# APEC emulator weights for xray.emission.backend apec-emulator (GPL-3; its own imports
	# fail on Python 3.11, so only the package files are installed and we read the weights)
	$(BIN)/python -m pip install --quiet --no-deps "nnapec>=0.1"
	touch $@

install: $(VENV)/.installed

# The default workflow (config/config.yaml), then the analytic validation (config/analytic.yaml:
# NPE against exact posteriors, the Fisher forecast) in its own folder, results/validation/.
VALIDATION_DIR ?= results/validation

run: install
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --cores $(CORES) --configfile config/analytic.yaml --directory $(VALIDATION_DIR)

# The CI check: the workflow lints, then the tests (which dry-run every shipped config, run
# the tiny workflows end to end and build their report).
test: install
	$(BIN)/snakemake --lint
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/snakemake --lint

dryrun: install
	$(BIN)/snakemake -n --quiet rules

report: install
	$(BIN)/snakemake --report results/report.html
	$(BIN)/snakemake --configfile config/analytic.yaml --directory $(VALIDATION_DIR) --report report.html

clean:
	rm -rf results logs .snakemake
