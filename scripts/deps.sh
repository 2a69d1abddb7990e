#!/usr/bin/env bash
# Installs what the test suite needs when it is missing, from Debian
# packages. Safe to run repeatedly. The default store (bbolt) is embedded;
# storage/postgres tests start a throwaway PostgreSQL cluster from the
# server binaries (initdb, pg_ctl) of Debian's postgresql package; the
# analytics HTML report is opened in Debian's headless chromium; the
# document renderer's PDFs are read back with poppler-utils' pdftotext;
# protobuf-compiler is needed only when plugins/proto changed since
# plugins/pluginpb was generated (see `make proto`).
set -euo pipefail

if ! command -v go >/dev/null 2>&1; then
  echo "deps: Go is not installed; install Go 1.26 from https://go.dev/dl/" >&2
  exit 1
fi

need=()
if ! command -v initdb >/dev/null 2>&1 && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  need+=(postgresql)
fi
# The analytics HTML report test opens the page in headless Chromium.
if ! command -v chromium >/dev/null 2>&1; then
  need+=(chromium)
fi

if ! command -v pdftotext >/dev/null 2>&1; then
  need+=(poppler-utils)
fi
if ! command -v protoc >/dev/null 2>&1 && \
   ! bash "$(dirname "$0")/protosum.sh" | cmp -s - "$(dirname "$0")/../plugins/pluginpb/SOURCES.sha256"; then
  need+=(protobuf-compiler)
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
