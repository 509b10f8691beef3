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
	@$(MAKE) --no-print-directory test-sanitize

# The main job on the embedded samples: predictions, label maps, pictures and scores in $(BUILD)/demo.
demo: build
	@REPMODE=$(BUILD)/bin/repmode examples/demo.sh $(BUILD)/demo

# When the environment forces an OpenBLAS kernel type (some shells here set OPENBLAS_CORETYPE=Haswell), the
# benchmarks run again with OpenBLAS's own choice for this processor, so both figures are on record.
bench: build
	@$(BUILD)/bin/repmode-bench-layers
	@$(BUILD)/bin/repmode-bench-conv
	@$(BUILD)/bin/repmode-bench-network
	@$(BUILD)/bin/repmode-bench-train
	@$(BUILD)/bin/repmode-bench-predict
	@$(BUILD)/bin/repmode-bench-mc
	@/usr/bin/python3 bench/bench_decoders.py --repmode $(BUILD)/bin/repmode
	@/usr/bin/python3 bench/bench_backbones.py --repmode $(BUILD)/bin/repmode
	@/usr/bin/python3 bench/bench_generalization.py --repmode $(BUILD)/bin/repmode
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

# Sanitized runs (README.md, "Hostile inputs, fuzzing, sanitizers and valgrind"). $(SANITIZE_BUILD): AddressSanitizer + UndefinedBehaviorSanitizer
# (and the fault-injection build) over the tests labelled sanitize: the core's and the ITK filters' gtests, the
# command-line tests (pytest runs the sanitized repmode as a subprocess), the threads test, the fault-injection
# tests (LeakSanitizer checks every failed call) and the replay of the fuzzing corpus. $(TSAN_BUILD):
# ThreadSanitizer over the threads test only. Left out: the learning tests (two trainings of minutes each, 2-3x
# slower sanitized, on the trainer code the gtests and train's CLI tests already run) and the Python bindings' tests
# (ctypes loads the library into an uninstrumented python, which ASan refuses without LD_PRELOAD). An error aborts
# (abort_on_error) rather than exit 1, which the CLI tests would take for a clean refusal of bad input.
SANITIZE_BUILD ?= build-sanitize
TSAN_BUILD ?= build-tsan
# -O1 -g1 (line tables for the reports): the sanitized C++ over ITK and VTK compiles 4x faster than at -O2 -g.
SANITIZE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREPMODE_BUILD_BENCHMARKS=OFF \
  "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
SANITIZE_TARGETS = repmode_tests repmode_itk_tests repmode-cli repmode-itk-predict repmode_convert_script \
  repmode_threads_test repmode_fault_tests $(addprefix repmode-fuzz-,$(FUZZ_TARGETS))
# This test needs a freed block's address handed back; ASan holds freed memory in quarantine, so it runs on its own
# without quarantine.
ADDRESS_REUSE_TEST = Predict.CacheIsEmptiedWhenANewDeployFormLandsAtTheFreedOnesAddress
SANITIZE_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1
# render draws through VTK, X11 and GL libraries that keep small blocks to the end (glibc's dlerror buffers, ITK's
# vnl); ASan's fast unwinder cannot follow their frames, so no suppression can name them. Its tests run with every
# check but the leak check, which the core's gtests, the fault-injection tests and the other CLI tests keep.
RENDER_TEST = repmode_cli_render

.PHONY: test-sanitize clean-sanitize
test-sanitize: deps
	@cmake -S . -B $(SANITIZE_BUILD) $(SANITIZE_FLAGS) -DREPMODE_SANITIZE=address,undefined \
	  -DREPMODE_FAULT_INJECTION=ON >/dev/null
	@cmake --build $(SANITIZE_BUILD) -j $(JOBS) --target $(SANITIZE_TARGETS)
	@cd $(SANITIZE_BUILD) && $(SANITIZE_ENV) ctest --output-on-failure -j $(JOBS) -L sanitize \
	  -E '^($(ADDRESS_REUSE_TEST)|$(RENDER_TEST))$$'
	@cd $(SANITIZE_BUILD) && $(SANITIZE_ENV) \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:quarantine_size_mb=0:thread_local_quarantine_size_kb=0 \
	  ctest --output-on-failure -R '^$(ADDRESS_REUSE_TEST)$$'
	@cd $(SANITIZE_BUILD) && $(SANITIZE_ENV) ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  ctest --output-on-failure -R '^$(RENDER_TEST)$$'
	@cmake -S . -B $(TSAN_BUILD) $(SANITIZE_FLAGS) -DREPMODE_SANITIZE=thread >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS) --target repmode_threads_test
	@cd $(TSAN_BUILD) && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -R '^repmode_threads$$'

clean: clean-sanitize
clean-sanitize:
	@rm -rf $(SANITIZE_BUILD) $(TSAN_BUILD)
