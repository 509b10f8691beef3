# Thin driver over CMake: `make demo` and `make test` work on a fresh Debian 12 machine as root.
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release

.PHONY: all deps configure build test demo bench clean

all: build

deps:
	@tools/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The main job on the embedded samples: predictions, label maps, pictures and scores in $(BUILD)/demo.
demo: build
	@REPMODE=$(BUILD)/bin/repmode examples/demo.sh $(BUILD)/demo

# When the environment forces an OpenBLAS kernel type (some shells here set OPENBLAS_CORETYPE=Haswell), the
# benchmarks run again with OpenBLAS's own choice for this processor, so both figures are on record.
bench: build
	@$(BUILD)/bin/repmode-bench-conv
	@$(BUILD)/bin/repmode-bench-network
	@$(BUILD)/bin/repmode-bench-train
	@$(BUILD)/bin/repmode-bench-predict
	@if [ -n "$$OPENBLAS_CORETYPE" ]; then \
	  echo "== again with OpenBLAS choosing its kernels itself (OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset)"; \
	  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BUILD)/bin/repmode-bench-conv && \
	  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BUILD)/bin/repmode-bench-network && \
	  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BUILD)/bin/repmode-bench-train; fi

clean:
	@rm -rf $(BUILD)
