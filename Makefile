# The two commands: `make run` and `make test`. Everything they need is installed by
# scripts/bootstrap from Debian packages.
JOBS ?= $(shell nproc)
RELEASE_DIR := build/release
ASAN_DIR := build/asan

.PHONY: run test build build-asan bootstrap bench fuzz format check-format clean

bootstrap:
	@scripts/bootstrap

# Release build with g++ (what `make run` and the benchmarks use).
build: bootstrap
	@cmake -S . -B $(RELEASE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_CXX_COMPILER=g++ -DCMAKE_C_COMPILER=gcc -DSLUICE_WERROR=ON >/dev/null
	@cmake --build $(RELEASE_DIR) -j $(JOBS)

# Test build with clang, AddressSanitizer and UndefinedBehaviorSanitizer. The tests whose
# assertions are about speed also run against the release build (SLUICE_RELEASE_BIN).
build-asan: bootstrap
	@cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang -DSLUICE_WERROR=ON \
	  -DSLUICE_SANITIZE=ON -DSLUICE_RELEASE_BIN=$(CURDIR)/$(RELEASE_DIR)/sluice >/dev/null
	@cmake --build $(ASAN_DIR) -j $(JOBS)

run: build
	@examples/run-quickstart $(RELEASE_DIR)/sluice

test: build build-asan
	@cd $(ASAN_DIR) && ctest --output-on-failure -j 2 --timeout 300

# Exploratory fuzzing, apart from `make test` (whose fuzz runs are a fixed seed and a fixed
# number of inputs): each target runs FUZZ_SECONDS from a random seed. What it finds goes to
# build/fuzz/NAME (kept between runs, so exploration accumulates; the checked-in corpus
# stays read-only), crashes to build/asan/tests/fuzz/artifacts/. A crash worth keeping
# goes into tests/fuzz/corpus/NAME/ with a fix, so fuzz.NAME.replay runs it from then on.
#   make fuzz FUZZ_TARGETS=http1_request FUZZ_SECONDS=3600
FUZZ_TARGETS ?= http1_request http1_response http2_server dns_message client_hello grpc_health stun_message
FUZZ_SECONDS ?= 600
fuzz: build-asan
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/$$t && \
	  echo "fuzz $$t for $(FUZZ_SECONDS)s" && \
	  $(ASAN_DIR)/$${t}_fuzz -max_total_time=$(FUZZ_SECONDS) -timeout=5 \
	    -rss_limit_mb=2048 -max_len=4096 -print_final_stats=1 \
	    -artifact_prefix=$(ASAN_DIR)/tests/fuzz/artifacts/$$t- \
	    build/fuzz/$$t tests/fuzz/corpus/$$t || exit 1; \
	done

bench: build
	@bench/run all

format:
	@find src apps tests -name '*.h' -o -name '*.cc' | xargs clang-format -i

check-format:
	@find src apps tests -name '*.h' -o -name '*.cc' | xargs clang-format --dry-run -Werror

clean:
	rm -rf build
