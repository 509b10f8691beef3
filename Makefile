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

demo: build
	@$(BUILD)/bin/repmode-ops-demo

bench: build
	@$(BUILD)/bin/repmode-bench-conv
	@$(BUILD)/bin/repmode-bench-network

clean:
	@rm -rf $(BUILD)
