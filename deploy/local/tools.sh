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
# The package's own service is not ours (deploy/prometheus/check.sh runs its own Prometheus on
# loopback), so it must not start: a policy-rc.d that says no, honoured by invoke-rc.d and
# deb-systemd-invoke, covers the install. A policy already in place is left alone.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# deploy/local/tools.sh: no service starts while it installs packages\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Should a policy have let the service start anyway, stop that service only, through its own
# manager (the systemd unit, or the init script's pid file): never by process name, which
# would kill every Prometheus on the machine.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	systemctl stop prometheus >/dev/null 2>&1 || true
elif [ -x /etc/init.d/prometheus ]; then
	/etc/init.d/prometheus stop >/dev/null 2>&1 || true
fi
