# RoomWarden — the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need on a fresh Debian machine (apt packages as root, a virtualenv,
# pip packages) before they run. The tests start their own Mosquitto, VictoriaMetrics, InfluxDB
# 1.x and Prometheus on free loopback ports, so the system services those packages bring are
# stopped and disabled.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
APT_PACKAGES := python3 python3-venv chromium libatomic1 mosquitto victoria-metrics influxdb prometheus openssl shellcheck
DEMO_CONFIG ?= firmware_configs/telecom_equipment_room.yaml

.PHONY: all setup system-packages test test-stripped lint typecheck unit bench bench-peer demo clean install

all: test

system-packages:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	    if command -v systemctl >/dev/null 2>&1; then \
	      systemctl disable --now mosquitto victoria-metrics influxdb prometheus \
		 prometheus-node-exporter >/dev/null 2>&1 || true; \
	    fi; \
	  else \
	    echo "missing Debian packages:$$missing (run as root, or: sudo apt-get install$$missing)"; \
	  fi; \
	fi

$(STAMP): pyproject.toml constraints.txt | system-packages
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: system-packages $(STAMP)

lint: setup
	$(VENV)/bin/ruff check gateway tests

# The tests are typed as strictly as the gateway (about 11 s from a cold cache, under 1 s warm).
typecheck: setup
	$(VENV)/bin/mypy gateway tests

# The fast lane: everything that needs no real broker, database, browser, other process or
# pseudo-terminal and takes well under a few seconds (markers: tests/conftest.py, pyproject).
UNIT_LANE := not (slow or services or process or browser)
# Five workers on two cores: much of make test waits on real time (2-minute drills and outages,
# bus timeouts, back-offs), not the CPU, so more workers than cores keep both cores busy while
# the real-time tests wait; the CPU-bound drill library runs at nice 10 so it takes what the
# real-time tests leave (tests/drills/test_drills.py). Six (6 min 15 s on 5 Dec, a smaller
# suite) starved the simulated RS-485 devices on their ptys: three runs, three different
# real-time failures (late RTU replies), each passing alone. Four took 12:46-13:34 for the 3,613
# tests of 7 Dec (CI reported 900 s with its set-up); five 10:27, 10:06 and 10:18 the same
# evening (user CPU about 11 of the 20 minutes two cores give), no RTU failure; the two races
# the extra load showed were the tests' own and are fixed (a panel read timing out taken for
# "no alarms", a sampler's file read half written). The fast lane is all CPU: one worker per core
# (UNIT_WORKERS). TEST_WORKERS=2 is calmer.
TEST_WORKERS ?= 5
UNIT_WORKERS ?= 2
# Bytecode is cached (__pycache__, ignored by git) even where the environment says not to
# (PYTHONDONTWRITEBYTECODE): the suite starts hundreds of roomwarden processes and six workers
# that each import the gateway and the tests; compiling every module from source in each one
# cost about 0.3 CPU-s per gateway start and a few CPU-s per worker's collection (issue 15/16).
CACHE_BYTECODE := PYTHONDONTWRITEBYTECODE=

unit: setup
	$(CACHE_BYTECODE) $(PY) -m pytest -q -p no:cacheprovider -n $(UNIT_WORKERS) --dist loadscope -m "$(UNIT_LANE)"

# Every test, on $(TEST_WORKERS) pytest-xdist workers; the tests of one module stay on one
# worker, the longest modules first (tests/conftest.py's scheduler and LONGEST_FIRST).
test: lint typecheck
	$(CACHE_BYTECODE) $(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadscope --durations=20

# The tests of what runs in a gateway (uplink, commands, alarms, outputs, field, recorder, rules,
# applies, flashing, panel, service) with docstrings and asserts stripped, as the systemd unit
# runs the gateway (PYTHONOPTIMIZE=2; the tests' own asserts are rewritten by pytest and kept).
STRIPPED_DIRS := tests/uplink tests/operator tests/alarms tests/actions tests/field \
	tests/recorder tests/ops tests/rules tests/apply tests/flashing tests/panel tests/continuity \
	tests/service tests/drills
test-stripped: setup
	PYTHONOPTIMIZE=2 PYTHONNODEBUGRANGES=1 $(CACHE_BYTECODE) $(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) \
	  --dist loadscope -W "ignore:assertions not in test modules" $(STRIPPED_DIRS)

# Every benchmark, ending with the whole roomwarden run process (docs/performance.md). A quicker
# whole-process run: BENCH_PROCESS_WINDOW=5 BENCH_PROCESS_WARMUP=3 make bench; only some loads:
# BENCH_PROCESS_LOADS=p1,p1local; a 10-minute RSS run at 2,000 points: BENCH_PROCESS_SOAK=600.
bench: setup
	$(PY) -m tests.bench.run_all

# ThingsBoard IoT Gateway 3.8.5 beside roomwarden run on the same site and broker (issue 15's
# relative targets); installs it from PyPI into ~/.cache/roomwarden-bench on first use.
bench-peer: setup
	$(PY) -m tests.bench.bench_peer

# The whole picture on loopback: simulated room, gateway, panel (:8080, demo/demo), and its own
# mosquitto, ingest and VictoriaMetrics on free ports (the apt packages `setup` installs; without
# them the demo says what it skipped). DEMO_ARGS: e.g. --panel-port 0, --no-uplink, --duration 60.
demo: setup
	$(VENV)/bin/roomwarden demo $(DEMO_CONFIG) $(DEMO_ARGS)

# Install the gateway as a systemd service (as root on Debian 12 / Raspberry Pi OS): user,
# /opt/roomwarden/venv, /etc/roomwarden, the units. INSTALL_FLAGS: --start, --ingest, --dry-run.
install:
	sh systemd/install.sh $(INSTALL_FLAGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
