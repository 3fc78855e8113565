# ladder: a Kafka-native delay ladder. `make demo` and `make test` are the quick start.
GO        ?= go
BIN       := bin/ladder
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
STATICCHECK_VERSION := v0.8.2
# make demo's broker and metrics addresses, both on loopback, e.g. when 8080 is taken:
#   make demo DEMO_BROKER_ADDR=127.0.0.1:9093 DEMO_METRICS_ADDR=127.0.0.1:8081
DEMO_BROKER_ADDR  ?= 127.0.0.1:9092
DEMO_METRICS_ADDR ?= 127.0.0.1:8080
# Empty: the demo's own short tiers (1s,5s,20s,1m) and a temporary data directory, removed at exit.
DEMO_TIERS    ?=
DEMO_DATA_DIR ?=

.PHONY: all help build build-prod install test test-kafka kafka test-short demo bench lint fmt vet staticcheck tidy-check fuzz clean \
	chart-test chart-lint docs python-venv python-lint python-test python-check python-bench

all: build

## help: this list of targets
help:
	@sed -n -e 's/^## \([a-z-]*:\)/\1/p' -e 's/^## /    /p' $(MAKEFILE_LIST)

## build: the ladder binary in bin/ (with the embedded broker for `ladder dev`)
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ladder

## install: go install ./cmd/ladder: ladder lands in $(go env GOBIN), else $(go env GOPATH)/bin (~/go/bin by default)
install:
	$(GO) install -ldflags '$(LDFLAGS)' ./cmd/ladder
	@dir=$$($(GO) env GOBIN); [ -n "$$dir" ] || dir=$$($(GO) env GOPATH)/bin; \
		echo "installed $$dir/ladder"; case ":$$PATH:" in *":$$dir:"*) ;; *) echo "$$dir is not on PATH: add it, or run $$dir/ladder";; esac

## build-prod: the production binary, without the embedded broker (-tags nodev)
build-prod:
	CGO_ENABLED=0 $(GO) build -tags nodev -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ladder

## test: every test, with the race detector, against the embedded broker over TCP; then the subtests skipped
## under -race for a data race inside sarama (see skipSaramaTxnRace in pkg/forward), without it; then the
## chart checks; then the Python package (python-check); then the same suite on Apache Kafka (test-kafka) when
## java and Maven are here (in CI: required)
test:
	LADDER_TEST_KAFKA=embedded $(GO) test -race -timeout 15m ./...
	LADDER_TEST_KAFKA=embedded $(GO) test -count=1 -timeout 5m -run '$(SARAMA_RACE_TESTS)' ./pkg/forward
	$(MAKE) --no-print-directory chart-test
	$(MAKE) --no-print-directory python-check
	@if missing=$$($(GO) run ./pkg/laddertest/realkafka/cmd/kafka -check 2>&1); then \
		$(MAKE) --no-print-directory test-kafka; \
	elif [ -n "$$CI" ]; then echo "$$missing"; echo "CI: the suite on Apache Kafka is required"; exit 1; \
	else printf '\n%s\n%s\n%s\n%s\n\n' '########################################################################' \
		"# SKIPPED: the test suite on Apache Kafka (make test-kafka): $$missing" \
		'# Only the embedded broker was tested. Install a JDK 17+ and Maven to run both.' \
		'########################################################################'; fi

# The exactly-once tests skipped under -race for sarama's transaction-manager race (any with failing records),
# run without -race; pkg/forward TestTxnRaceTestsRunWithoutRace keeps this list complete.
SARAMA_RACE_TESTS := ^(TestRefusedRecordsAmongMany|TestTargetRefusesWrites|TestBrokerUnreachable|TestTransactionTimesOutDuringOutage|TestZombieIsFenced|TestClusterTargetShortOfReplicas)$$/^exactly-once$$

## test-kafka: the suite on Apache Kafka (pkg/laddertest/KAFKA.md): one real broker per test package; then, alone
## (three JVMs each), the three-broker tests TestCluster* (failover, rolling restart, SASL/TLS, ACLs, topics);
## fetches Kafka with Maven on the first run. Without -race: make test's embedded pass runs every test with the
## race detector, and on two cores it would add minutes to the longest pass of CI. TEST_KAFKA_FLAGS=-race adds
## it back, and then also runs the subtests sarama's race keeps out of -race once more without it.
TEST_KAFKA_FLAGS ?=
test-kafka:
	LADDER_TEST_KAFKA=real $(GO) test $(TEST_KAFKA_FLAGS) -timeout 25m -skip '^TestCluster' ./...
	LADDER_TEST_KAFKA=real $(GO) test $(TEST_KAFKA_FLAGS) -timeout 25m -p 1 -run '^TestCluster' ./cmd/ladder ./pkg/forward
	$(if $(findstring -race,$(TEST_KAFKA_FLAGS)),LADDER_TEST_KAFKA=real $(GO) test -count=1 -timeout 10m -p 1 -run '$(SARAMA_RACE_TESTS)' ./pkg/forward)

## kafka: one Apache Kafka broker on loopback for trying things by hand; prints 127.0.0.1:PORT when ready,
## runs until Ctrl-C (KAFKA_FLAGS, e.g. KAFKA_FLAGS='-nodes 3 -set auto.create.topics.enable=true')
KAFKA_FLAGS ?=
kafka:
	$(GO) run ./pkg/laddertest/realkafka/cmd/kafka $(KAFKA_FLAGS)

## chart-test: render charts/ladder with the helm SDK, enforce values.schema.json, decode every manifest strictly
## (its own Go module, so helm and Kubernetes stay out of go.mod; about 3-5 minutes from a cold build cache)
chart-test:
	cd charts && $(GO) test -timeout 10m ./...

## chart-lint: the charts module's go.mod tidiness, and `helm lint --strict` when a helm binary is on PATH
## (go install helm.sh/helm/v3/cmd/helm@v3.22.0 takes about nine minutes, so CI does not; chart-test runs the same lint rules)
chart-lint:
	cd charts && $(GO) mod tidy -diff
	@if command -v helm >/dev/null 2>&1; then \
		helm lint --strict charts/ladder && helm lint --strict -f charts/ladder/ci/production-values.yaml charts/ladder; \
	else echo "chart-lint: no helm binary on PATH, helm lint skipped (chart-test runs the same lint rules through the SDK)"; fi

## test-short: unit tests only (no broker)
test-short:
	$(GO) test -short ./pkg/tier/... ./pkg/envelope/... ./pkg/kafkaconf/...

## demo: the embedded broker and forwarders; schedules sample messages and prints them as they come back
## (DEMO_BROKER_ADDR, DEMO_METRICS_ADDR, DEMO_TIERS, DEMO_DATA_DIR above)
demo: build
	./$(BIN) dev --demo --addr $(DEMO_BROKER_ADDR) --http-addr $(DEMO_METRICS_ADDR) \
		$(if $(DEMO_TIERS),--tiers $(DEMO_TIERS)) $(if $(DEMO_DATA_DIR),--data-dir $(DEMO_DATA_DIR)) --log-level warn

## bench: every `ladder bench` scenario at moderate sizes against the embedded broker (a few minutes;
## full sizes: see pkg/bench/README.md). BENCH_FLAGS is added to each, e.g. BENCH_FLAGS=--json, or
## BENCH_FLAGS=--brokers=127.0.0.1:9092 for a real cluster (the bench creates and deletes its own topics)
BENCH_FLAGS ?=
bench: build
	./$(BIN) bench drain --records 200000 --rounds 2 --forwarder process $(BENCH_FLAGS)
	./$(BIN) bench schedule --records 200000 --rounds 2 $(BENCH_FLAGS)
	./$(BIN) bench lateness --rate 500 --duration 20s $(BENCH_FLAGS)
	./$(BIN) bench pending --steps 500k,1M --partitions 6,24 $(BENCH_FLAGS)

## lint: gofmt, go vet, staticcheck, go.mod tidiness, chart-lint
lint: fmt vet staticcheck tidy-check chart-lint

## fmt: gofmt -l on every Go file; fails when one needs formatting
fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## vet: go vet ./..., and again for cmd/ladder with -tags nodev
vet:
	$(GO) vet ./...
	$(GO) vet -tags nodev ./cmd/ladder

## staticcheck: staticcheck (installed with go install when missing)
staticcheck:
	@command -v staticcheck >/dev/null || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	staticcheck ./...

## tidy-check: go mod tidy -diff
tidy-check:
	$(GO) mod tidy -diff

## fuzz: run the header decoder and routing fuzzers for FUZZTIME each (default 30s);
## new interesting inputs land in the Go cache: copy them to pkg/*/testdata/fuzz to keep them
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./pkg/envelope -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/tier -run '^$$' -fuzz FuzzRoute -fuzztime $(FUZZTIME)

## docs: rewrite the generated tables of the docs: cmd/ladder/README.md's configuration table (ladder config
## --usage) and charts/ladder/README.md's values table (values.yaml); make test fails while either is stale
docs:
	$(GO) test -count=1 -run '^TestConfigurationTable$$' ./cmd/ladder -update
	cd charts && $(GO) test -count=1 -run '^TestValuesTable$$' . -update

## python-check: the Python package pkg/python (kafka-ladder): ruff and mypy, then pytest (the shared vectors,
## unit tests, and the workers end to end through `ladder dev`; LADDER_TEST_KAFKA=real with LADDER_TEST_BROKERS
## runs them against a running Kafka and `ladder run` instead). Its pinned tools live in a virtualenv in PY_VENV.
PYTHON  ?= python3
PY_VENV ?= $(or $(XDG_CACHE_HOME),$(CURDIR)/.cache)/ladder-python-venv
PYV     := $(abspath $(PY_VENV))
python-check: python-lint python-test

## python-venv: the virtualenv of python-check, with pkg/python installed editable and its pinned [dev] tools
python-venv: $(PYV)/.installed
$(PYV)/.installed: pkg/python/pyproject.toml
	$(PYTHON) -m venv $(PYV)
	$(PYV)/bin/python -m pip install -q --disable-pip-version-check -e './pkg/python[dev]'
	touch $@

## python-lint: ruff check, ruff format --check and mypy --strict on pkg/python
python-lint: python-venv
	cd pkg/python && $(PYV)/bin/ruff check . && $(PYV)/bin/ruff format --check . && $(PYV)/bin/mypy

## python-test: pytest on pkg/python (the shared vectors, unit tests, the workers end to end through ladder dev)
python-test: python-venv build
	cd pkg/python && LADDER_BIN=$(abspath $(BIN)) $(PYV)/bin/python -m pytest -q -p no:cacheprovider

## python-bench: the aiokafka adapter's rescheduling throughput against a raw aiokafka producer (about a minute)
python-bench: python-venv build
	cd pkg/python && LADDER_BIN=$(abspath $(BIN)) $(PYV)/bin/python bench/bench_aiokafka.py $(PY_BENCH_FLAGS)

## clean: remove bin/
clean:
	rm -rf bin/
