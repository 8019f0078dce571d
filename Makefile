# vitrify: `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
BUILD := build
JOBS  ?= $(shell nproc)
CMAKE ?= cmake

.PHONY: all setup build cpp python test test-cpp test-python demo bench clean

all: build

setup:
	@scripts/setup.sh

cpp: setup
	@$(CMAKE) -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DVITRIFY_BUILD_TESTS=ON -DVITRIFY_BUILD_TOOLS=ON > $(BUILD).configure.log 2>&1 || (cat $(BUILD).configure.log; exit 1)
	@$(CMAKE) --build $(BUILD) -j $(JOBS)

python: setup
	@$(PY) -m pip install -q --no-build-isolation --no-deps -Cbuild-dir=$(BUILD)/python .

build: cpp python

test-cpp: cpp
	@ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-python: build
	@PATH="$(CURDIR)/$(BUILD)/tools/vitrify:$$PATH" $(PY) -m pytest -q tests/python

test: test-cpp test-python

demo: build
	@PATH="$(CURDIR)/$(BUILD)/tools/vitrify:$$PATH" $(PY) examples/demo.py
	@for w in examples/workflow_*.py; do \
	  echo; echo "=== $$w"; PATH="$(CURDIR)/$(BUILD)/tools/vitrify:$$PATH" $(PY) $$w || exit 1; done

bench: build
	@$(PY) bench/bench_arrays.py --size-mib 1024 --markdown docs/BENCHMARKS.md

clean:
	rm -rf $(BUILD) $(BUILD).configure.log
