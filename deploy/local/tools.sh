#!/usr/bin/env bash
# Installs the test-only tools make test needs when they are missing: Prometheus (promtool and
# the server, for the monitoring check). Debian packages, as root; otherwise it says what to
# install and fails.
set -euo pipefail
need=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "make test: missing ${need[*]}: install the Debian package(s) ${need[*]}" >&2
	exit 1
fi
echo "make test: installing ${need[*]} (Debian packages)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The package's own service is not ours: the check starts its own Prometheus on loopback.
if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus >/dev/null 2>&1 || true; fi
pkill -x prometheus 2>/dev/null || true
