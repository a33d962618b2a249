# Tidemark — the two set-up commands are `make run` and `make test`; both install
# what a fresh Debian machine with only Swift lacks, then build.

SWIFT          ?= swift
APT_PACKAGES   := pkg-config libuv1-dev libzstd-dev libhttp-parser-dev
TEST_APT       := systemd
PY_TEST_MODULES := prometheus_client influxdb
SUDO           := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RUN_ARGS       ?=

SEEDS          ?= 500
SEED_START     ?= 1

.PHONY: all deps test-deps build build-release run test test-swift verify-systemd bench fuzz sim clean

all: build

# System packages the build links against, installed only when missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

# What the tests use besides the build: a real Prometheus text parser, systemd-analyze.
test-deps: deps
	@python3 -c 'import prometheus_client, influxdb' 2>/dev/null || { echo "make: installing $(PY_TEST_MODULES) from PyPI"; \
	  python3 -m pip install -q $(PY_TEST_MODULES); }
	@command -v systemd-analyze >/dev/null 2>&1 || { echo "make: installing $(TEST_APT)"; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $(TEST_APT) || true; }

build: deps
	$(SWIFT) build

build-release: deps
	$(SWIFT) build -c release

# A single node on the built-in defaults: HTTP on 127.0.0.1:18080, data under ./data.
run: build
	.build/debug/tidemarkd $(RUN_ARGS)

test: test-deps
	$(SWIFT) build --build-tests
	$(SWIFT) test
	@$(MAKE) --no-print-directory verify-systemd
	@# The fuzz targets still build and run (a second each); `make fuzz` runs them longer.
	@FUZZ_SECONDS=1 bash fuzz/run.sh > .build/fuzz-smoke.log 2>&1 || { tail -20 .build/fuzz-smoke.log; exit 1; }
	@tail -1 .build/fuzz-smoke.log

verify-systemd:
	@bash deploy/systemd/verify.sh .build/debug/tidemarkd

bench: build-release
	@bash bench/run.sh

# The Raft and multi-leader simulators on seeds SEED_START … SEED_START+SEEDS-1; ends with a one-line summary,
# prints each failing seed (the same seed replays the same run) and exits non-zero on a failure.
sim: deps
	@$(SWIFT) build --build-tests
	@TIDEMARK_SIM_SEEDS=$(SEEDS) TIDEMARK_SIM_SEED_START=$(SEED_START) \
	  $(SWIFT) test --skip-build --filter "RaftSimulationTests/raftStaysSafeAndLiveUnderFaults|RaftSimulationTests/theMetaStateMachineStaysSafeUnderFaults|MultiLeaderSimulationTests" > .build/sim.log 2>&1; \
	  status=$$?; grep -E "^↳ seed|seed [0-9]+, round" .build/sim.log | sed 's/^↳ //' | head -20; \
	  grep -E "^(raft|meta|multi-leader) simulation:" .build/sim.log; exit $$status

# libFuzzer targets (HTTP decoder, line protocol, REST bodies, Raft frames, log recovery scan, SQL), FUZZ_SECONDS each (default 60).
fuzz: deps
	@bash fuzz/run.sh

clean:
	rm -rf .build .build-fuzz
