#!/usr/bin/env bash
# Builds bin/jaeger from the version pinned in tools/jaeger/go.mod (a Go
# `tool` directive). tools/jaeger is its own module: Jaeger v1.76.0 does not
# build in a graph that holds Corral's OpenTelemetry v1.47.0.
#
# Go's build cache makes every build after the first a few seconds; the
# binary is relinked only when it is out of date.
#
# Env: JAEGER_BIN (default bin/jaeger at the repository root), GO (default go).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${JAEGER_BIN:-$root/bin/jaeger}
go=${GO:-go}

# The version pinned in go.mod, stamped into `jaeger version` (the upstream
# Makefile does the same with -X; no date, so an unchanged build stays a
# cache hit).
export GOWORK=off
version=$("$go" -C "$here" list -m -f '{{.Version}}' github.com/jaegertracing/jaeger)

if [[ ! -x $bin ]]; then
	echo "jaeger-build: building $bin from source (github.com/jaegertracing/jaeger $version)."
	echo "jaeger-build: the first build downloads ~1.3 GiB and compiles ~8 min on 2 cores; later builds are cached."
fi
mkdir -p "$(dirname "$bin")"
# GOWORK=off (above): a go.work at the root must not pull the main module's
# OpenTelemetry versions into this graph.
"$go" -C "$here" build -o "$bin" \
	-ldflags "-X github.com/jaegertracing/jaeger/internal/version.latestVersion=$version" \
	github.com/jaegertracing/jaeger/cmd/jaeger
echo "jaeger-build: $bin is up to date"
