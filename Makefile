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

# Debian packages the tests start themselves (redis-server: the online state's Redis backend;
# chromium and chromium-driver: the operator console's browser test, through the system
# chromedriver, never a downloaded one). CI runs as root on a fresh machine and installs them (a
# failed install fails the run); a developer who is not root gets a warning and those tests
# skip, naming the package.
test-deps:
	@command -v redis-server >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y redis-server; \
	  else echo "warning: redis-server is missing (sudo apt-get install redis-server); its tests will skip"; fi; }
	@{ test -x /usr/bin/chromium && test -x /usr/bin/chromedriver; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium chromium-driver; \
	  else echo "warning: chromium or chromium-driver is missing (sudo apt-get install chromium chromium-driver); the console's browser test will skip"; fi; }

test: venv test-deps
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy recommender_client

include docker/docker.mk

clean:
	rm -rf $(VENV) runs
