# Corral. `make run` and `make test` do their own set-up (modules, binary).
SHELL := /bin/bash
GO ?= go
BIN := bin/corral
FUZZTIME ?= 20s
SEEDS ?= 1-50
SOAK ?= 10m

.PHONY: all build run test ffmpeg stress sim mutants-virtual bench fuzz lint jaeger-build jaeger jaeger-stop nightly mutants mutants-source mutants-gremlins clean

all: build

build:
	$(GO) mod download
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/corral

# The main job: the smoke scenario (every process-level and in-worker fault at
# least once, ending in a shutdown under load) against the embedded manager,
# about a minute; the summary is printed and the run folder kept under runs/.
run: build
	@if curl -fs --max-time 1 http://127.0.0.1:13133/status >/dev/null 2>&1; then \
		echo "make run: Jaeger is up (make jaeger): exporting traces to http://127.0.0.1:4318, query at http://127.0.0.1:16686"; \
		OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf $(BIN) run smoke; \
	else \
		echo "make run: no Jaeger on 127.0.0.1 (make jaeger starts one); traces are kept in the run folder's traces.json"; \
		$(BIN) run smoke; \
	fi

# The whole suite, with the race detector; goroutine leaks are checked in
# each package's TestMain. Tests of decoded media need ffmpeg (Debian's
# package): installed here when missing and root, else they skip (and fail
# under CI=true).
test: ffmpeg
	$(GO) mod download
	@# Under CI the Jaeger process test needs the tool built first (cached after once).
	@if [ -n "$$CI" ]; then $(MAKE) --no-print-directory jaeger-build; fi
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 12m ./...

ffmpeg:
	@if command -v ffmpeg >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "make: installing ffmpeg (Debian package) for the decoded-media tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg; \
	else \
		echo "make: ffmpeg is not installed and this user cannot install it (needs root and apt-get):"; \
		echo "      tests of decoded media (mp4, rtsp, http sources) will skip; run: sudo apt-get install ffmpeg"; \
	fi

# The long property-test tier: many more, longer random command and fault
# sequences, in-memory workers then real processes (CORRAL_PROPERTY_CHECKS
# sets the in-memory count, a tenth of it runs real processes), and 20,000
# cases of the virtual-time tier (CORRAL_VIRTUAL_CHECKS); about twenty
# minutes on 2 cores. A failing case is shrunk and saved under
# tests/property/testdata/rapid/ and replayed first by every later run; its
# seed and replay command are printed at the end.
stress:
	$(GO) mod download
	@mkdir -p bin; set -o pipefail; \
	CORRAL_PROPERTY_CHECKS=$${CORRAL_PROPERTY_CHECKS:-500} CORRAL_VIRTUAL_CHECKS=$${CORRAL_VIRTUAL_CHECKS:-20000} \
		$(GO) test -race -count=1 -timeout 60m -v ./tests/property -rapid.steps=100 2>&1 | tee bin/stress.log; rc=$$?; \
	grep -E '^\s*(--- FAIL|\[rapid\] (failed|panic|flaky)|To reproduce)' bin/stress.log | sed 's/^\s*/STRESS /' || true; \
	grep -E 'virtual-time tier: |\[rapid\] OK' bin/stress.log | sed 's/^\s*/STRESS /' || true; \
	exit $$rc

# The virtual-time property tier over a range of rapid seeds (SEEDS=a-b,
# SIM_CHECKS cases each): one SIM line per seed, with the replay command of
# a failure.
SIM_CHECKS ?= 100
sim:
	@mkdir -p bin; $(GO) test -race -c -o bin/property.test ./tests/property
	@fail=0; seeds='$(SEEDS)'; \
	for s in $$(seq $${seeds%-*} $${seeds#*-}); do \
		log=bin/sim-$$s.log; \
		if (cd tests/property && ../../bin/property.test -test.run '^TestVirtualTime$$' -test.count=1 -test.v \
			-rapid.seed=$$s -rapid.checks=$(SIM_CHECKS) -rapid.nofailfile) > $$log 2>&1; then \
			echo "SIM seed=$$s PASS $$(grep -o 'passed [0-9]* tests ([^)]*)' $$log | head -1)"; rm -f $$log; \
		else \
			fail=1; echo "SIM seed=$$s FAIL $$(grep -m1 -oE '\[rapid\] (failed|panic|flaky)[^:]*: .*' $$log) (log $$log; replay: go test -race -run '^TestVirtualTime$$' ./tests/property -rapid.seed=$$s -rapid.checks=$(SIM_CHECKS))"; \
		fi; \
	done; exit $$fail

# The virtual-time property tier against each source mutant of
# testdata/mutants (a copy of the tracked tree per patch): one VMUTANT line
# each, "caught" with rapid's failure or "SURVIVED". A survivor is not an
# error here: some mutants live where the tier does not reach (real
# processes, memory admission); make mutants judges them with the harness.
# Each mutant's run is bounded by 3 minutes: a mutant that holds a mutex
# across a wait freezes the bubble's clock (sync.Mutex is not a durable
# block for testing/synctest) and is reported as such.
VMUTANT_CHECKS ?= 2000
VMUTANTS ?= *
mutants-virtual:
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for p in testdata/mutants/$(VMUTANTS).patch; do \
		name=$$(basename $$p .patch); dst=$$tmp/$$name; mkdir -p $$dst; \
		git ls-files -z | xargs -0 cp --parents -t $$dst; \
		if ! (cd $$dst && git apply $(CURDIR)/$$p) >/dev/null 2>&1; then echo "VMUTANT $$name ERROR: the patch does not apply"; rm -rf $$dst; continue; fi; \
		if (cd $$dst/tests/property && $(GO) test -count=1 -timeout 3m -run '^TestVirtualTime$$' . -rapid.checks=$(VMUTANT_CHECKS) -rapid.nofailfile) > $$dst.log 2>&1; then \
			echo "VMUTANT $$name SURVIVED $(VMUTANT_CHECKS) cases"; \
		else \
			why=$$(grep -m1 -E '\[rapid\] (failed|panic|flaky)|build failed|^panic: ' $$dst.log | sed 's/^[[:space:]]*//' | cut -c1-200); \
			case "$$why" in *"test timed out"*) why="the bubble froze (a goroutine waits on a lock held across a wait, so the virtual clock cannot move): $$why";; esac; \
			echo "VMUTANT $$name caught: $${why:-see go test output}"; \
		fi; \
		rm -rf $$dst; \
	done

bench: build
	$(BIN) bench $(BENCH_FLAGS)
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./manager/... ./otel

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseRequest -fuzztime $(FUZZTIME) ./manager/protocol
	$(GO) test -run '^$$' -fuzz FuzzReadFrame -fuzztime $(FUZZTIME) ./manager/protocol

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if $(GO) list -deps ./manager/... | grep -E 'go\.opentelemetry\.io|/chaos($$|/)|/scenarios($$|/)'; then \
		echo "manager/... must not import OpenTelemetry, chaos or scenarios"; exit 1; fi
	@echo "lint ok"

# Jaeger v1.76.0 built from source (tools/jaeger is its own module); the
# first build downloads ~1.3 GiB and compiles ~8 min on 2 cores, then cached.
jaeger-build:
	GO=$(GO) tools/jaeger/build.sh

# Starts it on 127.0.0.1 (query :16686, OTLP :4317/:4318), memory storage;
# pid in bin/jaeger.pid, log in bin/jaeger.log.
jaeger: jaeger-build
	tools/jaeger/start.sh

jaeger-stop:
	tools/jaeger/stop.sh

# Swarm over a range of seeds plus a soak: one RESULT line per run.
nightly: build
	@mkdir -p runs/nightly; fail=0; seeds='$(SEEDS)'; \
	for s in $$(seq $${seeds%-*} $${seeds#*-}); do \
		log=runs/nightly/swarm-$$s.log; \
		$(BIN) run swarm --seed $$s --out runs/nightly/swarm-$$s > $$log 2>&1 || fail=1; \
		grep '^RESULT ' $$log || { echo "RESULT swarm seed=$$s ERROR (see $$log)"; fail=1; }; \
	done; \
	log=runs/nightly/soak.log; \
	$(BIN) run soak --duration $(SOAK) --out runs/nightly/soak > $$log 2>&1 || fail=1; \
	grep '^RESULT ' $$log || { echo "RESULT soak ERROR (see $$log)"; fail=1; }; \
	exit $$fail

# Proof of the harness beyond the planted catalogue; not part of make test.
# mutants-source: each source-level mutant of manager/... in testdata/mutants
# is applied to a copy of the module, built and run on the scenario its
# header names, and must be flagged by its checker; the unpatched manager
# must be VALID on the same scenarios (about 15 min). mutants-gremlins: a
# go-gremlins mutation-testing pass over the manager's core driven by its
# unit and property tests, with the mutation score (about 30 min). Both
# always run; the target fails if either does.
mutants:
	@fail=0; $(MAKE) --no-print-directory mutants-source || fail=1; \
	$(MAKE) --no-print-directory mutants-gremlins || fail=1; exit $$fail

mutants-source:
	$(GO) mod download
	$(GO) run ./internal/mutants

mutants-gremlins:
	GO=$(GO) tools/gremlins/run.sh

clean:
	rm -rf bin
