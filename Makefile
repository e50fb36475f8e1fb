# topgun-go — targets a newcomer can guess. Tool versions are pinned here.
GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Packages that must also build for the browser (GOOS=js GOARCH=wasm).
WASM_PKGS   := ./crdt/... ./sync/...
FUZZTIME    ?= 3s
# Fuzz targets as package:Target.
FUZZ_TARGETS := ./crdt:FuzzMergeCommutative ./crdt:FuzzMergeAssociative \
	./crdt:FuzzMergeIdempotent ./crdt:FuzzMagnitude ./sync/wire:FuzzDecode

# Browser build flags, in one place.
WASM_FLAGS  := -trimpath -ldflags="-s -w"

.PHONY: run build wasm js-deps test test-go test-wasm test-js fuzz fuzz-short bench lint vet fmt-check staticcheck clean

## run: server on http://localhost:8080 (no auth, data in ./data)
run:
	$(GO) run ./cmd/topgun-server --no-auth --data ./data --addr 127.0.0.1:8080

## build: the server binary in bin/
build:
	$(GO) build -trimpath -o bin/topgun-server ./cmd/topgun-server

## wasm: the engine for browsers (bin/topgun.wasm) and the npm package build (js/dist)
wasm: js-deps
	GOOS=js GOARCH=wasm $(GO) build $(WASM_FLAGS) -o bin/topgun.wasm ./wasm
	node js/go-hash.mjs > bin/topgun.wasm.stamp
	cd js && node build.mjs

js-deps:
	@[ -d js/node_modules ] || (cd js && npm ci --no-audit --no-fund)

## test-js: the npm package under Node (node:test) against the real server
test-js: wasm build
	cd js && TOPGUN_SERVER_BIN=$(CURDIR)/bin/topgun-server node --test test/

## test: everything CI runs
test: lint test-go test-wasm fuzz-short

test-go:
	$(GO) test -race -count=1 ./...

## test-wasm: the client packages build for the browser
test-wasm:
	GOOS=js GOARCH=wasm $(GO) build $(WASM_PKGS)

## fuzz-short: each fuzz target for $(FUZZTIME) (make fuzz runs them longer)
fuzz-short:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) $$pkg; \
	done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=60s

## bench: measure and write bench/RESULTS.md
bench:
	$(GO) run ./bench -out bench/RESULTS.md

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
	rm -rf bin data
