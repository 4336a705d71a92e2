# DeepClassify: `make run` starts the service, `make test` runs every test.
# Both set up what they need on a fresh machine: two virtual environments
# (.venv/model with TensorFlow, .venv/gateway without) and a model export.

PYTHON ?= python3
MODEL_ENV := .venv/model
GATEWAY_ENV := .venv/gateway
MODEL_PY := $(MODEL_ENV)/bin/python
GATEWAY_PY := $(GATEWAY_ENV)/bin/python
PIP_FLAGS := --quiet --disable-pip-version-check
# Where the tests write screenshots and logs for a person to look at.
ARTIFACTS ?= test-artifacts
# Debian's Chromium drives the page's browser tests (no downloaded browser).
CHROMIUM := /usr/bin/chromium
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600

.PHONY: run test soak bench setup lint format protos clean postgres

run: setup
	$(MODEL_PY) -m tools.run

test: setup $(CHROMIUM) postgres
	$(MODEL_PY) -m ruff check .
	$(MODEL_PY) -m ruff format --check .
	$(MODEL_PY) scripts/extract_protos.py --check
	DEEPCLASSIFY_ARTIFACTS=$(abspath $(ARTIFACTS)) $(MODEL_PY) -m pytest $(PYTEST_ARGS)
	@echo "Screenshots and logs of the run: $(ARTIFACTS)/"

# Bounded load on the real stack: 2000 requests at concurrency 16 (see
# tools/soak.py for the flags); fails on any error or memory growth > 10%.
soak: setup
	$(MODEL_PY) -m tools.soak $(SOAK_ARGS)

# The end-to-end benchmark (about 10 minutes); its report goes to
# docs/benchmarks.md. Tuning flags: make bench BENCH_ARGS="--workers 1 ..."
# (see python -m bench.run --help).
bench: setup
	$(MODEL_PY) -m bench.run $(BENCH_ARGS)

setup: $(MODEL_ENV)/.installed $(GATEWAY_ENV)/.installed

$(MODEL_ENV)/.installed: requirements/model.txt requirements/gateway.txt requirements/test.txt
	$(PYTHON) -m venv $(MODEL_ENV)
	$(MODEL_PY) -m pip install $(PIP_FLAGS) -r requirements/test.txt
	touch $@

$(GATEWAY_ENV)/.installed: requirements/gateway.txt
	$(PYTHON) -m venv $(GATEWAY_ENV)
	$(GATEWAY_PY) -m pip install $(PIP_FLAGS) -r requirements/gateway.txt
	touch $@

$(CHROMIUM):
	$(APT_GET) update -qq
	$(APT_GET) install -y -qq --no-install-recommends chromium fonts-dejavu-core

# PostgreSQL for the history tests: Debian's package, installed when missing
# (the tests start a server of their own in a temporary folder).
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { $(APT_GET) update -qq && \
	  $(APT_GET) install -y -qq --no-install-recommends postgresql; }

lint: setup
	$(MODEL_PY) -m ruff check .
	$(MODEL_PY) -m ruff format --check .

format: setup
	$(MODEL_PY) -m ruff format .
	$(MODEL_PY) -m ruff check --fix .

# Regenerates deepclassify/tfs_api.binpb from the installed
# tensorflow-serving-api; commit the result.
protos: setup
	$(MODEL_PY) scripts/extract_protos.py

clean:
	rm -rf .venv build $(ARTIFACTS) .pytest_cache .ruff_cache
