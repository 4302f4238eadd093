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
CU_SRC    :=
ifeq ($(CUDA),1)
  CU_SRC   := $(wildcard trainer/backend/cuda/*.cu)
endif
ifneq ($(CU_SRC),)
  TRAIN_SRC += $(wildcard trainer/backend/cuda/*.c)
  CFLAGS   += -DDEBA_CUDA=1 -I$(CUDA_HOME)/include
  LDLIBS   += -L$(CUDA_HOME)/lib64 -L$(CUDA_HOME)/lib64/stubs -L$(CUDA_HOME)/extras/CUPTI/lib64 \
              -lcudnn -lcublas -lcupti -lcudart -lstdc++ -Wl,-rpath,$(CUDA_HOME)/lib64 \
              -Wl,-rpath,$(CUDA_HOME)/extras/CUPTI/lib64
endif
TOOLS     := deba-calibrate deba-train deba-profile deba-report
TOOL_BINS := $(addprefix $(BUILD)/bin/,$(notdir $(basename $(wildcard $(addprefix tools/,$(addsuffix .c,$(TOOLS)))))))
TEST_SRC  := $(wildcard tests/test_*.c)
TEST_BINS := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
BENCH_SRC := $(wildcard tests/bench_*.c)
BENCH_BINS:= $(patsubst tests/%.c,$(BUILD)/tests/%,$(BENCH_SRC))

CORE_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(CORE_SRC))
TRAIN_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(TRAIN_SRC)) $(patsubst %.cu,$(BUILD)/obj/%.o,$(CU_SRC))
LIBDEBA   := $(BUILD)/lib/libdeba.a
LIBTRAIN  := $(BUILD)/lib/libdeba-train.a

.PHONY: all deps check-deps test bench demo install clean
all: check-deps $(LIBDEBA) $(LIBTRAIN) $(TOOL_BINS)

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

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) -O2 -std=c++17 $(CUDA_ARCH) -Iinclude -I. -DDEBA_CUDA=1 -Xcompiler -Wall,-Werror -c $< -o $@

$(LIBDEBA): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcsP $@ $^

$(LIBTRAIN): $(TRAIN_OBJ)
	@mkdir -p $(dir $@)
	$(AR) rcsP $@ $^

$(BUILD)/bin/%: tools/%.c tools/cli.h $(LIBTRAIN) $(LIBDEBA)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(LDFLAGS) $(LIBTRAIN) $(LIBDEBA) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/testutil.h $(LIBTRAIN) $(LIBDEBA)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< -o $@ $(LDFLAGS) $(LIBTRAIN) $(LIBDEBA) $(LDLIBS) -lcmocka

# Every test binary runs; the summary line counts them all, and any failure fails the target.
test: deps
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

# The README's main command: the whole workflow on real Fashion-MNIST, on CPU.
demo: deps
	@$(MAKE) --no-print-directory all
	DEBA_BIN=$(abspath $(BUILD))/bin scripts/demo.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/deba \
	           $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(TOOL_BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(LIBDEBA) $(LIBTRAIN) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/deba/*.h $(DESTDIR)$(PREFIX)/include/deba/
	-install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/ 2>/dev/null
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' deba.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/deba.pc

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
