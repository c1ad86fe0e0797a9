# One command set for people and CI. Every target bootstraps what it needs, idempotently:
# a virtualenv in .venv (from pyproject.toml) and node_modules (from package-lock.json).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYSTAMP := $(VENV)/.installed
NODESTAMP := node_modules/.installed

.PHONY: demo test lint bench soak contracts clean tools

$(PYSTAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

$(NODESTAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The demo is the development package's (devnet/ beside indexer/), not the product's CLI.
demo: $(PYSTAMP) $(NODESTAMP)
	$(PY) -m devnet demo $(DEMO_ARGS)

# Tools the tests run that are neither Python nor npm packages: docker-compose (v1, Debian's
# package) validates docker-compose.yml. Installed with apt as root; otherwise it says what to do.
tools:
	@command -v docker-compose >/dev/null || if [ "$$(id -u)" = 0 ]; then \
		out=$$(apt-get update -qq 2>&1 && DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 \
			apt-get install -y -qq docker-compose 2>&1) || { echo "$$out" >&2; exit 1; }; \
	else echo "make tools: docker-compose is missing; as root: apt-get install docker-compose" >&2; fi

test: tools $(PYSTAMP) $(NODESTAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(PYSTAMP)
	$(VENV)/bin/ruff check indexer devnet tests bench
	$(VENV)/bin/mypy

# `make bench`: every benchmark in one run and one summary (bench/suite.py); BENCH_ARGS picks one
# part or sets options (`BENCH_ARGS=--million`, `BENCH_ARGS=remote`, `BENCH_ARGS="all --reuse"`).
BENCH_ARGS ?= all
bench: $(PYSTAMP) $(NODESTAMP)
	$(PY) -m bench $(BENCH_ARGS)

# `indexer run` under random faults for SOAK_MINUTES (default 10); see bench/soak.py.
SOAK_MINUTES ?= 10
soak: $(PYSTAMP) $(NODESTAMP)
	SOAK_MINUTES=$(SOAK_MINUTES) $(PY) -m bench.soak $(SOAK_ARGS)

contracts: $(NODESTAMP)
	npm run --silent build:contracts

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
