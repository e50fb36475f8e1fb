#!/usr/bin/env bash
# browser-test-setup.sh prepares a machine to run the browser tests
# (GOOS=js GOARCH=wasm go test ./idb/...) in headless Chromium through
# wasmbrowsertest. It is idempotent: a second run changes nothing.
#
#   bash scripts/browser-test-setup.sh
#   PATH=$PWD/bin:$PATH GOOS=js GOARCH=wasm go test ./idb/...
#
# It installs Chromium with apt when /usr/bin/chromium is missing (needs
# root), builds wasmbrowsertest into bin/ at a pinned version, and links it
# as bin/go_js_wasm_exec, the name `go test` looks up on PATH for js/wasm.
set -euo pipefail

WASMBROWSERTEST_VERSION=v0.11.0
CHROMIUM=/usr/bin/chromium

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$repo/bin
go=${GO:-go}

if [ ! -x "$CHROMIUM" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "browser-test-setup: $CHROMIUM is missing and this is not root." >&2
		echo "  Install it with: sudo apt-get update && sudo apt-get install -y chromium" >&2
		exit 1
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "browser-test-setup: $CHROMIUM is missing and apt-get is not available; install Chromium by hand." >&2
		exit 1
	fi
	echo "browser-test-setup: installing chromium with apt-get"
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

mkdir -p "$bin"
stamp=$bin/.wasmbrowsertest.version
if [ ! -x "$bin/wasmbrowsertest" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$WASMBROWSERTEST_VERSION" ]; then
	echo "browser-test-setup: installing wasmbrowsertest $WASMBROWSERTEST_VERSION into $bin"
	# Native build: GOOS/GOARCH from the caller's environment must not leak in.
	env -u GOOS -u GOARCH GOBIN="$bin" "$go" install "github.com/agnivade/wasmbrowsertest@$WASMBROWSERTEST_VERSION"
	echo "$WASMBROWSERTEST_VERSION" >"$stamp"
fi
ln -sf wasmbrowsertest "$bin/go_js_wasm_exec"
