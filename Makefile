# The README's commands: `make demo` runs the whole chain, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= runs/demo

.PHONY: venv install demo test test-deps lint clean

venv: $(STAMP)

# Reinstall whenever the declared dependencies or their pins change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all]'
	touch $(STAMP)

install: venv

demo: venv
	$(PY) -m demo --out $(DEMO_DIR)

# Debian packages the tests start themselves (redis-server: the online state's Redis backend).
# CI runs as root on a fresh machine; elsewhere they are installed once by hand or the tests skip.
test-deps:
	command -v redis-server >/dev/null || (apt-get update && apt-get install -y redis-server)

test: venv test-deps
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy recommender_client

include docker/docker.mk

clean:
	rm -rf $(VENV) runs
