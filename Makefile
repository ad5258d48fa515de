# Two commands do everything on a fresh Debian bookworm machine:
#   make run   install what is missing, build, start the single-node default
#   make test  install what is missing, build, run the whole suite (and again under ASan+UBSan)
BUILD ?= build
ASAN_BUILD ?= build-asan
BENCH_BUILD ?= build-bench
JOBS ?= $(shell nproc)

.PHONY: all deps build build-asan run test test-fast bench deb clean

all: build

deps:
	@sh deploy/setup-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DOPD_WERROR=ON >/dev/null
	cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DOPD_WERROR=ON -DOPD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build $(ASAN_BUILD) -j$(JOBS)

run: build
	./$(BUILD)/opampd/opampd serve

# The whole suite, then once more under AddressSanitizer + UndefinedBehaviorSanitizer.
test: build build-asan
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j$(JOBS)

test-fast: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -L unit

# Benchmarks of issue 6 (not part of test: about 15 minutes, bounded at 30): Release build in
# $(BENCH_BUILD), results in bench/results/*.json and bench/README.md. See README.md, Benchmarks.
bench: deps
	sh tests/bench/run.sh $(BENCH_BUILD)

# A Debian package (binary, systemd unit, /etc/opampd/opampd.conf): $(BUILD)/opampd_*.deb.
deb: build
	cd $(BUILD) && cpack -G DEB

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

# Chaos campaign (tests/chaos/README.md; needs root): NODES (3 or 5) real nodes in network
# namespaces, CYCLES faults drawn from SEED (random and printed when not given), then the
# checker. Report: tests/chaos/reports/<NODES>nodes-seed<SEED>.md. Replays with the same SEED.
ifeq ($(origin SEED), undefined)
SEED := $(shell od -An -N2 -tu2 /dev/urandom | tr -d ' ')
endif
CYCLES ?= 200
NODES ?= 3
.PHONY: chaos
chaos: build
	python3 tests/chaos/chaos.py --opampd $(BUILD)/opampd/opampd \
		--agent $(BUILD)/tests/chaos/chaos_agent --seed $(SEED) --cycles $(CYCLES) \
		--nodes $(NODES) --slot m$(NODES) --workdir /tmp/opampd-chaos-$(NODES) \
		--report tests/chaos/reports/$(NODES)nodes-seed$(SEED).md
