GO ?= go

.PHONY: all generate check-generate test bench fuzz lint

all: check-generate test

## generate: render cache/ and cacheasync/ from template/ (go generate ./...)
generate:
	$(GO) generate ./...

## check-generate: fail when a generated file differs from a fresh render
check-generate:
	$(GO) run ./gen -check

## test: vet and the race-enabled test suite (what CI runs)
test:
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	# counts work, races nothing, and is too slow under -race: run it plainly
	$(GO) test -count=1 -run '^TestBoltSweepWorkScales$$' ./template

## bench: the project's benchmarks, then the comparison with other Go caches
## (bench/ is its own module, so the peers never become our dependencies)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...
	cd bench && $(GO) run .

## fuzz: run every fuzz target for a short time
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

## lint: gofmt and vet
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
