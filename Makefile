# topgun-go — targets a newcomer can guess. Tool versions are pinned here,
# in scripts/browser-test-setup.sh and in the package-lock.json files.
GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Packages that must also build for the browser (GOOS=js GOARCH=wasm).
WASM_PKGS   := ./crdt/... ./sync/... ./idb/... ./wasm/... ./bench/wasmsize/...
# Browser build flags, in one place.
WASM_FLAGS  := -trimpath -ldflags="-s -w"
# An execution count, not a duration: with a duration, Go 1.26's fuzzing
# coordinator can fail a target with "context deadline exceeded" when the
# time runs out while a worker is busy (golang/go#75804, fixed in Go 1.27),
# which a loaded CI machine hits.
FUZZTIME    ?= 50000x
# Fuzz targets as package:Target.
FUZZ_TARGETS := ./crdt:FuzzMergeCommutative ./crdt:FuzzMergeAssociative \
	./crdt:FuzzMergeIdempotent ./crdt:FuzzMagnitude ./sync/wire:FuzzDecode \
	./sync/store/filestore:FuzzDecodeState ./server:FuzzReadMessage ./server:FuzzMatch \
	./crdt:FuzzBoundedInvariant ./crdt:FuzzBoundedMergeLaws ./crdt:FuzzBStateBinary ./server:FuzzBoundedProtocol

# bin/ holds wasmbrowsertest as go_js_wasm_exec, which `go test` runs js/wasm
# test binaries with (in Chromium).
export PATH := $(CURDIR)/bin:$(PATH)

.PHONY: run build wasm react demo deps test test-go test-cluster test-browser test-js test-react e2e e2e-pack \
	fuzz fuzz-short bench lint vet fmt-check staticcheck clean chaos chaos-short chaos-bins chaos-results

# make run listens on ADDR, or 127.0.0.1:PORT (PORT=9090 make run).
PORT        ?= 8080
ADDR        ?= 127.0.0.1:$(PORT)

## run: server on http://localhost:8080 with the demo (no auth, data in ./data; PORT or ADDR to move it)
run: demo
	$(GO) run ./cmd/topgun-server --no-auth --data ./data --addr $(ADDR) --static demo/dist

## build: the server binary in bin/
build:
	$(GO) build -trimpath -o bin/topgun-server ./cmd/topgun-server

## deps: what the tests need on a fresh machine (idempotent)
deps:
	bash scripts/etcd-setup.sh
	bash scripts/browser-test-setup.sh
	@for d in js react demo .; do \
		if [ ! -d $$d/node_modules ] || [ $$d/package-lock.json -nt $$d/node_modules/.package-lock.json ]; then \
			echo "npm ci in $$d"; (cd $$d && npm ci --no-audit --no-fund) || exit 1; \
		fi; \
	done

## wasm: the engine for browsers (bin/topgun.wasm) and the npm package (js/dist)
wasm:
	@[ -d js/node_modules ] || (cd js && npm ci --no-audit --no-fund)
	GOOS=js GOARCH=wasm $(GO) build $(WASM_FLAGS) -o bin/topgun.wasm ./wasm
	node js/go-hash.mjs > bin/topgun.wasm.stamp
	cd js && node build.mjs

## react: the React hooks package (react/dist)
react: wasm
	@[ -d react/node_modules ] || (cd react && npm ci --no-audit --no-fund)
	cd react && npm run build

## demo: the page `make run` serves (demo/dist), built from js/ and react/
demo: react
	@[ -d demo/node_modules ] || (cd demo && npm ci --no-audit --no-fund)
	cd demo && npm run build

## test: everything CI runs
test: deps lint test-go test-cluster chaos-short test-browser test-js test-react e2e fuzz-short examples

# The cluster tests run on their own (make test-cluster): etcd's elections
# are timing-sensitive and must not share 2 cores with the rest.
test-go:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /server/clustertest)

## test-cluster: 3 etcd members, 2 server nodes, clients on both; SIGKILLs
test-cluster:
	bash scripts/etcd-setup.sh
	$(GO) test -race -count=1 ./server/clustertest/

# The chaos harness (docs/chaos.md). SEED=n reproduces a run's schedule
# (0: from the clock); each run stops itself, and timeout bounds it again.
SEED        ?= 0
CHAOS_TIME  ?= 100s
CHAOS       = timeout 900 bin/topgun-chaos -server-bin bin/topgun-server -seed $(SEED)

chaos-bins:
	$(GO) build -o bin/topgun-chaos ./cmd/topgun-chaos
	$(GO) build -trimpath -o bin/topgun-server ./cmd/topgun-server

## chaos-short: the chaos harness for about 60 s, single node then cluster (part of make test)
chaos-short: chaos-bins
	bash scripts/etcd-setup.sh
	$(CHAOS) -mode single -duration 20s -clients 4
	$(CHAOS) -mode cluster -duration 20s -clients 4

## chaos: the chaos harness for a few minutes, single node then cluster (CHAOS_TIME per mode)
chaos: chaos-bins
	bash scripts/etcd-setup.sh
	$(CHAOS) -mode single -duration $(CHAOS_TIME) -clients 6 -malformed 3
	$(CHAOS) -mode cluster -duration $(CHAOS_TIME) -clients 6 -malformed 3

## chaos-results: the chaos harness for 5.5 min per mode; its figures go to bench/RESULTS.md
chaos-results:
	bash -o pipefail -c '$(MAKE) --no-print-directory chaos CHAOS_TIME=330s 2>&1 | tee bench/.chaos.log'
	$(GO) run ./bench/chaosreport -cmd "make chaos-results" < bench/.chaos.log
	rm -f bench/.chaos.log

## test-browser: Go packages that only run in a browser, in Chromium
test-browser:
	GOOS=js GOARCH=wasm $(GO) test -count=1 ./idb/... ./wasm/...

test-js: wasm build
	cd js && TOPGUN_SERVER_BIN=$(CURDIR)/bin/topgun-server node --test test/*.test.mjs

test-react: react build
	cd react && TOPGUN_SERVER_BIN=$(CURDIR)/bin/topgun-server npm test

## e2e-pack: js/ and react/ from `npm pack` installed into a fresh Vite app
e2e-pack: react
	node e2e/pack/build.mjs

## e2e: Playwright specs in Chromium against the real server, the demo and the packed app
e2e: demo build e2e-pack
	npx playwright test

## fuzz-short: each fuzz target for $(FUZZTIME) executions (make fuzz runs them longer)
fuzz-short:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=2000000x

## bench: measure and write bench/RESULTS.md (server, store, browser client)
bench: deps build wasm
	@command -v brotli >/dev/null || (apt-get update && apt-get install -y brotli)
	$(GO) run ./bench -out bench/RESULTS.md
	node bench/browser.mjs >> bench/RESULTS.md

## lint: gofmt, go vet (native and js/wasm), staticcheck
lint: fmt-check vet staticcheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path '*/node_modules/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	GOOS=js GOARCH=wasm $(GO) vet $(WASM_PKGS)

# Built natively into bin/ once (go install is idempotent), then run for
# both targets: `go run` with GOOS=js would build the tool itself for js.
staticcheck:
	GOBIN=$(CURDIR)/bin $(GO) install $(STATICCHECK)
	bin/staticcheck ./...
	GOOS=js GOARCH=wasm bin/staticcheck $(WASM_PKGS)

clean:
	rm -rf bin data dist js/dist js/gen react/dist demo/dist examples/vite-react/dist test-results e2e/pack/.app

# --- Examples and release artifacts (examples/, dist/) ---------------------

.PHONY: examples dist

## examples: build examples/ (Go worker, Node worker, Vite + React app) and run both workers against a fresh server
examples: react build
	GO=$(GO) node examples/run.mjs

# What dist/topgun-server --version prints: internal/version's Version plus
# the commit as semver build metadata (+abc1234, .dirty with local changes).
# `make dist VERSION=1.2.3` overrides it.
VERSION_VAR := github.com/topgun-go/topgun/internal/version.Version
VERSION     ?= $(shell sed -n 's/^var Version = "\(.*\)"$$/\1/p' internal/version/version.go)$(shell \
	c=$$(git rev-parse --short HEAD 2>/dev/null) && { printf '+%s' "$$c"; git diff --quiet HEAD -- 2>/dev/null || printf '.dirty'; })

## dist: release artifacts in dist/: the npm tarballs of js/ and react/ (npm pack) and the server binary
dist: react
	rm -rf dist
	mkdir -p dist
	cd js && npm pack --pack-destination ../dist
	cd react && npm pack --pack-destination ../dist
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w -X $(VERSION_VAR)=$(VERSION)" -o dist/topgun-server ./cmd/topgun-server
	dist/topgun-server --version
	@ls -l dist
