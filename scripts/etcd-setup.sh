#!/usr/bin/env bash
# etcd-setup.sh installs Debian's etcd-server (etcd 3.4), which the cluster
# tests (make test-cluster), the server's etcd-mode lock tests and
# `make bench` start on 127.0.0.1 with temporary data directories. It is
# idempotent: with an etcd binary present it changes nothing.
#
# The package's systemd unit may start an etcd on 127.0.0.1:2379 where
# systemd runs; the tests do not use it (they pick free ports).
set -euo pipefail

if [ -n "${TOPGUN_ETCD_BIN:-}" ] || command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "etcd-setup: etcd is missing and this is not root." >&2
	echo "  Install it with: sudo apt-get update && sudo apt-get install -y etcd-server" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "etcd-setup: etcd is missing and apt-get is not available; install etcd 3.4+ and put it on PATH (or set TOPGUN_ETCD_BIN)." >&2
	exit 1
fi
echo "etcd-setup: installing etcd-server with apt-get"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server
