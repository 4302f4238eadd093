# DEBA toolkit: one Makefile for the library, the trainer, the four tools, tests and benchmarks.
# Sources are found by folder, so adding a .c file needs no edit here.

CC       ?= cc
PREFIX   ?= /usr/local
BUILD    ?= build
CFLAGS   ?= -O2
CFLAGS   += -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -fopenmp -Iinclude -I. -MMD -MP
LDLIBS   := -lcsv -lopenblas -lz -lm
LDFLAGS  += -fopenmp
VERSION  := 0.1.0
CFLAGS   += -DDEBA_VERSION='"$(VERSION)"'

# Debian packages the project needs, and one header or library each that proves it is there.
DEPS_PKGS := libcsv-dev libcmocka-dev libopenblas-dev zlib1g-dev gnuplot-nox dataset-fashion-mnist pkg-config
# make fuzz: clang, its libFuzzer/ASan/UBSan runtimes, and the OpenMP runtime clang links (libomp).
DEPS_PKGS += clang libclang-rt-14-dev libomp-14-dev
# the Python package and its PyTorch example (python/, examples/pytorch/): Debian's own Python
DEPS_PKGS += python3-torch python3-torchvision python3-pip python3-setuptools
# tests/test_slurm.c: a one-node Slurm cluster (Debian 12: Slurm 22.05) with its own munged
DEPS_PKGS += slurmctld slurmd slurm-client munge
# ONNX import (trainer/onnx/, deba-onnx): onnx.proto, protobuf-c and its compiler, ONNX's own
# conformance tests; python3-onnx for scripts/onnx_fixtures.py
DEPS_PKGS += libonnx-dev protobuf-c-compiler libprotobuf-c-dev libonnx-testdata python3-onnx
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# CUDA: built when nvcc is found, unless CUDA=0.
CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(CUDA_HOME)/bin/nvcc
ifeq ($(origin CUDA),undefined)
  CUDA := $(shell [ -x $(NVCC) ] && echo 1 || echo 0)
endif
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90

CORE_SRC  := $(wildcard core/*.c)
TRAIN_SRC := $(wildcard trainer/*.c trainer/layers/*.c trainer/models/*.c trainer/data/*.c \
                        trainer/backend/*.c trainer/backend/cpu/*.c profiler/*.c calib/*.c \
                        analyze/*.c report/*.c)
# The CUDA backend (with its CUPTI kernel timing) is a module, $(BUILD)/lib/deba/libdeba-cuda.so,
# that --device cuda|auto dlopens (trainer/backend/registry.c): the tools, the tests and
# libdeba-train link no CUDA library. CUDA_MOD is empty when it is not built.
CU_SRC    :=
ifeq ($(CUDA),1)
  CU_SRC   := $(wildcard trainer/backend/cuda/*.cu)
endif
CUDA_MOD  :=
ifneq ($(CU_SRC),)
  CUDA_MOD := $(BUILD)/lib/deba/libdeba-cuda.so
endif
LDLIBS    += -ldl
# ONNX import: C code generated from Debian's onnx.proto by protoc-c at build time (never
# committed) into $(BUILD)/gen and compiled into libdeba-train; only trainer/onnx/ includes it.
ONNX_PROTO:= /usr/include/onnx/onnx.proto
ONNX_GEN  := $(BUILD)/gen/onnx.pb-c
TRAIN_SRC += $(wildcard trainer/onnx/*.c)
LDLIBS    += -lprotobuf-c
TOOLS     := deba-calibrate deba-train deba-profile deba-report deba-onnx
TOOL_BINS := $(addprefix $(BUILD)/bin/,$(notdir $(basename $(wildcard $(addprefix tools/,$(addsuffix .c,$(TOOLS)))))))
TEST_SRC  := $(wildcard tests/test_*.c)
TEST_BINS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
# bench_torch is the worker of `make bench-torch` (needs Debian's PyTorch), not a bench of its own
BENCH_SRC := $(filter-out tests/bench_torch.c,$(wildcard tests/bench_*.c))
BENCH_BINS:= $(patsubst tests/%.c,$(BUILD)/tests/%,$(BENCH_SRC))

# core objects are position-independent: they also make libdeba.so
CORE_OBJ  := $(patsubst %.c,$(BUILD)/pic/%.o,$(CORE_SRC))
TRAIN_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(TRAIN_SRC)) $(ONNX_GEN).o
LIBDEBA   := $(BUILD)/lib/libdeba.a
LIBTRAIN  := $(BUILD)/lib/libdeba-train.a
# The shared libdeba for programs outside the trainer (a Python loop, a C++ trainer): PIC objects,
# only deba_* exported (core/libdeba.map), soname with the major version.
SOMAJOR   := $(firstword $(subst ., ,$(VERSION)))
LIBDEBA_SO:= $(BUILD)/lib/libdeba.so.$(VERSION)

.PHONY: all deps check-deps test test-run sanitize fuzz bench bench-torch demo install clean
all: check-deps $(LIBDEBA) $(LIBDEBA_SO) $(LIBTRAIN) $(TOOL_BINS)

# Installs the Debian packages once; a second run finds them all and does nothing.
deps:
	@missing=""; for p in $(DEPS_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "make deps: all packages present"; fi

# A plain `make` names what is missing instead of failing deep inside the compiler.
check-deps:
	@for p in $(DEPS_PKGS); do dpkg -s $$p >/dev/null 2>&1 || \
	  { echo "missing Debian package $$p: run 'make deps' (installs $(DEPS_PKGS))" >&2; exit 2; }; done

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# protoc-c writes the .c and the .h in one run (a grouped target).
$(ONNX_GEN).c $(ONNX_GEN).h &: $(ONNX_PROTO)
	@mkdir -p $(dir $@)
	protoc-c --proto_path=$(dir $(ONNX_PROTO)) --c_out=$(dir $@) $(ONNX_PROTO)
$(ONNX_GEN).o: $(ONNX_GEN).c
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/obj/trainer/onnx/parse.o: $(ONNX_GEN).h
$(BUILD)/obj/trainer/onnx/%.o: private CFLAGS += -I$(BUILD)/gen

# ---- the CUDA module: position-independent objects, everything hidden but the entry point
# (-fvisibility=hidden and trainer/backend/cuda/module.map); its own copies of the time table
# and of deba_err_set, so it needs nothing from the program that loads it ----
CUDA_MOD_OBJ := $(patsubst %.cu,$(BUILD)/mod/%.o,$(CU_SRC)) \
                $(patsubst %.c,$(BUILD)/mod/%.o,$(wildcard trainer/backend/cuda/*.c) trainer/backend/ktime.c core/error.c)
CUDA_LIBS    := -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/lib64/stubs -L$(CUDA_HOME)/extras/CUPTI/lib64 \
                -lcudnn -lcublas -lcupti -lcudart -lstdc++ -lm -Wl,-rpath,$(CUDA_HOME)/lib64 \
                -Wl,-rpath,$(CUDA_HOME)/extras/CUPTI/lib64
all: $(CUDA_MOD)
# where registry.c looks after <exe dir>/../lib/deba/; DEBA_CUDA tells the tests a module was built
# (private: the objects a test pulls in are not compiled with it)
$(BUILD)/obj/trainer/backend/registry.o: private CFLAGS += -DDEBA_PREFIX='"$(PREFIX)"'
$(BUILD)/tests/%: private CFLAGS += $(if $(CUDA_MOD),-DDEBA_CUDA=1)

$(BUILD)/mod/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -fvisibility=hidden -I$(CUDA_HOME)/include -c $< -o $@

$(BUILD)/mod/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) -O2 -std=c++17 $(CUDA_ARCH) -Iinclude -I. -Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Werror \
	  -MD -MF $(@:.o=.d) -MP -c $< -o $@   # -MD: a changed header (graph.h) rebuilds the module

$(BUILD)/lib/deba/libdeba-cuda.so: $(CUDA_MOD_OBJ) trainer/backend/cuda/module.map
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,--version-script=trainer/backend/cuda/module.map -Wl,--no-undefined $(CUDA_MOD_OBJ) \
	  -o $@ $(CUDA_LIBS)

-include $(shell find $(BUILD)/mod -name '*.d' 2>/dev/null)

$(LIBDEBA): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@   # ar only adds: members of a removed or moved source would linger
	$(AR) rcsP $@ $^

$(BUILD)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -c $< -o $@

$(LIBDEBA_SO): $(CORE_OBJ) core/libdeba.map
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libdeba.so.$(SOMAJOR) -Wl,--version-script=core/libdeba.map -Wl,--no-undefined \
	  $(LDFLAGS) $(CORE_OBJ) -o $@ -lcsv -lm
	ln -sf libdeba.so.$(VERSION) $(BUILD)/lib/libdeba.so.$(SOMAJOR)
	ln -sf libdeba.so.$(SOMAJOR) $(BUILD)/lib/libdeba.so

# ---- examples: C programs built like an outside user's, against the shared libdeba ----
EXAMPLE_BINS := $(patsubst examples/%.c,$(BUILD)/examples/%,$(wildcard examples/*.c))
all: $(EXAMPLE_BINS)
$(BUILD)/examples/%: examples/%.c $(LIBDEBA_SO)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ -L$(BUILD)/lib -ldeba -lm -Wl,-rpath,$(abspath $(BUILD))/lib

# The Python package (python/deba) goes where Debian's python3 looks under PREFIX, e.g.
# /usr/local/lib/python3.11/dist-packages; it finds libdeba.so.0 in PREFIX/lib from there.
PYTHON ?= /usr/bin/python3
PYDIR  ?= $(shell $(PYTHON) -c 'import sys; print("$(PREFIX)/lib/python%d.%d/dist-packages" % sys.version_info[:2])' 2>/dev/null)

$(LIBTRAIN): $(TRAIN_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@   # ar only adds: members of a removed or moved source would linger
	$(AR) rcsP $@ $^

$(BUILD)/bin/%: tools/%.c tools/cli.h $(LIBTRAIN) $(LIBDEBA)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(LDFLAGS) $(LIBTRAIN) $(LIBDEBA) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/testutil.h $(LIBTRAIN) $(LIBDEBA)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(LDFLAGS) $(LIBTRAIN) $(LIBDEBA) $(LDLIBS) -lcmocka

# Every test binary runs; the summary line counts them all, and any failure fails the target.
# test-run is the loop itself, without deps, so `make sanitize` reuses it in its own build.
test: deps
	@$(MAKE) --no-print-directory test-run

test-run:
	@$(MAKE) --no-print-directory all $(TEST_BINS)
	@pass=0; fail=0; failed=""; \
	for t in $(abspath $(TEST_BINS)); do \
	  if OMP_WAIT_POLICY=$${OMP_WAIT_POLICY:-passive} DEBA_BIN=$(abspath $(BUILD))/bin DEBA_SRC=$(CURDIR) $$t; then pass=$$((pass+1)); \
	  else fail=$$((fail+1)); failed="$$failed $$(basename $$t)"; fi; \
	done; \
	echo "programs: $$pass passed, $$fail failed$${failed:+ ($$failed)}"; \
	[ $$fail -eq 0 ]

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	@for b in $(abspath $(BENCH_BINS)); do DEBA_BIN=$(abspath $(BUILD))/bin $$b || exit 1; done

# The same training steps in Debian's PyTorch and ours, interleaved (scripts/bench_torch.py); skips
# with a message when torch is missing. MODELS, BATCHES, REPS (per side), SECONDS (per repetition),
# THREADS and SKIP (model:batch pairs) choose the run; the default set takes ~15 min on 2 cores.
BENCH_TORCH_ARGS = $(if $(MODELS),--models "$(MODELS)") $(if $(BATCHES),--batches "$(BATCHES)") \
                   $(if $(REPS),--reps $(REPS)) $(if $(SECONDS),--seconds $(SECONDS)) \
                   $(if $(THREADS),--threads $(THREADS)) $(if $(filter undefined,$(origin SKIP)),,--skip "$(SKIP)")
bench-torch:
	@if ! $(PYTHON) -c 'import torch, torchvision' 2>/dev/null; then \
	  echo "bench-torch: skipped: $(PYTHON) cannot import torch and torchvision (Debian: python3-torch python3-torchvision)"; \
	else $(MAKE) --no-print-directory $(BUILD)/tests/bench_torch && \
	  $(PYTHON) scripts/bench_torch.py --ours $(BUILD)/tests/bench_torch $(BENCH_TORCH_ARGS); fi

# The README's main command: the whole workflow on real Fashion-MNIST, on CPU.
demo: deps
	@$(MAKE) --no-print-directory all
	DEBA_BIN=$(abspath $(BUILD))/bin scripts/demo.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/deba \
	           $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(TOOL_BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIBDEBA) $(LIBTRAIN) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(LIBDEBA_SO) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libdeba.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libdeba.so.$(SOMAJOR)
	ln -sf libdeba.so.$(SOMAJOR) $(DESTDIR)$(PREFIX)/lib/libdeba.so
	install -m 644 include/deba/*.h $(DESTDIR)$(PREFIX)/include/deba/
	$(if $(PYDIR),install -d $(DESTDIR)$(PYDIR)/deba && install -m 644 python/deba/*.py $(DESTDIR)$(PYDIR)/deba/)
	-install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/ 2>/dev/null
	$(if $(CUDA_MOD),install -d $(DESTDIR)$(PREFIX)/lib/deba && install -m 755 $(CUDA_MOD) $(DESTDIR)$(PREFIX)/lib/deba/)
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' deba.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/deba.pc

# ---- continuous checks (docs/reliability.md, "Sanitizers and fuzzing") ----
# sanitize: the whole test suite, built by gcc with ASan+UBSan in its own folder; the first
# error stops the program with a stack trace, so it counts as a failed test program.
SAN_BUILD ?= build-sanitize
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# DEBA_SANITIZE tells a test that links or loads the library from a host we do not build (plain
# cc, python3) to add these flags, or to preload $$(cc -print-file-name=libasan.so) and set
# detect_leaks=0 for that host, or to skip what sanitizers cannot do (a fully static link).
SAN_ENV   := ASAN_OPTIONS=halt_on_error=1:abort_on_error=0:detect_leaks=1:print_summary=1 \
             UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 DEBA_SANITIZE='$(SAN_FLAGS)'
sanitize: deps
	@start=$$(date +%s); \
	$(SAN_ENV) CFLAGS="-O1 -g $(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" \
	  $(MAKE) --no-print-directory BUILD=$(SAN_BUILD) CUDA=0 test-run; rc=$$?; \
	echo "sanitize: $$(( $$(date +%s) - start )) s"; exit $$rc

# fuzz: one libFuzzer harness per parser (tests/fuzz/fuzz_<name>.c), clang with ASan+UBSan,
# against the library rebuilt with coverage hooks in its own folder. Each runs FUZZ_SECONDS
# from its seeds (tests/fuzz/corpus/<name>/); new inputs, scratch files and crash reproducers
# stay under $(FUZZ_BUILD), never in the source tree. Any crash, leak, UB or timeout fails.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
# -Wno-pass-failed: clang notes that sanitizer checks stop `omp simd` loops vectorizing; that is
# a missed optimisation in this build only, not a defect, so -Werror must not stop on it.
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_BINS    := $(patsubst tests/fuzz/%.c,$(FUZZ_BUILD)/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_ENV     := OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1:print_summary=1 \
                UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
fuzz: deps
	@CFLAGS="-O1 -g -fsanitize=fuzzer-no-link $(FUZZ_SAN) -Wno-pass-failed" LDFLAGS="$(FUZZ_SAN)" \
	  $(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CUDA=0 CC=$(FUZZ_CC) $(FUZZ_BINS)
	@pass=0; fail=0; failed=""; b=$(abspath $(FUZZ_BUILD)); start=$$(date +%s); \
	for f in $(abspath $(FUZZ_BINS)); do \
	  n=$${f##*/fuzz_}; rm -rf $$b/tmp/$$n $$b/crashes/$$n; \
	  mkdir -p $$b/corpus/$$n $$b/crashes/$$n $$b/tmp/$$n $$b/logs; \
	  if TMPDIR=$$b/tmp/$$n $(FUZZ_ENV) $$f -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	       -print_final_stats=1 -artifact_prefix=$$b/crashes/$$n/ \
	       $$b/corpus/$$n $(CURDIR)/tests/fuzz/corpus/$$n >$$b/logs/$$n.log 2>&1; then \
	    pass=$$((pass+1)); \
	    echo "fuzz_$$n: ok, $$(sed -n 's/^stat::number_of_executed_units: *//p' $$b/logs/$$n.log) executions in $(FUZZ_SECONDS) s"; \
	  else \
	    fail=$$((fail+1)); failed="$$failed fuzz_$$n"; \
	    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' $$b/logs/$$n.log | head -n 3; \
	    echo "fuzz_$$n: FAILED, log $$b/logs/$$n.log, reproducer: $$(ls -d $$b/crashes/$$n/* 2>/dev/null | head -n 1)"; \
	    echo "  replay: $(FUZZ_ENV) $$f $$(ls -d $$b/crashes/$$n/* 2>/dev/null | head -n 1)"; \
	  fi; \
	done; \
	echo "fuzz: $$pass passed, $$fail failed$${failed:+ ($$failed)} in $$(( $$(date +%s) - start )) s"; \
	[ $$fail -eq 0 ]

$(FUZZ_BUILD)/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz.h $(LIBTRAIN) $(LIBDEBA)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer $< -o $@ $(LDFLAGS) $(LIBTRAIN) $(LIBDEBA) $(LDLIBS)

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(FUZZ_BUILD)

-include $(shell find $(BUILD)/obj $(BUILD)/pic -name '*.d' 2>/dev/null)
