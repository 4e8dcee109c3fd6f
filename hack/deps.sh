#!/usr/bin/env bash
# Installs the distribution packages the tests and the benchmark use: PostgreSQL (server,
# psql, pgbench), pgbouncer (benchmark baseline), prometheus (promtool checks /metrics), and the
# Python driver one test uses.
# Idempotent: installs only what is missing, so a second run takes well under a second.
set -euo pipefail

packages=(postgresql postgresql-client pgbouncer python3-pip prometheus)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "hack/deps.sh: missing packages: ${missing[*]}; run as root, or: sudo apt-get install ${missing[*]}" >&2
		exit 1
	fi
	echo "hack/deps.sh: installing ${missing[*]}" >&2
	# Tests start their own throwaway servers; keep the packages' services from starting.
	policy=/usr/sbin/policy-rc.d
	added_policy=false
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added_policy=true
	fi
	trap '$added_policy && rm -f "$policy"' EXIT
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# Only promtool is wanted from prometheus: keep its server from starting at boot.
	if [[ " ${missing[*]} " == *" prometheus "* ]]; then
		systemctl disable --now prometheus >/dev/null 2>&1 || update-rc.d prometheus disable >/dev/null 2>&1 || true
	fi
fi

# psycopg 3: the driver of another ecosystem that the sidecar tests drive.
if ! python3 -c 'import psycopg' 2>/dev/null; then
	echo "hack/deps.sh: installing psycopg from PyPI" >&2
	spec='psycopg[binary]>=3.2,<4'
	# A distribution's own Python refuses pip installs (PEP 668) unless told otherwise.
	python3 -m pip install --quiet --disable-pip-version-check "$spec" 2>/dev/null ||
		python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$spec"
fi
