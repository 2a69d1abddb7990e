#!/usr/bin/env bash
# Prints the checksum of what plugins/pluginpb is generated from: the .proto
# files and the generator versions named in the Makefile. `make proto`
# stores it in plugins/pluginpb/SOURCES.sha256; scripts/deps.sh and
# `make test` regenerate (and install protoc) only when it differs.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  grep -E '^PROTOC_GEN_GO(_GRPC)? ' Makefile
  sha256sum plugins/proto/*.proto
} | sha256sum | cut -d' ' -f1
