# Rapport — build, test and benchmark targets. See README.md.

GO        ?= go
PKGS      ?= ./...
BENCH     ?= .
BENCHPKGS ?= ./storage/... ./crm/... ./bulk/... ./pipeline/... ./internal/...
COUNT     ?= 6

.PHONY: all test deps lint bench bench-store fmt proto proto-if-changed

# Versions of the protoc plugins that generate plugins/pluginpb. protoc itself
# comes from Debian's protobuf-compiler package (scripts/deps.sh installs it
# when the .proto files changed since the committed code was generated).
PROTOC_GEN_GO      = google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC = google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
PROTO_BIN          = $(CURDIR)/.bin

all: lint test

# deps installs what the tests need when it is missing. The foundation needs
# nothing beyond Go; backends and plugins that need system packages
# (PostgreSQL, poppler-utils, protoc) add their install lines to
# scripts/deps.sh.
deps:
	@bash scripts/deps.sh

# test runs every test with the race detector, skipping none:
# RAPPORT_PG_REQUIRE=1 makes the PostgreSQL tests fail, not skip, when they
# cannot start a server; RAPPORT_REQUIRE_CHROMIUM=1 makes the HTML report
# test fail, not skip, without Chromium; RAPPORT_REQUIRE_PDFTOTEXT=1 makes
# the PDF checks fail, not skip, without poppler-utils' pdftotext.
test: deps proto-if-changed lint
	RAPPORT_PG_REQUIRE=1 RAPPORT_REQUIRE_CHROMIUM=1 RAPPORT_REQUIRE_PDFTOTEXT=1 $(GO) test -race -count=1 -timeout 20m $(PKGS)

lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

fmt:
	gofmt -w $$(git ls-files '*.go')

# bench runs the benchmarks COUNT times and summarises them with benchstat.
# BENCH selects benchmarks by regexp, e.g. make bench BENCH=Create.
bench:
	@mkdir -p bench
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(COUNT) -timeout 120m $(BENCHPKGS) | tee bench/latest.txt
	$(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da bench/latest.txt

# proto regenerates plugins/pluginpb from plugins/proto/*.proto and records
# the inputs' checksum in plugins/pluginpb/SOURCES.sha256, which
# proto-if-changed compares to decide whether generation is needed.
proto:
	@mkdir -p $(PROTO_BIN)
	GOBIN=$(PROTO_BIN) $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(PROTO_BIN) $(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH=$(PROTO_BIN):$$PATH protoc -I plugins/proto \
		--go_out=. --go_opt=module=github.com/rapportcrm/rapport \
		--go-grpc_out=. --go-grpc_opt=module=github.com/rapportcrm/rapport \
		plugins/proto/*.proto
	@bash scripts/protosum.sh > plugins/pluginpb/SOURCES.sha256

proto-if-changed:
	@if ! bash scripts/protosum.sh | cmp -s - plugins/pluginpb/SOURCES.sha256; then \
		echo "plugins/proto changed since generation: regenerating"; $(MAKE) proto; fi
