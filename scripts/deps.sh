#!/usr/bin/env bash
# Installs what the test suite needs when it is missing, from Debian
# packages. Safe to run repeatedly. Today the suite needs only Go: the
# default store (bbolt) is embedded. Later features add their packages here
# (for example PostgreSQL for storage/postgres).
set -euo pipefail

if ! command -v go >/dev/null 2>&1; then
  echo "deps: Go is not installed; install Go 1.26 from https://go.dev/dl/" >&2
  exit 1
fi

need=()
# Packages go here as features need them, e.g.:
#   command -v pg_ctl >/dev/null || need+=(postgresql)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
