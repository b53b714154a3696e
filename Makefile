# Two commands for a newcomer:  `make run` (pipeline on the sample archive)  and  `make test`.
# Both create/refresh .venv when it is missing or older than pyproject.toml.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
export DAGSTER_HOME := $(CURDIR)/.dagster
export PYANNOTE_METRICS_ENABLED := 0
SAMPLE := tests/data/sample_archive/drop-2026-11-24
WAREHOUSE ?= warehouse

.PHONY: venv run test test-random real-speech speech-tools browser dev lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] in ((3,11),(3,12)) else "Python 3.11 or 3.12 needed, found " + sys.version)'
	@if [ ! -x $(VENV)/bin/python ]; then $(PYTHON) -m venv $(VENV); fi
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $@

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

run: venv $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/opentranscribe process "$(SAMPLE)" --warehouse "$(WAREHOUSE)"
	$(VENV)/bin/opentranscribe show --warehouse "$(WAREHOUSE)"
	@echo; echo '$$ opentranscribe search "tomatoes on a balcony" --warehouse $(WAREHOUSE) --limit 1'
	@$(VENV)/bin/opentranscribe search "tomatoes on a balcony" --warehouse "$(WAREHOUSE)" --limit 1

# real speech the tests judge voices on (AMI excerpts from pyannote.audio's sdist), fetched here, not mid-test
real-speech: venv
	$(VENV)/bin/python tests/data/real_speech.py

# the speech synthesizers the generated test drops are made with (Debian packages; root, as in CI)
speech-tools:
	@command -v espeak-ng >/dev/null && command -v flite >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng flite >/dev/null; }

# the browser the review app's tests drive through Playwright (Debian's chromium; Playwright never downloads one)
browser:
	@command -v chromium >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: venv real-speech speech-tools browser
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# the suite in random order: pyproject's addopts without `-p no:randomly` (pytest-randomly prints its
# seed; replay an order with PYTEST_ARGS=--randomly-seed=N)
test-random: venv real-speech speech-tools browser
	$(VENV)/bin/python -m pytest -o addopts="-ra --strict-markers --durations=30" $(PYTEST_ARGS)

dev: venv $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/dagster dev -w workspace.yaml

lint: venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: venv
	$(VENV)/bin/python benchmarks/pipeline_vs_whisperx.py

clean:
	rm -rf $(WAREHOUSE) $(DAGSTER_HOME)
