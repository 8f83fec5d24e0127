GO ?= go

# The modules of this repository (see go.work): the library, the command,
# and one module per backend whose driver its users alone should compile.
# Each is built and tested on its own, as its users build it (GOWORK=off:
# its go.mod's replace directives point at the others).
MODULES := . cmd/hishel metrics postgres redis sqlite
# Backend modules whose suites run on servers too slow for make test's 15
# minutes (FerretDB on SQLite scans a collection for every filtered query;
# dynalite is JavaScript on LevelDB; every S3 operation is several HTTP
# requests to versitygw, 7.5 minutes under -race): make test-backends runs
# them, and CI runs both.
BACKEND_MODULES := mongodb dynamodb s3
# Modules whose go:generate renders a template (gen's out-of-module mode
# for all but the root), and the gen -check that proves each up to date.
GEN_MODULES := . sqlite postgres redis mongodb dynamodb s3
export GOWORK := off

.PHONY: all generate check-generate vet test test-backends test-servers bench fuzz lint

all: check-generate test

## generate: render every module's templates into their APIs (go generate ./...)
generate:
	@for m in $(GEN_MODULES); do echo "== generate $$m"; (cd $$m && $(GO) generate ./...) || exit 1; done

## check-generate: fail when a generated file differs from a fresh render
check-generate:
	$(GO) run ./gen -check
	cd sqlite && $(GO) tool gen -check -template ./template -cache . -async ./sqliteasync
	cd postgres && $(GO) tool gen -check -template ./template -cache . -async ./postgresasync
	cd redis && $(GO) tool gen -check -template ./template -cache . -async ./redisasync
	cd mongodb && $(GO) tool gen -check -template ./template -cache . -async ./mongodbasync
	cd dynamodb && $(GO) tool gen -check -template ./template -cache . -async ./dynamodbasync
	cd s3 && $(GO) tool gen -check -template ./template -cache . -async ./s3async

## vet: go vet in every module, and in the benchmarks' (bench/)
vet:
	@for m in $(MODULES) $(BACKEND_MODULES) bench; do echo "== vet $$m"; (cd $$m && $(GO) vet ./...) || exit 1; done

## test: vet and the race-enabled test suite of every module (what CI runs),
## the backends' on real servers (test-servers)
test: test-servers vet
	@for m in $(MODULES); do echo "== test $$m"; (cd $$m && $(GO) test -race -count=1 -timeout 20m ./...) || exit 1; done
	# counts work, races nothing, and is too slow under -race: run it plainly
	$(GO) test -count=1 -run '^TestBoltSweepWorkScales$$' ./template

## test-backends: the race-enabled suites of the backend modules, each on
## its real server (MongoDB: FerretDB; DynamoDB: dynalite; S3: versitygw),
## with the crash and two-process tests. The modules run at once: their
## time is mostly the servers' round trips, not CPU. Each module's output
## is printed whole when it ends.
test-backends: test-servers
	@$(MAKE) --no-print-directory -j$(words $(BACKEND_MODULES)) --output-sync=target $(addprefix test-backend-,$(BACKEND_MODULES))

test-backend-%:
	@echo "== test $*"; cd $* && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 40m ./...

## test-servers: install what the backend tests need, or reuse it: redis-server and
## PostgreSQL (Debian), versitygw, FerretDB and dynalite (built once into
## ~/.cache/hishel-test); see internal/testserver
test-servers:
	GO=$(GO) scripts/test-servers

## bench: the project's benchmarks (PROXYBENCH: flags for bench/proxy, such as -big), then the comparison with other Go caches
## (bench/ is its own module, so the peers never become our dependencies)
bench:
	@for m in $(MODULES) $(BACKEND_MODULES); do (cd $$m && $(GO) test -run '^$$' -bench . -benchmem -count 1 ./...) || exit 1; done
	cd bench && $(GO) run .
	# the Redis backend against bbolt and gregjones/httpcache's Redis cache, interleaved
	GO=$(GO) scripts/test-servers redis
	cd bench && $(GO) test -run '^$$' -bench Redis -count 3 .
	# hishel proxy -shared against nginx, Varnish and a Go server, with wrk
	# (installs them from Debian's packages when missing); bench/proxy's
	# doc says how to add the 1 GiB workload (-big) or compare binaries
	cd bench && $(GO) run ./proxy $(PROXYBENCH)

## fuzz: run every fuzz target for a short time
FUZZTIME ?= 20s
fuzz:
	@for m in $(MODULES) $(BACKEND_MODULES); do (cd $$m && \
	for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done) || exit 1; done

## lint: gofmt and vet
lint: vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
