# Everything installs itself: a fresh clone needs only python3.11, node 20 and npm.
PYTHON ?= python3
VENV := .venv
# checkov's dependencies clash with ours: it gets a venv of its own.
INFRA_VENV := .venv-infra
PY := $(VENV)/bin/python
STACK_DIR ?= .local

.PHONY: install chromium test lint demo soak bench stack-up sandbox stack-down clean

# What the app, its local stack and its tools need; checkov (infra checks) only for make test.
RUNTIME := $(VENV)/.installed emulators/node_modules/.installed
install: $(RUNTIME) $(INFRA_VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@echo "first run: installing the pinned packages and Azurite (a first make demo took 94 s on 2 cores with empty caches; later runs about 15 s)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(INFRA_VENV)/.installed: requirements-infra.txt
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-infra.txt
	touch $@

emulators/node_modules/.installed: emulators/package.json emulators/package-lock.json
	cd emulators && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The browser tests (tests/e2e/test_status_page.py, test_sandbox.py) drive Debian's
# Chromium; README's walkthrough (test_sandbox.py) runs curl and jq. Installed here when
# missing and we are root (CI); otherwise the browser tests skip and say why.
CHROMIUM := /usr/bin/chromium
chromium:
	@missing=""; \
	[ -x $(CHROMIUM) ] || missing=" chromium"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v jq >/dev/null || missing="$$missing jq"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's$$missing for the browser and walkthrough tests (apt-get)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq >/dev/null && \
		apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	elif [ -n "$$missing" ]; then \
		echo "note:$$missing missing and not root: the tests that need them skip or fail"; \
	fi

# Three pytest workers, each module whole on one (its module-scoped stack with it), each
# worker with a session stack of its own: the suite mostly waits on its stacks, so three
# workers share two cores well (381 s, against 453 s with two and 891 s with one).
# PYTEST_WORKERS= runs it in one process.
PYTEST_WORKERS ?= -n 3 --dist loadfile
test: install chromium
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(INFRA_VENV)/bin/checkov -d infra --framework bicep --skip-download --quiet --compact
	$(PY) -m pytest -q $(PYTEST_WORKERS)

lint: $(RUNTIME)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

demo: $(RUNTIME)
	$(PY) -m emulators.demo

# Benchmark figures on a fresh stack (JSON + a table); e.g. BENCH_ARGS="--latency-ms 100".
BENCH_ARGS ?=
bench: $(RUNTIME)
	$(PY) -m emulators.bench $(BENCH_ARGS)

# Bounded chaos on a fresh stack (a few minutes at most); prints figures, exits 1 on a violation.
# SOAK_ARGS="--azure" uses Azure's timings and faults (scaled); "--small" the quick version.
SOAK_ARGS ?=
soak: $(RUNTIME)
	$(PY) -m emulators.soak $(SOAK_ARGS)

stack-up: $(RUNTIME)
	$(PY) -m emulators.stack up --dir $(STACK_DIR)

# The stack with sample data (emulators/sandbox.py), left running like stack-up; prints the
# README walkthrough's commands. make stack-down stops it.
sandbox: $(RUNTIME)
	$(PY) -m emulators.sandbox up --dir $(STACK_DIR)

stack-down:
	$(PY) -m emulators.stack down --dir $(STACK_DIR)

clean: stack-down
	rm -rf $(VENV) $(INFRA_VENV) emulators/node_modules .local .pytest_cache .mypy_cache .ruff_cache build *.egg-info
