# Thin driver over CMake: `make demo` and `make test` work on a fresh Debian 12 machine as root.
BUILD ?= build
JOBS  ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release

.PHONY: all deps configure build test demo bench fuzz clean

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

# The libFuzzer harnesses of tests/fuzz (docs/fuzzing.md), built with clang, ASan and UBSan in their own tree and run
# one after the other for FUZZ_SECONDS each from the corpus of tests/fuzz; what they find goes to $(FUZZ_OUT), never
# into tests/. Needs Debian's clang and libclang-rt-14-dev (not part of make deps: CI replays the corpus without them).
# Inputs up to a few times the largest seed: a model file of the tiny networks is some KB, a text under 1 KB.
FUZZ_BUILD   ?= build-fuzz
FUZZ_OUT     ?= $(FUZZ_BUILD)/found
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= data_csv config metadata model_file
FUZZ_FLAGS   := -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
fuzz:
	@command -v clang >/dev/null || { echo "make fuzz: needs clang and libclang-rt-14-dev (apt-get install clang libclang-rt-14-dev)"; exit 1; }
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
	  -DREPMODE_FUZZ=ON -DREPMODE_BUILD_BENCHMARKS=OFF "-DCMAKE_C_FLAGS=$(FUZZ_FLAGS)" "-DCMAKE_CXX_FLAGS=$(FUZZ_FLAGS)" >/dev/null
	@cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(addprefix repmode-fuzz-,$(FUZZ_TARGETS))
	@for t in $(FUZZ_TARGETS); do \
	  case $$t in model_file) len=65536;; *) len=4096;; esac; \
	  mkdir -p $(FUZZ_OUT)/$$t && echo "== fuzz $$t for $(FUZZ_SECONDS) s" && \
	  OMP_WAIT_POLICY=passive $(FUZZ_BUILD)/bin/repmode-fuzz-$$t $(FUZZ_OUT)/$$t tests/fuzz/corpus/$$t \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=$$len -rss_limit_mb=2048 \
	    -timeout=10 -print_final_stats=1 -artifact_prefix=$(FUZZ_OUT)/$$t- || exit 1; \
	done

clean:
	@rm -rf $(BUILD)
