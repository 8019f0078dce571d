# vitrify: `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
BUILD := build
JOBS  ?= $(shell nproc)
CMAKE ?= cmake

.PHONY: all setup build cpp python test test-cpp test-python test-asan fuzz fuzz-build demo bench bench-models bench-native bench-tensors clean

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

test: test-cpp test-python test-asan

# The C++ tests again under AddressSanitizer + UndefinedBehaviorSanitizer (g++, own build folder),
# leaks reported as failures. The CMake packaging tests (label "consumer") only rebuild the
# library as a consumer would and are left to the release build.
ASAN_BUILD := build-asan
test-asan: setup
	@$(CMAKE) -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVITRIFY_SANITIZE=ON -DVITRIFY_BUILD_TESTS=ON -DVITRIFY_BUILD_TOOLS=ON > $(ASAN_BUILD).configure.log 2>&1 || (cat $(ASAN_BUILD).configure.log; exit 1)
	@$(CMAKE) --build $(ASAN_BUILD) -j $(JOBS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -LE consumer

# libFuzzer targets (clang, ASan + UBSan), each run for FUZZ_SECONDS on its corpus: new inputs go
# to build-fuzz/corpus/<target>/, seeds are read from fuzz/corpus/<target>/ (and tests/vectors/
# for the reader), crashes land in build-fuzz/artifacts/<target>/ and fail the run.
# FUZZ_TARGETS selects targets; FUZZ_ARGS passes extra libFuzzer flags (e.g. -jobs=2).
FUZZ_BUILD   := build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= reader value roundtrip model pickle
FUZZ_ARGS    ?=
fuzz-build: setup
	@CC=clang CXX=clang++ $(CMAKE) -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVITRIFY_BUILD_FUZZ=ON -DVITRIFY_BUILD_TESTS=OFF -DVITRIFY_BUILD_TOOLS=OFF -DVITRIFY_INSTALL=OFF > $(FUZZ_BUILD).configure.log 2>&1 || (cat $(FUZZ_BUILD).configure.log; exit 1)
	@$(CMAKE) --build $(FUZZ_BUILD) -j $(JOBS)

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_BUILD)/corpus/$$t $(FUZZ_BUILD)/artifacts/$$t; \
	  extra=""; [ $$t = reader ] && extra="tests/vectors/valid tests/vectors/invalid"; \
	  echo "=== fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_BUILD)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -rss_limit_mb=2048 -timeout=30 \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t/ $(FUZZ_ARGS) \
	    $(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t $$extra > $(FUZZ_BUILD)/fuzz_$$t.log 2>&1 \
	    || { tail -n 60 $(FUZZ_BUILD)/fuzz_$$t.log; echo "fuzz_$$t found a crash: see $(FUZZ_BUILD)/artifacts/$$t/"; exit 1; }; \
	  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" $(FUZZ_BUILD)/fuzz_$$t.log | tr '\n' ' '; echo; \
	done

demo: build
	@PATH="$(CURDIR)/$(BUILD)/tools/vitrify:$$PATH" $(PY) examples/demo.py
	@for w in examples/workflow_*.py; do \
	  echo; echo "=== $$w"; PATH="$(CURDIR)/$(BUILD)/tools/vitrify:$$PATH" $(PY) $$w || exit 1; done

bench: build
	@$(PY) bench/bench_arrays.py --size-mib 1024 --markdown docs/BENCHMARKS.md

# Native inference (issue 4): C++ runtime vs scikit-learn; writes its section of docs/BENCHMARKS.md.
# scikit-learn models against pickle, joblib and skops (about 15 minutes): rewrites its section of
# docs/BENCHMARKS.md and docs/benchmarks/models_load.png.
bench-models: build
	@$(PY) bench/bench_models.py

BENCH_BUILD := build-bench
bench-native: python
	@$(CMAKE) -S . -B $(BENCH_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DVITRIFY_BUILD_BENCH=ON -DVITRIFY_BUILD_TOOLS=ON -DVITRIFY_BUILD_TESTS=OFF -DVITRIFY_INSTALL=OFF > $(BENCH_BUILD).configure.log 2>&1 || (cat $(BENCH_BUILD).configure.log; exit 1)
	@$(CMAKE) --build $(BENCH_BUILD) -j $(JOBS) --target bench_native vitrify_cli
	@$(PY) bench/bench_native.py --build $(BENCH_BUILD)

# Tensors (issue 6): load_tensors vs safetensors and torch.load; writes its section of docs/BENCHMARKS.md.
bench-tensors: build
	@PATH="$(CURDIR)/$(BUILD)/tools/vitrify:$$PATH" $(PY) bench/bench_tensors.py --size-mib 1024 --markdown docs/BENCHMARKS.md

clean:
	rm -rf $(BUILD) $(BUILD).configure.log $(ASAN_BUILD) $(ASAN_BUILD).configure.log $(FUZZ_BUILD) $(FUZZ_BUILD).configure.log $(BENCH_BUILD) $(BENCH_BUILD).configure.log
