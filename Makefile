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
# make pinocchio: where the Pinocchio and PFFT clones are, and where to install (see README)
PINOCCHIO_SRC ?=
PFFT_SRC ?=
PINOCCHIO_PREFIX ?= $(CURDIR)/.pinocchio
PINOCCHIO_FLAGS ?=

.PHONY: install run test lint dryrun report clean pinocchio

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

# The default workflow (config/config.yaml) and, beside it, the analytic validation
# (config/analytic.yaml: NPE against exact posteriors, the Fisher forecast) in its own folder,
# results/validation/, its log in results/validation/snakemake.log. They run at the same time:
# most of their jobs keep less than a core busy, so together they fill the cores better than
# one after the other. Either failing fails the target.
VALIDATION_DIR ?= results/validation

run: install
	@mkdir -p $(VALIDATION_DIR)
	@echo "analytic validation running beside the default workflow: $(VALIDATION_DIR)/snakemake.log"
	$(BIN)/snakemake --cores $(CORES) --configfile config/analytic.yaml --directory $(VALIDATION_DIR) \
		> $(VALIDATION_DIR)/snakemake.log 2>&1 & validation=$$!; trap "kill $$validation 2>/dev/null" INT TERM; \
	$(BIN)/snakemake --cores $(CORES); status=$$?; \
	if wait $$validation; then echo "analytic validation done: $(VALIDATION_DIR)/"; \
	else echo "analytic validation failed: see $(VALIDATION_DIR)/snakemake.log"; status=1; fi; \
	exit $$status

# The CI check: the workflow lints, then the tests (which dry-run every shipped config, run
# the tiny workflows end to end and build their report), one test module per core at a time
# (pytest-xdist): the end-to-end runs leave a core idle much of the time. The real Pinocchio the tests run
# (from ../shared/vendor, when there) is built in the background meanwhile: the test fixture
# waits for that build, or skips with its reason; the build's log is .cache/pinocchio-build.log.
test: install
	@mkdir -p .cache
	$(BIN)/python tests/pinocchio_build.py >.cache/pinocchio-build.log 2>&1 & build=$$!; \
	$(BIN)/snakemake --lint && $(BIN)/python -m pytest -q -n $(CORES) --dist loadfile --durations=15; status=$$?; \
	wait $$build; exit $$status

lint: install
	$(BIN)/snakemake --lint

dryrun: install
	$(BIN)/snakemake -n --quiet rules

report: install
	$(BIN)/snakemake --report results/report.html
	$(BIN)/snakemake --configfile config/analytic.yaml --directory $(VALIDATION_DIR) --report report.html

# Pinocchio V5 built as the Pinocchio backend expects it (LCDM from a tabulated P(k)), with
# PFFT; prints the pinocchio.executable value to set. E.g.
#   make pinocchio PINOCCHIO_SRC=~/src/Pinocchio PFFT_SRC=~/src/pfft
# PINOCCHIO_FLAGS passes more options to tools/build_pinocchio.sh (--plc, --pfft-prefix DIR,
# --fftw-prefix DIR, --gsl-prefix DIR, --install-debian-packages).
pinocchio:
	@test -n "$(PINOCCHIO_SRC)" || { echo "make pinocchio: set PINOCCHIO_SRC=<clone of github.com/pigimonaco/Pinocchio> (and PFFT_SRC=<clone of github.com/mpip/pfft>)" >&2; exit 2; }
	tools/build_pinocchio.sh --pinocchio-src "$(PINOCCHIO_SRC)" --prefix "$(PINOCCHIO_PREFIX)" \
		$(if $(PFFT_SRC),--pfft-src "$(PFFT_SRC)") --jobs $(CORES) $(PINOCCHIO_FLAGS)

clean:
	rm -rf results logs .snakemake
