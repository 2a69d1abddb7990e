# Rapport — build, test and benchmark targets. See README.md.

GO        ?= go
PKGS      ?= ./...
BENCH     ?= .
BENCHPKGS ?= ./storage/... ./crm/... ./bulk/... ./pipeline/... ./internal/...
COUNT     ?= 6

.PHONY: all test deps lint bench bench-store fmt

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
# test fail, not skip, without Chromium.
test: deps lint
	RAPPORT_PG_REQUIRE=1 RAPPORT_REQUIRE_CHROMIUM=1 $(GO) test -race -count=1 -timeout 20m $(PKGS)

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
