# The two commands: `make run` and `make test`. Everything they need is installed by
# scripts/bootstrap from Debian packages.
JOBS ?= $(shell nproc)
RELEASE_DIR := build/release
ASAN_DIR := build/asan

.PHONY: run test build build-asan bootstrap bench format check-format clean

bootstrap:
	@scripts/bootstrap

# Release build with g++ (what `make run` and the benchmarks use).
build: bootstrap
	@cmake -S . -B $(RELEASE_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_CXX_COMPILER=g++ -DCMAKE_C_COMPILER=gcc -DSLUICE_WERROR=ON >/dev/null
	@cmake --build $(RELEASE_DIR) -j $(JOBS)

# Test build with clang, AddressSanitizer and UndefinedBehaviorSanitizer.
build-asan: bootstrap
	@cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang -DSLUICE_WERROR=ON \
	  -DSLUICE_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_DIR) -j $(JOBS)

run: build
	@examples/run-quickstart $(RELEASE_DIR)/sluice

test: build build-asan
	@cd $(ASAN_DIR) && ctest --output-on-failure -j 2 --timeout 300

bench: build
	@bench/run all

format:
	@find src apps tests -name '*.h' -o -name '*.cc' | xargs clang-format -i

check-format:
	@find src apps tests -name '*.h' -o -name '*.cc' | xargs clang-format --dry-run -Werror

clean:
	rm -rf build
