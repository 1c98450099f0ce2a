# Two commands do everything on a fresh machine (Python 3.11+, Node 20+):
#   make demo   set up, then run codexflow on its embedded defaults
#   make test   set up, then lint, type-check and run the whole test suite (fast + chaos)
PYTHON ?= python3
BIN := .venv/bin

.PHONY: setup demo up test check runtime-packages system-packages apt-missing chaos bench clean

setup: .venv/.installed node_modules/.package-lock.json

.venv/.installed: pyproject.toml
	$(PYTHON) -m venv .venv
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

demo: setup runtime-packages
	$(BIN)/codexflow demo

# The whole stack on embedded defaults, with a scripted model (drop --offline for real models).
up: setup runtime-packages
	$(BIN)/codexflow up --offline

check: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

# Debian packages, installed when missing. Each entry is PROBE=PACKAGE, the probe a command on
# PATH or a file glob. Running codexflow needs:
# - bubblewrap: every codex task runs in a bubblewrap sandbox of its own (activities/sandbox.py).
RUNTIME_PACKAGES := bwrap=bubblewrap
# The tests also need:
# - PostgreSQL server binaries: every records test also runs on a throwaway cluster (devkit/postgres.py);
# - nginx and openssl: tests/deploy runs `nginx -t` on deploy/nginx/codexflow.conf with a
#   self-signed certificate;
# - systemd (systemd-analyze): tests/deploy verifies the units in deploy/systemd;
# - Chromium and its WebDriver: tests/browser drive the Temporal Web UI headless.
TEST_PACKAGES := $(RUNTIME_PACKAGES) /usr/lib/postgresql/*/bin/initdb=postgresql \
	/usr/sbin/nginx=nginx openssl=openssl systemd-analyze=systemd \
	chromium=chromium chromedriver=chromium-driver

runtime-packages:
	@$(MAKE) --no-print-directory apt-missing PACKAGES="$(RUNTIME_PACKAGES)"

system-packages:
	@$(MAKE) --no-print-directory apt-missing PACKAGES="$(TEST_PACKAGES)"

apt-missing:
	@missing=; \
	for entry in $(PACKAGES); do \
		probe=$${entry%%=*}; package=$${entry#*=}; \
		if command -v "$$probe" >/dev/null 2>&1 || ls $$probe >/dev/null 2>&1; then \
			echo "$$package: present"; else missing="$$missing $$package"; fi; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "missing system packages:$$missing: installing them"; \
		if [ "$$(id -u)" -eq 0 ]; then sudo=; \
		elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
		else echo "not root and no sudo: apt-get install -y$$missing as root" >&2; exit 1; fi; \
		$$sudo apt-get update && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# The fast suite, then the chaos suite (about 3 minutes; `make chaos` runs it alone).
test: check system-packages
	$(BIN)/pytest
	$(BIN)/pytest -m chaos -p no:cacheprovider tests/chaos

# Crash and restart scenarios (kill -9 workers, restart Temporal and the API), with their report.
chaos: setup
	$(BIN)/pytest -m chaos -s -p no:cacheprovider tests/chaos

bench: setup
	$(BIN)/python bench/codex_overhead.py
	$(BIN)/python bench/pipeline_overhead.py
	$(BIN)/python bench/events.py
	$(BIN)/python bench/api_load.py
	$(BIN)/python bench/repo_scale.py
	$(BIN)/python bench/takeover.py

clean:
	rm -rf .venv node_modules .codexflow
