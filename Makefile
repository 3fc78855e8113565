# ladder: a Kafka-native delay ladder. `make demo` and `make test` are the quick start.
GO        ?= go
BIN       := bin/ladder
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
STATICCHECK_VERSION := v0.8.2
DEMO_DIR  ?= $(shell mktemp -d -t ladder-demo-XXXXXX)
# The demo runs its own short ladder so messages come back within two minutes.
DEMO_TIERS ?= 2s,10s,30s,2m

.PHONY: all build build-prod test test-kafka kafka test-short demo bench lint fmt vet staticcheck tidy-check fuzz clean chart-test chart-lint

all: build

## build: the ladder binary in bin/ (with the embedded broker for `ladder dev`)
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ladder

## build-prod: the production binary, without the embedded broker (-tags nodev)
build-prod:
	CGO_ENABLED=0 $(GO) build -tags nodev -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ladder

## test: every test, with the race detector, against the embedded broker over TCP; then the subtests skipped
## under -race for a data race inside sarama (see skipSaramaTxnRace in pkg/forward), without it; then the
## chart checks; then the same suite on Apache Kafka (test-kafka) when java and Maven are here (in CI: required)
test:
	LADDER_TEST_KAFKA=embedded $(GO) test -race -timeout 15m ./...
	LADDER_TEST_KAFKA=embedded $(GO) test -count=1 -timeout 5m -run '$(SARAMA_RACE_TESTS)' ./pkg/forward
	$(MAKE) --no-print-directory chart-test
	@if missing=$$($(GO) run ./pkg/laddertest/realkafka/cmd/kafka -check 2>&1); then \
		$(MAKE) --no-print-directory test-kafka; \
	elif [ -n "$$CI" ]; then echo "$$missing"; echo "CI: the suite on Apache Kafka is required"; exit 1; \
	else printf '\n%s\n%s\n%s\n%s\n\n' '########################################################################' \
		"# SKIPPED: the test suite on Apache Kafka (make test-kafka): $$missing" \
		'# Only the embedded broker was tested. Install a JDK 17+ and Maven to run both.' \
		'########################################################################'; fi

# The subtests skipped under -race for sarama's transaction-manager race, run without -race.
SARAMA_RACE_TESTS := ^(TestRefusedRecordsAmongMany|TestTargetRefusesWrites)$$/^exactly-once$$

## test-kafka: the suite on Apache Kafka (pkg/laddertest/KAFKA.md): one real broker per test package, and the
## three-broker tests (failover, rolling restart, SASL/TLS, ACLs); fetches Kafka with Maven on the first run
test-kafka:
	LADDER_TEST_KAFKA=real $(GO) test -race -timeout 25m ./...
	LADDER_TEST_KAFKA=real $(GO) test -count=1 -timeout 5m -run '$(SARAMA_RACE_TESTS)' ./pkg/forward

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
demo: build
	./$(BIN) dev --demo --tiers $(DEMO_TIERS) --data-dir $(DEMO_DIR) --log-level warn

## bench: every `ladder bench` scenario at moderate sizes against the embedded broker (a few minutes;
## full sizes: see README, Performance). BENCH_FLAGS is added to each, e.g. BENCH_FLAGS=--json
BENCH_FLAGS ?=
bench: build
	./$(BIN) bench drain --records 200000 --rounds 2 $(BENCH_FLAGS)
	./$(BIN) bench schedule --records 200000 --rounds 2 $(BENCH_FLAGS)
	./$(BIN) bench lateness --rate 500 --duration 20s $(BENCH_FLAGS)
	./$(BIN) bench pending --steps 100k,500k,1M $(BENCH_FLAGS)

## lint: gofmt, go vet, staticcheck, go.mod tidiness, chart-lint
lint: fmt vet staticcheck tidy-check chart-lint

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	$(GO) vet -tags nodev ./cmd/ladder

staticcheck:
	@command -v staticcheck >/dev/null || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	staticcheck ./...

tidy-check:
	$(GO) mod tidy -diff

## fuzz: run the header decoder and routing fuzzers for FUZZTIME each (default 30s);
## new interesting inputs land in the Go cache: copy them to pkg/*/testdata/fuzz to keep them
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./pkg/envelope -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/tier -run '^$$' -fuzz FuzzRoute -fuzztime $(FUZZTIME)

clean:
	rm -rf bin/
