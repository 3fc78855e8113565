# ladder: a Kafka-native delay ladder. `make demo` and `make test` are the quick start.
GO        ?= go
BIN       := bin/ladder
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
STATICCHECK_VERSION := v0.8.2
DEMO_DIR  ?= $(shell mktemp -d -t ladder-demo-XXXXXX)
# The demo runs its own short ladder so messages come back within two minutes.
DEMO_TIERS ?= 2s,10s,30s,2m

.PHONY: all build build-prod test test-short demo lint fmt vet staticcheck tidy-check fuzz clean

all: build

## build: the ladder binary in bin/ (with the embedded broker for `ladder dev`)
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ladder

## build-prod: the production binary, without the embedded broker (-tags nodev)
build-prod:
	CGO_ENABLED=0 $(GO) build -tags nodev -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ladder

## test: every test, with the race detector, against the embedded broker over TCP
test:
	$(GO) test -race -timeout 15m ./...

## test-short: unit tests only (no broker)
test-short:
	$(GO) test -short ./pkg/tier/... ./pkg/envelope/... ./pkg/kafkaconf/...

## demo: the embedded broker and forwarders; schedules sample messages and prints them as they come back
demo: build
	./$(BIN) dev --demo --tiers $(DEMO_TIERS) --data-dir $(DEMO_DIR) --log-level warn

## lint: gofmt, go vet, staticcheck, go.mod tidiness
lint: fmt vet staticcheck tidy-check

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

## fuzz: run the header decoder fuzzer for FUZZTIME (default 30s)
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./pkg/envelope -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)

clean:
	rm -rf bin/
