# Front door. Every target first installs what is missing (a no-op when all is
# there), then configures and builds under build/ (or build-asan/).
BUILD_DIR      ?= build
ASAN_DIR       ?= build-asan
JOBS           ?= $(shell nproc)
GENERATOR      := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")
CTEST_ARGS     ?=

.PHONY: all deps build package run test test-fast chaos soak fuzz bench asan clean format

all: build

deps:
	@scripts/install-deps.sh

$(BUILD_DIR)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD_DIR) $(GENERATOR) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

# The Debian package: $(BUILD_DIR)/klarna-webhooks_<version>_<arch>.deb
# (install: apt-get install ./build/klarna-webhooks_*.deb; systemd/README.md).
package: build
	cd $(BUILD_DIR) && cpack -G DEB

# The .deb installed, checked, removed and purged in a clean Debian 12 chroot
# (debootstrap; cached under ~/.cache/klarna-package-test), with and without
# systemd's tools: tests/package/install_test.sh. Root only; not in `make test`.
# debootstrap comes with the other dependencies (scripts/install-deps.sh).
.PHONY: package-test
package-test: package
	tests/package/install_test.sh $(BUILD_DIR) with-systemd
	tests/package/install_test.sh $(BUILD_DIR) without-systemd

# The embedded demo: embedded Kafka + receiver + processor + klarna-sim. Ctrl-C stops it.
run: build
	scripts/run-demo.sh $(BUILD_DIR)

# Every suite. ctest prints its summary line last.
test: build
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 600 -j $(JOBS) $(CTEST_ARGS)

# The quick suites only (no label "slow").
test-fast: build
	cd $(BUILD_DIR) && ctest --output-on-failure -LE slow -j $(JOBS)

# The chaos end-to-end test, long: KPAY_CHAOS_SECONDS of kills, Kafka outages
# and Klarna faults (the ctest version runs 30 s of it). STORE=postgresql: two
# processors on one PostgreSQL state, restarted too (docs/RELIABILITY.md).
CHAOS_SECONDS  ?= 420
chaos: build
	cd $(BUILD_DIR) && KPAY_CHAOS_SECONDS=$(CHAOS_SECONDS) KPAY_CHAOS_STORE=$(STORE) \
	  tests/e2e/chaos_e2e_test --gtest_filter='Chaos.*'

# The soak: the `make run` demo's load plus a refund command every 5 s for
# SOAK_MINUTES; RSS, fds, threads, the state DB and WAL, Kafka lag sampled
# every 10 s into a CSV and a PNG; fails on growth that does not level off or
# on work lost (scripts/soak.sh, docs/RELIABILITY.md "Soak"). Output in
# SOAK_DIR (default $(BUILD_DIR)/soak-<UTC time>). `make test` runs 20 s of it.
SOAK_MINUTES   ?= 30
SOAK_DIR       ?=
soak: build
	SOAK_MINUTES=$(SOAK_MINUTES) scripts/soak.sh $(BUILD_DIR) $(SOAK_DIR)

# The libFuzzer targets (fuzz/, docs/RELIABILITY.md "Fuzzing"): a clang build
# in FUZZ_DIR, the committed seeds replayed, then each target for FUZZ_SECONDS.
# The corpus grows in FUZZ_DIR/corpus; crashes are saved in FUZZ_DIR/crashes.
FUZZ_DIR       ?= build-fuzz
FUZZ_SECONDS   ?= 300
fuzz: deps
	scripts/fuzz.sh build $(FUZZ_DIR)
	scripts/fuzz.sh replay $(FUZZ_DIR)
	scripts/fuzz.sh run $(FUZZ_DIR) $(FUZZ_SECONDS)

bench: build
	cmake --build $(BUILD_DIR) -j $(JOBS) --target bench_all
	scripts/run-bench.sh $(BUILD_DIR)

asan: deps
	cmake -S . -B $(ASAN_DIR) $(GENERATOR) -DCMAKE_BUILD_TYPE=Debug -DKPAY_SANITIZE=ON -DKPAY_BUILD_BENCH=OFF
	cmake --build $(ASAN_DIR) -j $(JOBS)
	cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure --timeout 900 -j $(JOBS) $(CTEST_ARGS)

format:
	find core storage klarna receiver processor sim tools tests bench -name '*.[ch]pp' | xargs clang-format -i

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
