#!/usr/bin/env bash
# Runs bin/jaeger in the foreground (it execs, so its pid is Jaeger's) with
# the built-in all-in-one configuration (memory storage, at most 100000
# traces) and every listener on 127.0.0.1. This file is the one list of
# flags: start.sh runs it in the background, tests run it under their own
# process group.
#
# Ports (env, default), each bound to 127.0.0.1:
#   JAEGER_QUERY_PORT            16686  query HTTP: /api/..., UI page
#   JAEGER_QUERY_GRPC_PORT       16685  query gRPC (api_v2, api_v3)
#   JAEGER_OTLP_GRPC_PORT         4317  OTLP gRPC receiver
#   JAEGER_OTLP_HTTP_PORT         4318  OTLP HTTP receiver (/v1/traces)
#   JAEGER_GRPC_PORT             14250  Jaeger gRPC receiver (model.proto)
#   JAEGER_THRIFT_HTTP_PORT      14268  Jaeger Thrift HTTP receiver
#   JAEGER_THRIFT_COMPACT_PORT    6831  Jaeger Thrift compact receiver (UDP)
#   JAEGER_THRIFT_BINARY_PORT     6832  Jaeger Thrift binary receiver (UDP)
#   JAEGER_ZIPKIN_PORT            9411  Zipkin receiver
#   JAEGER_SAMPLING_HTTP_PORT     5778  remote sampling HTTP
#   JAEGER_SAMPLING_GRPC_PORT     5779  remote sampling gRPC
#   JAEGER_HEALTH_PORT           13133  health check HTTP (/status)
#   JAEGER_HEALTH_GRPC_PORT      13132  health check gRPC
#   JAEGER_EXPVAR_PORT           27777  expvar
#   JAEGER_ZPAGES_PORT           27778  zpages
#   JAEGER_METRICS_PORT           8888  Jaeger's own Prometheus metrics
# Other env: JAEGER_BIN (default bin/jaeger), JAEGER_PID_FILE (if set, this
# process writes its pid there before exec). Extra arguments are passed to
# jaeger after the built-in ones (e.g. more --set flags).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${JAEGER_BIN:-$root/bin/jaeger}
if [[ ! -x $bin ]]; then
	echo "jaeger: $bin is not built; run make jaeger-build (or tools/jaeger/build.sh)" >&2
	exit 1
fi

h=127.0.0.1
# The all-in-one config reads JAEGER_LISTEN_HOST for most listeners but not
# for the query endpoints (they default to all interfaces), nor for the
# ports; the --set flags below pin every listener to loopback explicitly.
export JAEGER_LISTEN_HOST=$h
# Jaeger must not export its own telemetry anywhere a user's OTEL_* points
# (often at this very Jaeger).
while read -r name; do unset "$name"; done < <(compgen -e | grep '^OTEL_' || true)

if [[ -n ${JAEGER_PID_FILE:-} ]]; then
	echo $$ > "$JAEGER_PID_FILE"
fi
exec "$bin" \
	--set "extensions.jaeger_query.http.endpoint=$h:${JAEGER_QUERY_PORT:-16686}" \
	--set "extensions.jaeger_query.grpc.endpoint=$h:${JAEGER_QUERY_GRPC_PORT:-16685}" \
	--set "extensions.jaeger_query.enable_tracing=false" \
	--set "receivers.otlp.protocols.grpc.endpoint=$h:${JAEGER_OTLP_GRPC_PORT:-4317}" \
	--set "receivers.otlp.protocols.http.endpoint=$h:${JAEGER_OTLP_HTTP_PORT:-4318}" \
	--set "receivers.jaeger.protocols.grpc.endpoint=$h:${JAEGER_GRPC_PORT:-14250}" \
	--set "receivers.jaeger.protocols.thrift_http.endpoint=$h:${JAEGER_THRIFT_HTTP_PORT:-14268}" \
	--set "receivers.jaeger.protocols.thrift_compact.endpoint=$h:${JAEGER_THRIFT_COMPACT_PORT:-6831}" \
	--set "receivers.jaeger.protocols.thrift_binary.endpoint=$h:${JAEGER_THRIFT_BINARY_PORT:-6832}" \
	--set "receivers.zipkin.endpoint=$h:${JAEGER_ZIPKIN_PORT:-9411}" \
	--set "extensions.remote_sampling.http.endpoint=$h:${JAEGER_SAMPLING_HTTP_PORT:-5778}" \
	--set "extensions.remote_sampling.grpc.endpoint=$h:${JAEGER_SAMPLING_GRPC_PORT:-5779}" \
	--set "extensions.healthcheckv2.http.endpoint=$h:${JAEGER_HEALTH_PORT:-13133}" \
	--set "extensions.healthcheckv2.grpc.endpoint=$h:${JAEGER_HEALTH_GRPC_PORT:-13132}" \
	--set "extensions.expvar.endpoint=$h:${JAEGER_EXPVAR_PORT:-27777}" \
	--set "extensions.zpages.endpoint=$h:${JAEGER_ZPAGES_PORT:-27778}" \
	--set "service.telemetry.metrics.readers=[{pull: {exporter: {prometheus: {host: '$h', port: ${JAEGER_METRICS_PORT:-8888}}}}}]" \
	"$@"
